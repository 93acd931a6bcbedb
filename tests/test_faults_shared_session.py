"""A shared aiohttp session's settings do not change the library's requests (issue #11.4).

An aiohttp app often makes its session with ``raise_for_status=True``, a ``base_url``,
default headers (its own ``Authorization``), a cookie jar, a default ``timeout``... Shared
with `AsyncClient(session=...)`, only its connection pool is used: a 429 is still a
`RateLimitError` with ``retry_after`` and retried as the policy says, a wrong key is an
`AuthenticationError` at once, and nothing of the app's (its Authorization, its cookies)
reaches the token service.
"""

from __future__ import annotations

import asyncio
import gzip
import inspect
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gemini_tokens import (
    AsyncClient,
    AuthenticationError,
    ConfigurationError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)

from .conftest import API_KEY
from .fault_server import (  # noqa: F401  (fixtures)
    FaultServer,
    error_info,
    faults_fixture,
    json_reply,
    no_stray_tasks_fixture,
    raw,
    rpc_status,
)

pytestmark = pytest.mark.usefixtures("no_stray_tasks")

POLICY = RetryPolicy(max_retries=2, initial_backoff=0.0, max_backoff=0.0)


async def _raise_always(response: aiohttp.ClientResponse) -> None:
    raise RuntimeError("the app's raise_for_status callable ran on a library request")


def _cookie_jar(server: FaultServer) -> aiohttp.CookieJar:
    jar = aiohttp.CookieJar(unsafe=True)  # unsafe: cookies for an IP address
    jar.update_cookies({"app_session": "app-cookie-value"}, URL(server.base_url))
    return jar


def _middlewares() -> dict[str, Any]:
    async def refuse(request: Any, handler: Any) -> Any:
        raise RuntimeError("the app's middleware ran on a library request")

    return {"middlewares": (refuse,)}


#: Session settings that change what a request means, by name: each makes the kwargs.
SETTINGS: dict[str, Callable[[FaultServer], dict[str, Any]]] = {
    "raise_for_status": lambda s: {"raise_for_status": True},
    "raise_for_status_callable": lambda s: {"raise_for_status": _raise_always},
    "base_url": lambda s: {"base_url": "http://127.0.0.1:9/elsewhere/"},
    "headers": lambda s: {
        "headers": {
            "Authorization": "Bearer app-secret-token",
            "x-goog-api-key": "the-apps-other-key",
            "User-Agent": "the-app/1.0",
            "Content-Type": "text/plain",
            "Cookie": "header_cookie=1",
        }
    },
    "skip_auto_headers": lambda s: {"skip_auto_headers": ("User-Agent", "Content-Type")},
    "auto_decompress": lambda s: {"auto_decompress": False},
    "json_serialize": lambda s: {"json_serialize": lambda value: 1 / 0},
    "cookie_jar": lambda s: {"cookie_jar": _cookie_jar(s)},
    "timeout": lambda s: {"timeout": aiohttp.ClientTimeout(total=1e-6)},
    "trust_env": lambda s: {"trust_env": True},  # with HTTP_PROXY set (see below)
    "max_field_size": lambda s: {"max_field_size": 8},
}
if "middlewares" in inspect.signature(aiohttp.ClientSession).parameters:  # aiohttp >= 3.12
    SETTINGS["middlewares"] = lambda s: _middlewares()


@pytest.fixture(params=sorted(SETTINGS))
def setting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == "trust_env":
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would break the request
        monkeypatch.setenv("NETRC", "/nonexistent")
    return name


def shared_session(server: FaultServer, setting: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(**SETTINGS[setting](server))


def client_for(server: FaultServer, session: aiohttp.ClientSession) -> AsyncClient:
    return AsyncClient(API_KEY, base_url=server.base_url, retry=POLICY, session=session)


def assert_only_our_headers(server: FaultServer) -> None:
    for request in server.requests:
        headers = request.headers
        assert headers["x-goog-api-key"] == API_KEY
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("gemini-tokens/")
        assert "authorization" not in headers
        assert "cookie" not in headers
        assert request.path == "/v1alpha/auth_tokens"


async def test_a_429_is_still_retried_and_the_token_returned(
    faults: FaultServer, setting: str
) -> None:
    faults.script(rpc_status(429, retry_after="0"))
    async with shared_session(faults, setting) as session, client_for(faults, session) as c:
        token = await c.create()
    assert token.name.startswith("auth_tokens/")
    assert faults.attempts == 2
    assert_only_our_headers(faults)


async def test_a_long_429_is_a_rate_limit_error_with_retry_after(
    faults: FaultServer, setting: str
) -> None:
    faults.script(rpc_status(429, retry_after="3600"))
    async with shared_session(faults, setting) as session, client_for(faults, session) as c:
        with pytest.raises(RateLimitError) as caught:
            await c.create()
    assert caught.value.retry_after == 3600.0
    assert caught.value.attempts == 1
    assert faults.attempts == 1


async def test_a_wrong_key_is_an_authentication_error_at_once(
    faults: FaultServer, setting: str
) -> None:
    faults.default = rpc_status(
        400, message="API key not valid", details=[error_info("API_KEY_INVALID")]
    )
    async with shared_session(faults, setting) as session, client_for(faults, session) as c:
        with pytest.raises(AuthenticationError) as caught:
            await c.create()
    assert caught.value.attempts == 1
    assert faults.attempts == 1
    assert_only_our_headers(faults)


async def test_5xx_is_retried_to_the_policy_limit(faults: FaultServer, setting: str) -> None:
    faults.default = rpc_status(503)
    async with shared_session(faults, setting) as session, client_for(faults, session) as c:
        with pytest.raises(ServerError) as caught:
            await c.create()
    assert caught.value.attempts == 3
    assert faults.attempts == 3


async def test_a_compressed_answer_is_read_whatever_auto_decompress_says(
    faults: FaultServer,
) -> None:
    body = gzip.compress(json.dumps({"name": "auth_tokens/zipped", "uses": 1}).encode())
    faults.script(raw(200, body, headers={"Content-Encoding": "gzip"}))
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        client_for(faults, session) as client,
    ):
        token = await client.create()
    assert token.uses == 1


async def test_the_services_cookies_do_not_land_in_the_apps_jar(faults: FaultServer) -> None:
    faults.script(json_reply(200, {"name": "auth_tokens/x"}, headers={"Set-Cookie": "t=1"}))
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as session,
        client_for(faults, session) as client,
    ):
        await client.create()
    assert len(jar) == 0


async def test_the_pool_is_shared_and_stays_the_apps(faults: FaultServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with client_for(faults, session) as client:
            await client.create()
            await client.create()
        assert faults.connections_opened == 1  # one connection, reused
        assert not session.closed  # closing the token client leaves the app's session
        assert faults.connections_open == 1  # ... and its pooled connection
        async with session.post(f"{faults.base_url}/v1alpha/auth_tokens", data=b"{}") as r:
            assert r.status == 200
        assert faults.connections_opened == 1
    assert await faults.until_idle()


async def test_a_closed_shared_session_is_a_configuration_error(faults: FaultServer) -> None:
    session = aiohttp.ClientSession()
    client = client_for(faults, session)
    await client.create()
    await session.close()
    with pytest.raises(ConfigurationError, match="session given as session= is closed"):
        await asyncio.wait_for(client.create(), 5)
    await client.close()

    closed = aiohttp.ClientSession()
    await closed.close()
    async with client_for(faults, closed) as client:
        with pytest.raises(ConfigurationError, match="is closed"):
            await client.create()
    assert faults.attempts == 1
