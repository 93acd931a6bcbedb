"""EphemeralToken, the models' reprs, and client configuration."""

from __future__ import annotations

import datetime as dt
import json

import attrs
import pytest

import gemini_tokens
from gemini_tokens import (
    AsyncClient,
    Client,
    ConfigurationError,
    EphemeralToken,
    LiveConnectConfig,
    LiveConnectConstraints,
    Modality,
    Timeout,
)
from gemini_tokens._config import resolve_api_key, resolve_base_url

from .conftest import API_KEY, RecordingServer

NAME = "auth_tokens/0123456789abcdefSECRET"


def test_token_repr_hides_the_name() -> None:
    token = EphemeralToken(name=NAME, uses=1)
    assert "SECRET" not in repr(token)
    assert "SECRET" not in str(token)
    assert "auth_tokens/***" in repr(token)


def test_token_is_frozen() -> None:
    token = EphemeralToken(name=NAME)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        token.name = "x"  # type: ignore[misc]


async def test_token_values_come_from_the_request_when_the_response_is_terse(
    server: RecordingServer,
) -> None:
    from aiohttp import web

    server.respond = lambda body: web.json_response({"name": NAME})
    expire = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
    async with AsyncClient(API_KEY, base_url=server.base_url) as client:
        token = await client.create(
            uses=3,
            expire_time=expire,
            live_connect_constraints={
                "model": "m",
                "config": {"response_modalities": ["audio"], "temperature": 0.7},
            },
            lock_additional_fields=[],
        )
    assert token.uses == 3
    assert token.expire_time == expire
    assert token.new_session_expire_time is not None
    assert token.new_session_expire_time <= expire
    assert token.live_connect_constraints == LiveConnectConstraints(
        model="m",
        config=LiveConnectConfig(response_modalities=(Modality.AUDIO,), temperature=0.7),
    )
    assert token.locked_fields == (
        "model",
        "generationConfig.responseModalities",
        "generationConfig.temperature",
    )


async def test_token_values_come_from_the_response_when_present(server: RecordingServer) -> None:
    from aiohttp import web

    server.respond = lambda body: web.json_response(
        {
            "name": NAME,
            "uses": 9,
            "expireTime": "2031-05-06T07:08:09Z",
            "newSessionExpireTime": "2031-05-06T07:00:00+00:00",
        }
    )
    async with AsyncClient(API_KEY, base_url=server.base_url) as client:
        token = await client.create(uses=1)
    assert token.uses == 9
    assert token.expire_time == dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    assert token.new_session_expire_time == dt.datetime(2031, 5, 6, 7, tzinfo=dt.timezone.utc)
    assert token.locked_fields is None


async def test_to_dict_is_camel_case_json(server: RecordingServer) -> None:
    async with AsyncClient(API_KEY, base_url=server.base_url) as client:
        token = await client.create(
            live_connect_constraints={"model": "m", "config": {"response_modalities": ["AUDIO"]}},
            lock_additional_fields=["temperature"],
        )
    data = token.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON types only
    assert data["name"] == token.name
    assert data["uses"] == 1
    assert data["expireTime"].endswith("Z")
    assert data["bidiGenerateContentSetup"] == {
        "model": "models/m",
        "generationConfig": {"responseModalities": ["AUDIO"]},
    }
    assert set(data["fieldMask"].split(",")) == {
        "model",
        "generationConfig.responseModalities",
        "generationConfig.temperature",
    }
    assert API_KEY not in json.dumps(data)


def test_live_url() -> None:
    token = EphemeralToken(name="auth_tokens/a+b/c")
    assert token.live_url() == (
        "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1alpha."
        "GenerativeService.BidiGenerateContentConstrained?access_token=auth_tokens%2Fa%2Bb%2Fc"
    )
    local = EphemeralToken(name="auth_tokens/x", base_url="http://127.0.0.1:8765/")
    assert local.live_url().startswith("ws://127.0.0.1:8765/ws/google.ai.")


def test_config_repr_shows_only_what_is_set() -> None:
    config = LiveConnectConfig(temperature=0.5)
    assert repr(config) == "LiveConnectConfig(temperature=0.5)"


# --- configuration ----------------------------------------------------------------------------


def test_api_key_lookup_order() -> None:
    assert resolve_api_key(None, {"GEMINI_API_KEY": "a", "GOOGLE_API_KEY": "b"}) == "a"
    assert resolve_api_key(None, {"GOOGLE_API_KEY": "b"}) == "b"
    assert resolve_api_key("explicit", {"GEMINI_API_KEY": "a"}) == "explicit"
    with pytest.raises(ConfigurationError) as info:
        resolve_api_key(None, {})
    assert "GEMINI_API_KEY" in str(info.value)
    assert "GOOGLE_API_KEY" in str(info.value)


def test_no_key_error_from_the_clients() -> None:
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY"):
        AsyncClient()
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY"):
        Client()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:9", "https://example.com/"],
)
def test_allowed_base_urls(url: str) -> None:
    assert resolve_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("http://example.com", "in clear"),
        ("ftp://example.com", "http(s)"),
        ("example.com", "http(s)"),
        ("https://example.com/?key=1", "query"),
    ],
)
def test_refused_base_urls(url: str, phrase: str) -> None:
    with pytest.raises(ConfigurationError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        resolve_base_url(url)


def test_insecure_http_can_be_allowed() -> None:
    assert resolve_base_url("http://10.0.0.5", allow_insecure_http=True) == "http://10.0.0.5"


def test_base_url_from_environment() -> None:
    assert resolve_base_url(None, environ={"GEMINI_BASE_URL": "http://127.0.0.1:5/"}) == (
        "http://127.0.0.1:5"
    )
    with pytest.raises(ConfigurationError, match="GEMINI_BASE_URL"):
        resolve_base_url(None, environ={"GEMINI_BASE_URL": "http://evil.example"})


def test_client_repr_has_no_key() -> None:
    client = AsyncClient(API_KEY)
    assert API_KEY not in repr(client)
    sync = Client(API_KEY)
    assert API_KEY not in repr(sync)
    sync.close()


def test_timeouts() -> None:
    assert Timeout() == Timeout(connect=10.0, total=30.0)
    with pytest.raises(ConfigurationError):
        Timeout(total=0)
    with pytest.raises(ConfigurationError):
        AsyncClient(API_KEY, timeout="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        AsyncClient(API_KEY, max_retries=-1)
    with pytest.raises(ConfigurationError):
        AsyncClient(API_KEY, api_version="")


async def test_closed_async_client_refuses(server: RecordingServer) -> None:
    client = AsyncClient(API_KEY, base_url=server.base_url)
    await client.create()
    await client.close()
    await client.close()
    assert client.closed
    with pytest.raises(ConfigurationError, match="closed"):
        await client.create()


async def test_shared_session_is_not_closed(server: RecordingServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with AsyncClient(API_KEY, base_url=server.base_url, session=session) as client:
            await client.create()
        assert not session.closed


def test_async_client_refuses_a_second_loop(server: RecordingServer) -> None:
    import asyncio

    client = AsyncClient(API_KEY, base_url=server.base_url)

    async def first() -> None:
        await client.create()

    async def second() -> None:
        with pytest.raises(ConfigurationError, match="event loop"):
            await client.create()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(first())
        asyncio.run(second())
        loop.run_until_complete(client.close())
    finally:
        loop.close()


def test_public_names_are_documented() -> None:
    for name in gemini_tokens.__all__:
        obj = getattr(gemini_tokens, name)
        if name == "__version__":
            continue
        assert obj.__doc__, name
