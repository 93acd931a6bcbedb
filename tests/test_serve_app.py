"""The service's parts in process (``build_broker``, ``build_app``, ``serve``): policies by
claim, the audit file, health and readiness, draining, a ``module:function`` authorizer.
(The OpenTelemetry of its decisions is in ``test_serve_otel.py``, which needs the SDK.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import gemini_tokens
from gemini_tokens.broker import BrokerRequest, Caller, Denied
from gemini_tokens.serve._app import build_app, serve
from gemini_tokens.serve._build import build_broker
from gemini_tokens.serve._settings import ServeSettings, parse_settings
from gemini_tokens.testing import Emulator

from .jwks_server import AUDIENCE, ISSUER, IdentityProvider

SECRET = "0123456789abcdef0123456789abcdef-secret"
MODEL = "gemini-live-test"

BASE = f"""
[server]
allowed_origins = ["https://app.example.test"]

[limits]
per_caller = ["2/minute"]

[auth.jwt]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["HS256"]
hmac_secret = "{SECRET}"
"""

ONE_POLICY = f"""
[policy]
model = "{MODEL}"
uses = 1
"""

BY_PLAN = """
[policies]
claim = "plan"

[policies.free]
model = "gemini-free"
uses = 1
expire_minutes = 5

[policies.pro]
model = "gemini-pro"
uses = 3
expire_minutes = 30
"""


def settings(text: str, **env: str) -> ServeSettings:
    return parse_settings(tomllib.loads(text), source="test.toml", environ=env)


def token(sub: str = "u1", **claims: Any) -> str:
    return jwt.encode(IdentityProvider().claims(sub, **claims), SECRET, algorithm="HS256")


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator() as emu:
        yield emu


class App:
    def __init__(self, client: TestClient, emu: Emulator, broker: Any) -> None:
        self.http = client
        self.emu = emu
        self.broker = broker

    async def post(self, jwt_: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if jwt_ is not None:
            headers["Authorization"] = f"Bearer {jwt_}"
        response = await self.http.post("/token", headers=headers, **kwargs)
        return response.status, await response.json()


async def make_app(emu: Emulator, text: str, **env: str) -> tuple[TestClient, Any]:
    config = settings(text, **env)
    client = gemini_tokens.AsyncClient(emu.api_key, base_url=emu.base_url)
    broker, close_audit = build_broker(config, client=client)
    app = build_app(config, broker, client)

    async def close(app: Any) -> AsyncIterator[None]:
        yield
        await client.close()
        close_audit()

    app.cleanup_ctx.append(close)
    test_client = TestClient(TestServer(app))
    await test_client.start_server()
    return test_client, broker


@pytest.fixture
async def app(emulator: Emulator) -> AsyncIterator[App]:
    client, broker = await make_app(emulator, BASE + ONE_POLICY)
    yield App(client, emulator, broker)
    await client.close()


async def test_health_and_readiness(app: App) -> None:
    response = await app.http.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    response = await app.http.get("/readyz")
    assert response.status == 200
    assert await response.json() == {
        "status": "ready",
        "storage": True,
        "upstream": True,
        "jwks": True,
    }
    assert response.headers["Cache-Control"] == "no-store"


async def test_readiness_fails_when_the_token_service_is_unreachable(
    emulator: Emulator, unused_tcp_port: int
) -> None:
    config = settings(BASE + ONE_POLICY)
    client = gemini_tokens.AsyncClient("k", base_url=f"http://127.0.0.1:{unused_tcp_port}")
    broker, close_audit = build_broker(config, client=client)
    async with TestClient(TestServer(build_app(config, broker, client))) as http:
        response = await http.get("/readyz")
        assert response.status == 503
        assert (await response.json())["upstream"] is False
    await client.close()
    close_audit()


async def test_policies_are_chosen_by_a_claim(emulator: Emulator) -> None:
    client, _ = await make_app(emulator, BASE + BY_PLAN)
    app = App(client, emulator, None)
    try:
        status, body = await app.post(token("p", plan="pro"))
        assert status == 200
        assert body["uses"] == 3
        assert body["bidiGenerateContentSetup"]["model"] == "models/gemini-pro"
        status, body = await app.post(token("f", plan="free"))
        assert (status, body["uses"]) == (200, 1)
        # No plan and no default policy: refused, with the claim named.
        status, body = await app.post(token("n"))
        assert status == 403
        assert "plan" in body["error"]["message"]
        status, body = await app.post(token("x", plan="platinum"))
        assert status == 403
    finally:
        await client.close()
    assert [t.setup["model"] for t in emulator.tokens] == [
        "models/gemini-pro",
        "models/gemini-free",
    ]


async def test_a_default_policy_for_callers_without_the_claim(emulator: Emulator) -> None:
    client, _ = await make_app(
        emulator, BASE + BY_PLAN.replace('claim = "plan"', 'claim = "plan"\ndefault = "free"')
    )
    try:
        status, body = await App(client, emulator, None).post(token("n"))
        assert (status, body["uses"]) == (200, 1)
    finally:
        await client.close()


async def test_the_jsonl_audit_sink_writes_one_line_per_decision(
    emulator: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    text = BASE + ONE_POLICY + f'\n[audit]\nsink = "jsonl"\npath = "{path}"\n'
    client, _ = await make_app(emulator, text)
    app = App(client, emulator, None)
    names = []
    try:
        for _ in range(2):
            status, body = await app.post(token("amy"))
            assert status == 200
            names.append(body["name"])
        assert (await app.post(token("amy")))[0] == 429
        assert (await app.post(None))[0] == 401
        assert (await app.post(token("amy"), headers={"Origin": "https://evil.test"}))[0] == 403
    finally:
        await client.close()
    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["outcome"] for e in events] == ["minted", "minted", "limited", "denied", "denied"]
    assert [e["reason"] for e in events][2:] == [
        "caller_limit",
        "unauthenticated",
        "origin_not_allowed",
    ]
    text_all = path.read_text()
    for name in names:
        assert name not in text_all
    assert emulator.api_key not in text_all


async def test_access_logs_are_json_without_secrets(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    jwt_ = token("zed")
    with caplog.at_level(logging.INFO, logger="gemini_tokens.serve.access"):
        status, body = await app.post(jwt_)
        await app.http.get("/healthz?x=secret-query")
    assert status == 200
    records = [r for r in caplog.records if r.name == "gemini_tokens.serve.access"]
    entries = [json.loads(r.getMessage()) for r in records]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/token", 200),
        ("GET", "/healthz", 200),
    ]
    text = caplog.text
    for secret in (jwt_, body["name"], "secret-query", app.emu.api_key):
        assert secret not in text


async def authorize(request: BrokerRequest) -> Caller:
    """A ``module:function`` authorizer for the tests: an API key per caller."""
    key = request.headers.get("x-app-key")
    if key != "letmein":
        raise Denied(401, "send X-App-Key")
    return Caller(id="app-caller")


async def test_a_module_function_authorizer(emulator: Emulator) -> None:
    text = BASE.split("[auth.jwt]")[0] + '[auth]\nauthorizer = "tests.test_serve_app:authorize"\n'
    client, _ = await make_app(emulator, text + ONE_POLICY)
    app = App(client, emulator, None)
    try:
        assert (await app.post(headers={"X-App-Key": "letmein"}))[0] == 200
        status, body = await app.post(headers={"X-App-Key": "nope"})
        assert status == 401
        assert body["error"]["message"] == "send X-App-Key"
        response = await client.get("/readyz")
        assert (await response.json())["jwks"] is True  # no JWKS to need
    finally:
        await client.close()


async def until(condition: Any, timeout: float = 15) -> None:
    """Poll ``condition`` (the state of another server) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():  # the state of another server
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


async def test_serve_drains_on_stop(
    emulator: Emulator, unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve``: the request in flight when stopping finishes; the service then exits."""
    config = settings(
        BASE + ONE_POLICY,
        GEMINI_TOKENS_SERVER_PORT=str(unused_tcp_port),
        GEMINI_TOKENS_UPSTREAM_BASE_URL=emulator.base_url,
        GEMINI_TOKENS_UPSTREAM_MAX_RETRIES="0",
        GEMINI_TOKENS_UPSTREAM_TIMEOUT="10",
    )
    stop = asyncio.Event()
    urls: list[str] = []
    monkeypatch.setenv("GEMINI_API_KEY", emulator.api_key)
    service = asyncio.ensure_future(serve(config, ready=urls.append, stop=stop))
    await until(lambda: bool(urls))
    assert urls == [f"http://127.0.0.1:{unused_tcp_port}"]
    emulator.delay_next(0.5)
    async with aiohttp.ClientSession() as http:
        request = asyncio.ensure_future(
            http.post(urls[0] + "/token", headers={"Authorization": f"Bearer {token()}"})
        )
        await until(lambda: any("auth_tokens" in r.path for r in emulator.requests))
        stop.set()
        response = await request
        assert response.status == 200
        assert (await response.json())["name"].startswith("auth_tokens/")
        response.release()
    await asyncio.wait_for(service, 15)


async def test_draining_refuses_requests_on_open_connections(app: App) -> None:
    from gemini_tokens.serve._app import _STATE

    app.http.server.app[_STATE]["draining"] = True
    status, body = await app.post(token())
    assert status == 503
    assert body == {"error": {"code": 503, "status": "UNAVAILABLE", "message": "shutting down"}}
    response = await app.http.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"status": "draining"}  # readiness says why
    assert (await app.http.get("/healthz")).status == 200  # still alive
