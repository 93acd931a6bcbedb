"""The emulator's token service: minting, validation, records, faults, clock, TLS, fixtures.

Each test talks to a real `Emulator` over real sockets, mostly through this library's own
clients, so the two sides are checked against each other (and against ``wire.md``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

import gemini_tokens
from gemini_tokens import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConfigurationError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from gemini_tokens._converters import body_for
from gemini_tokens._request import build_request
from gemini_tokens._times import parse_time
from gemini_tokens.testing import Clock, Emulator, IssuedToken, RecordedRequest

ROOT = pathlib.Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "spec" / "vectors.json").read_text())
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
FROZEN = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)


@pytest.fixture
def instant_retries() -> Iterator[None]:
    gemini_tokens.set_testing(True)
    try:
        yield
    finally:
        gemini_tokens.set_testing(False)


async def post(
    emu: Emulator,
    body: Any,
    *,
    path: str = "/v1alpha/auth_tokens",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """A raw POST, for what this library's client would never send."""
    sent = {"x-goog-api-key": emu.api_key} if headers is None else headers
    data = raw if raw is not None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(emu.base_url + path, data=data, headers=sent) as response,
    ):
        text = await response.text()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = text
        return response.status, payload, dict(response.headers)


def _at(offset_s: float, now: dt.datetime) -> str:
    return (now + dt.timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


# -- minting -----------------------------------------------------------------------------------


async def test_mint_returns_and_records_the_token() -> None:
    async with Emulator() as emu, AsyncClient(emu.api_key, base_url=emu.base_url) as client:
        token = await client.create(
            uses=2,
            live_connect_constraints={
                "model": MODEL,
                "config": {"response_modalities": ["AUDIO"], "temperature": 0.7},
            },
            lock_additional_fields=["top_p"],
        )
        (issued,) = emu.tokens
        assert issued.name == token.name
        assert emu.token(token.name) is issued
        assert issued.uses == token.uses == 2
        assert issued.setup == {
            "model": f"models/{MODEL}",
            "generationConfig": {"responseModalities": ["AUDIO"], "temperature": 0.7},
        }
        assert issued.field_mask == (
            "model",
            "generationConfig.responseModalities",
            "generationConfig.temperature",
            "generationConfig.topP",
        )
        assert token.locked_fields == issued.field_mask
        assert token.expire_time == issued.expire_time
        assert token.new_session_expire_time == issued.new_session_expire_time
        assert issued.remaining_uses == 2
        (request,) = emu.requests
        assert (request.method, request.path, request.status) == (
            "POST",
            "/v1alpha/auth_tokens",
            200,
        )
        assert request.headers["x-goog-api-key"] == emu.api_key
        assert request.body["uses"] == 2


async def test_names_are_random_and_of_the_service_form() -> None:
    async with Emulator() as emu, AsyncClient(emu.api_key, base_url=emu.base_url) as client:
        names = {(await client.create()).name for _ in range(5)}
    assert len(names) == 5
    for name in names:
        prefix, _, secret = name.partition("/")
        assert prefix == "auth_tokens"
        assert len(secret) >= 40  # 32 random bytes, base64url


async def test_defaults_follow_wire_md() -> None:
    async with Emulator(clock=Clock(start=FROZEN)) as emu:
        status, body, _ = await post(emu, {})
        assert status == 200
        assert body["uses"] == 1
        assert parse_time(body["expireTime"]) == FROZEN + dt.timedelta(minutes=30)
        assert parse_time(body["newSessionExpireTime"]) == FROZEN + dt.timedelta(seconds=60)
        assert "bidiGenerateContentSetup" not in body
        assert "fieldMask" not in body
        # A short-lived token's new-session window never outlives it.
        status, body, _ = await post(emu, {"expireTime": _at(30, FROZEN)})
        assert parse_time(body["newSessionExpireTime"]) == FROZEN + dt.timedelta(seconds=30)


def _instant(text: str) -> dt.datetime:
    when = parse_time(text)
    assert when is not None, text
    return when


def _vector_input(value: Any, now: dt.datetime) -> Any:
    if isinstance(value, dict) and set(value) == {"from_now_s"}:
        return now + dt.timedelta(seconds=value["from_now_s"])
    if isinstance(value, dict):
        return {key: _vector_input(item, now) for key, item in value.items()}
    return value


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_vector_is_accepted_and_echoed(vector: dict[str, Any]) -> None:
    """The canonical bodies this library sends are what the emulator accepts and stores."""
    now = dt.datetime.now(dt.timezone.utc)
    options = _vector_input(vector["input"], now)
    expected = body_for(build_request(**options, now=now))
    with Emulator.running() as emu, Client(emu.api_key, base_url=emu.base_url) as client:
        token = client.create(**options)
        issued = emu.token(token.name)
    assert issued is not None
    wire = issued.to_wire()
    assert wire["uses"] == expected["uses"]
    assert wire.get("bidiGenerateContentSetup") == expected.get("bidiGenerateContentSetup")
    mask = wire.get("fieldMask")
    assert (None if mask is None else set(mask.split(","))) == (
        None if "fieldMask" not in expected else set(expected["fieldMask"].split(","))
    )
    for key in ("expireTime", "newSessionExpireTime"):
        assert abs(_instant(wire[key]) - _instant(expected[key])) < dt.timedelta(seconds=5)


async def test_snake_case_bodies_are_read_as_proto_json() -> None:
    async with Emulator() as emu:
        now = emu.clock.now()
        status, body, _ = await post(
            emu,
            {
                "uses": "3",
                "expire_time": _at(600, now),
                "bidi_generate_content_setup": {
                    "model": MODEL,
                    "generation_config": {"response_modalities": ["AUDIO"], "top_k": 4},
                    "session_resumption": {},
                },
                "field_mask": "model,generationConfig.responseModalities,generationConfig.topK,"
                "sessionResumption",
            },
        )
    assert status == 200, body
    assert body["uses"] == 3
    assert body["bidiGenerateContentSetup"] == {
        "model": f"models/{MODEL}",
        "generationConfig": {"responseModalities": ["AUDIO"], "topK": 4},
        "sessionResumption": {},
    }


# -- validation --------------------------------------------------------------------------------

SETUP = {"model": MODEL, "generationConfig": {"temperature": 0.5}}


def _bad_bodies(now: dt.datetime) -> list[tuple[str, dict[str, Any], str, str]]:
    """(id, body, field, message fragment) the service answers 400 INVALID_ARGUMENT."""
    return [
        ("unknown-field", {"usess": 1}, "", 'Unknown name "usess": Cannot find field.'),
        (
            "unknown-setup-field",
            {"bidiGenerateContentSetup": {"generationConfig": {"tempurature": 1}}},
            "bidi_generate_content_setup.generation_config",
            "Unknown name \"tempurature\" at 'bidi_generate_content_setup.generation_config'",
        ),
        (
            "wrong-type",
            {"bidiGenerateContentSetup": {"generationConfig": {"temperature": "hot"}}},
            "bidi_generate_content_setup.generation_config.temperature",
            "Invalid value at",
        ),
        ("expire-past", {"expireTime": _at(-1, now)}, "expire_time", "in the future"),
        ("expire-20h", {"expireTime": _at(20 * 3600, now)}, "expire_time", "20 hours"),
        (
            "new-session-past",
            {"newSessionExpireTime": _at(-60, now)},
            "new_session_expire_time",
            "in the future",
        ),
        ("expire-garbage", {"expireTime": "tomorrow"}, "expire_time", "RFC 3339"),
        ("uses-negative", {"uses": -1}, "uses", "0 (no limit) or more"),
        ("uses-not-int", {"uses": 1.5}, "uses", "integer"),
        (
            "mask-list-index",
            {"bidiGenerateContentSetup": {"tools": [{"googleSearch": {}}]}, "fieldMask": "tools.0"},
            "field_mask",
            "field_mask is invalid for BidiGenerateContentSetup",
        ),
        ("mask-unknown", {"fieldMask": "model,voice"}, "field_mask", "field_mask is invalid"),
        (
            "mask-uncovered",
            {"bidiGenerateContentSetup": SETUP, "fieldMask": "model"},
            "field_mask",
            "BidiGenerateContentSetup contains fields that are not specified in field_mask",
        ),
    ]


_IDS = [case[0] for case in _bad_bodies(FROZEN)]


@pytest.mark.parametrize("case", _IDS)
async def test_invalid_bodies_are_400_with_bad_request_details(case: str) -> None:
    async with Emulator(clock=Clock(start=FROZEN)) as emu:
        (_, body, field, fragment) = next(c for c in _bad_bodies(FROZEN) if c[0] == case)
        status, answer, _ = await post(emu, body)
        assert status == 400
        error = answer["error"]
        assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
        assert fragment in error["message"]
        (detail,) = error["details"]
        assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        (violation,) = detail["fieldViolations"]
        assert violation.get("field", "") == field
        assert violation["description"] == error["message"]
        assert emu.tokens == []


async def test_masks_that_cover_the_setup_are_accepted() -> None:
    async with Emulator() as emu:
        for mask in ("model,generationConfig", "model,generationConfig.temperature,tools"):
            status, body, _ = await post(
                emu, {"bidiGenerateContentSetup": SETUP, "fieldMask": mask}
            )
            assert status == 200, body
            assert body["fieldMask"] == mask
        # A mask without a setup locks those fields to "unset".
        status, body, _ = await post(emu, {"fieldMask": "generationConfig.temperature"})
        assert status == 200, body


async def test_snake_case_mask_paths_are_read_as_camel_case() -> None:
    """The reference SDK sends ``generationConfig.top_k``; the service's parser accepts it."""
    async with Emulator() as emu:
        status, body, _ = await post(
            emu,
            {
                "bidiGenerateContentSetup": SETUP,
                "fieldMask": "model,generationConfig.temperature,generationConfig.top_k",
            },
        )
        assert status == 200, body
        assert emu.tokens[0].field_mask == (
            "model",
            "generationConfig.temperature",
            "generationConfig.topK",
        )
        status, body, _ = await post(emu, {"fieldMask": "generation_config.top_kk"})
        assert status == 400
        assert "field_mask is invalid" in body["error"]["message"]


async def test_a_non_json_body_is_400() -> None:
    async with Emulator() as emu:
        status, answer, _ = await post(emu, None, raw=b"{not json")
    assert status == 400
    assert answer["error"]["message"].startswith("Invalid JSON payload received.")


async def test_the_client_sees_the_services_400_typed() -> None:
    # The emulator's clock runs ahead, so the client's (correct) times look past to it.
    async with Emulator() as emu, AsyncClient(emu.api_key, base_url=emu.base_url) as client:
        emu.advance(hours=1)
        with pytest.raises(BadRequestError) as info:
            await client.create()
    assert info.value.status == "INVALID_ARGUMENT"
    assert info.value.field_violations == [("expire_time", "expire_time must be in the future.")]


# -- authentication and paths ------------------------------------------------------------------


async def test_a_wrong_key_is_400_api_key_invalid() -> None:
    async with Emulator() as emu, AsyncClient("not-the-key", base_url=emu.base_url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.create()
    assert info.value.status_code == 400
    assert info.value.reason == "API_KEY_INVALID"
    assert info.value.message == "API key not valid. Please pass a valid API key."


async def test_no_key_is_403_and_a_bearer_credential_401() -> None:
    async with Emulator() as emu:
        status, body, _ = await post(emu, {}, headers={})
        assert status == 403
        assert body["error"]["status"] == "PERMISSION_DENIED"
        assert body["error"]["message"].startswith("Method doesn't allow unregistered callers")
        status, body, _ = await post(emu, {}, headers={"Authorization": "Bearer abc"})
        assert status == 401
        assert body["error"]["status"] == "UNAUTHENTICATED"
        # The service also takes the key as a query parameter.
        status, body, _ = await post(
            emu, {}, headers={}, path=f"/v1alpha/auth_tokens?key={emu.api_key}"
        )
        assert status == 200
        assert body["name"].startswith("auth_tokens/")


async def test_another_api_version_is_404() -> None:
    async with Emulator() as emu:
        async with AsyncClient(emu.api_key, base_url=emu.base_url, api_version="v1beta") as client:
            with pytest.raises(NotFoundError) as info:
                await client.create()
        assert info.value.status == "NOT_FOUND"
        status, body, _ = await post(emu, {}, path="/v1alpha/models")
        assert status == 404
        assert "The emulator serves POST /v1alpha/auth_tokens" in body["error"]["message"]
        # SDKs joining a base URL that ends in "/" send "//v1alpha/..."; that works.
        status, _body, _ = await post(emu, {}, path="//v1alpha/auth_tokens")
        assert status == 200
        assert [r.path for r in emu.requests][-1] == "/v1alpha/auth_tokens"


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("instant_retries")
async def test_fail_next_is_retried_through() -> None:
    async with Emulator() as emu, AsyncClient(emu.api_key, base_url=emu.base_url) as client:
        emu.fail_next(503, times=2)
        token = await client.create()
        assert [(r.status, r.fault) for r in emu.requests] == [
            (503, "fail"),
            (503, "fail"),
            (200, None),
        ]
        assert [t.name for t in emu.tokens] == [token.name]
        emu.fail_next(500, times=3)
        with pytest.raises(ServerError) as info:
            await client.create()
        assert info.value.attempts == 3
        assert info.value.status == "INTERNAL"


async def test_fail_next_with_retry_after() -> None:
    async with Emulator() as emu, AsyncClient(emu.api_key, base_url=emu.base_url) as client:
        emu.fail_next(429, retry_after=60)
        with pytest.raises(RateLimitError) as info:
            await client.create()  # longer than max_retry_wait: raised at once
        assert info.value.retry_after == 60
        assert info.value.attempts == 1
        status, body, headers = await _failing_post(emu, 429, retry_after=1.5)
        assert status == 429
        assert headers["Retry-After"] == "1.5"
        assert body["error"]["details"] == [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}
        ]


async def _failing_post(
    emu: Emulator, status: int, **options: Any
) -> tuple[int, Any, dict[str, str]]:
    emu.fail_next(status, **options)
    return await post(emu, {})


async def test_fail_next_with_a_custom_body() -> None:
    async with (
        Emulator() as emu,
        AsyncClient(emu.api_key, base_url=emu.base_url, max_retries=0) as client,
    ):
        emu.fail_next(502, body="<html><body>Bad gateway</body></html>")
        with pytest.raises(ServerError) as info:
            await client.create()
        assert "non-JSON (text/html" in info.value.message
        emu.fail_next(200, body={"not": "a token"})
        with pytest.raises(InvalidResponseError):
            await client.create()
        custom = {"error": {"code": 403, "message": "nope", "status": "PERMISSION_DENIED"}}
        status, body, _ = await _failing_post(emu, 403, body=custom)
        assert (status, body) == (403, custom)


@pytest.mark.usefixtures("instant_retries")
async def test_drop_next_closes_without_an_answer() -> None:
    async with Emulator() as emu:
        async with AsyncClient(emu.api_key, base_url=emu.base_url, max_retries=0) as client:
            emu.drop_next()
            with pytest.raises(APIConnectionError):
                await client.create()
        async with AsyncClient(emu.api_key, base_url=emu.base_url) as client:
            emu.drop_next()
            await client.create()
        assert [(r.fault, r.status) for r in emu.requests] == [
            ("drop", None),
            ("drop", None),
            (None, 200),
        ]


async def test_delay_next_stalls_and_stop_does_not_wait_for_it() -> None:
    emu = await Emulator().start()
    try:
        async with AsyncClient(
            emu.api_key,
            base_url=emu.base_url,
            timeout=2,
            max_retries=0,  # slack for a busy CI
        ) as client:
            emu.delay_next(0.2)
            started = time.monotonic()
            await client.create()
            assert time.monotonic() - started >= 0.2
            emu.delay_next(30)
            with pytest.raises(APITimeoutError):
                await client.create()
    finally:
        started = time.monotonic()
        await emu.stop()
        assert time.monotonic() - started < 3


async def test_fault_arguments_are_checked_and_cleared() -> None:
    emu = Emulator()
    for bad in ({"status": 99}, {"status": 600}, {"times": 0}, {"status": True}):
        with pytest.raises(ValueError):
            emu.fail_next(**bad)
    with pytest.raises(ValueError):
        emu.delay_next(-1)
    with pytest.raises(ValueError):
        emu.drop_next(0)
    async with emu:
        emu.fail_next(503, times=5)
        emu.delay_next(10)
        emu.clear_faults()
        status, _, _ = await post(emu, {})
        assert status == 200


# -- the clock ---------------------------------------------------------------------------------


def test_clock_follows_real_time_plus_advances() -> None:
    clock = Clock()
    before = dt.datetime.now(dt.timezone.utc)
    moved = clock.advance(minutes=31)
    assert moved - before >= dt.timedelta(minutes=31)
    assert clock.offset == dt.timedelta(minutes=31)
    with pytest.raises(ValueError):
        clock.advance(seconds=-1)


def test_a_frozen_clock_moves_only_when_advanced() -> None:
    clock = Clock(start=FROZEN)
    assert clock.now() == FROZEN
    clock.advance(hours=1, seconds=2)
    assert clock.now() == FROZEN + dt.timedelta(hours=1, seconds=2)
    assert "frozen" in repr(clock)
    with pytest.raises(ValueError):
        Clock(start=dt.datetime(2031, 1, 1))  # naive


# -- TLS ---------------------------------------------------------------------------------------


def _read(path: str) -> str:
    return pathlib.Path(path).read_text()


def _exists(path: str) -> bool:
    return pathlib.Path(path).exists()


async def test_tls_serves_https_trusted_by_its_ca_and_leaves_no_file() -> None:
    async with Emulator(tls=True) as emu:
        assert emu.base_url.startswith("https://127.0.0.1:")
        ca_file = emu.ca_file
        assert _read(ca_file).startswith("-----BEGIN CERTIFICATE-----")
        connector = aiohttp.TCPConnector(ssl=emu.ssl_context())
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            AsyncClient(emu.api_key, base_url=emu.base_url, session=session) as client,
        ):
            token = await client.create()
        assert token.live_url().startswith("wss://127.0.0.1:")
        # An ordinary client, which does not trust the throwaway CA, is refused.
        async with AsyncClient(emu.api_key, base_url=emu.base_url, max_retries=0) as client:
            with pytest.raises(APIConnectionError):
                await client.create()
    assert not _exists(ca_file)  # no files left behind
    with pytest.raises(ConfigurationError):
        emu.ca_file  # noqa: B018


async def test_tls_without_trustme_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)
    emu = Emulator(tls=True)
    with pytest.raises(ConfigurationError, match=r"gemini-tokens\[test\].*trustme"):
        await emu.start()
    await emu.stop()


def test_tls_accessors_need_tls() -> None:
    emu = Emulator()
    with pytest.raises(ConfigurationError):
        emu.ca_file  # noqa: B018
    with pytest.raises(ConfigurationError):
        emu.ssl_context()
    with pytest.raises(ConfigurationError):
        emu.base_url  # noqa: B018


# -- lifetime, threads, records ----------------------------------------------------------------


def test_running_serves_sync_code_from_its_own_thread() -> None:
    with Emulator.running() as emu:
        assert any(t.name == "gemini-tokens-emulator" for t in threading.enumerate())
        with Client(emu.api_key, base_url=emu.base_url) as client:
            token = client.create(uses=3)
        assert emu.token(token.name) is not None
        base_url = emu.base_url
    assert not any(t.name == "gemini-tokens-emulator" for t in threading.enumerate())
    with Client("k", base_url=base_url, max_retries=0) as client, pytest.raises(APIConnectionError):
        client.create()


async def test_start_twice_is_refused() -> None:
    async with Emulator() as emu:
        with pytest.raises(ConfigurationError):
            await emu.start()
    await emu.stop()  # idempotent


async def test_an_explicit_key_and_port() -> None:
    probe = Emulator()
    async with probe:
        port = int(probe.base_url.rsplit(":", 1)[1])
    async with Emulator(api_key="my-key", port=port) as emu:
        assert emu.api_key == "my-key"
        assert emu.base_url == f"http://127.0.0.1:{port}"
    with pytest.raises(ConfigurationError):
        Emulator(api_key=" ")


async def test_reprs_never_show_secrets() -> None:
    async with Emulator() as emu, AsyncClient(emu.api_key, base_url=emu.base_url) as client:
        token = await client.create()
        secret = token.name.partition("/")[2]
        shown = " ".join(repr(x) for x in (emu, emu.tokens, emu.requests, emu.clock))
    assert emu.api_key not in shown
    assert secret not in shown
    assert "auth_tokens/***" in shown
    assert isinstance(emu.tokens[0], IssuedToken)
    assert isinstance(emu.requests[0], RecordedRequest)


# -- the pytest plugin -------------------------------------------------------------------------


async def test_async_fixture_points_the_environment_at_it(gemini_emulator: Emulator) -> None:
    assert os.environ["GEMINI_BASE_URL"] == gemini_emulator.base_url
    assert os.environ["GEMINI_API_KEY"] == gemini_emulator.api_key
    token = await gemini_tokens.acreate(uses=2)
    assert gemini_emulator.token(token.name) is not None


def test_sync_fixture_points_the_environment_at_it(gemini_emulator_sync: Emulator) -> None:
    token = gemini_tokens.create(live_connect_constraints={"model": MODEL})
    issued = gemini_emulator_sync.token(token.name)
    assert issued is not None
    assert issued.setup == {"model": f"models/{MODEL}"}


def test_the_plugin_is_cheap_and_inert() -> None:
    code = (
        "import sys, gemini_tokens.testing._pytest_plugin as p; "
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported'; "
        "assert 'trustme' not in sys.modules, 'trustme imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_asyncio_is_not_left_running() -> None:
    # Emulator.running() must not leave an event loop set in this thread.
    with Emulator.running():
        pass
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
