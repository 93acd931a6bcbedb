"""Each adapter, in its own framework: ASGI (Starlette), FastAPI, aiohttp, WSGI (Flask).

(The Django recipe's test is in tests/test_examples.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gemini_tokens.broker import AuditEvent, BrokerRequest, Caller, TokenBroker
from gemini_tokens.testing import Emulator
from tests.broker.helpers import MODEL, ORIGIN, authorize, policy

ROOT = pathlib.Path(__file__).resolve().parent.parent
AUTH = {"Authorization": "Bearer alice-token"}
BIG = b'{"config": {}}' + b" " * (20 * 1024)

pytestmark = pytest.mark.filterwarnings(
    # Older starlette releases (those for Python 3.10) warn when their test client runs on httpx.
    "ignore:Using `httpx` with `starlette.testclient` is deprecated"
)


def _broker(**options: Any) -> TokenBroker:
    options.setdefault("authorize", authorize)
    options.setdefault("policy", policy())
    options.setdefault("allowed_origins", [ORIGIN])
    options.setdefault("audit", lambda event: None)
    return TokenBroker(**options)


def _check_contract(status: int, headers: Any, body: bytes, emu: Emulator) -> dict[str, Any]:
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"].startswith("application/json")
    data: dict[str, Any] = json.loads(body)
    assert emu.token(data["name"]) is not None
    assert {"liveUrl", "serverTime"} <= set(data)
    return data


# --- ASGI in Starlette ----------------------------------------------------------------------


def test_asgi_in_starlette(gemini_emulator_sync: Emulator) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route
    from starlette.testclient import TestClient as StarletteClient

    broker = _broker()
    app = Starlette(
        routes=[Route("/token", broker.asgi), Mount("/token", app=broker.asgi)],
        lifespan=broker.lifespan,
    )
    for _ in range(2):  # the app can start twice: the broker reopens after its lifespan
        with StarletteClient(app, base_url="http://127.0.0.1") as http:
            ok = http.post("/token", headers=AUTH, json={"config": {"temperature": 0.2}})
            _check_contract(ok.status_code, ok.headers, ok.content, gemini_emulator_sync)
            mounted = http.post("/token/", headers=AUTH)
            assert mounted.status_code == 200
            assert http.post("/token").status_code == 401
            assert http.post("/token/nope", headers=AUTH).status_code == 404
            big = http.post(
                "/token", headers={**AUTH, "Content-Type": "application/json"}, content=BIG
            )
            assert big.status_code == 413
            preflight = http.options(
                "/token", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
            )
            assert preflight.status_code == 204
            assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
            foreign = http.post("/token", headers={**AUTH, "Origin": "https://evil.example"})
            assert foreign.status_code == 403
        assert broker._client is None  # closed by the lifespan


async def test_asgi_as_the_whole_app_with_lifespan(gemini_emulator: Emulator) -> None:
    broker = _broker()
    app = broker.asgi
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message)

    # A request, in pieces, then the shutdown that closes the client.
    body = iter(
        [
            {"type": "http.request", "body": b'{"config":', "more_body": True},
            {"type": "http.request", "body": b' {"speechConfig": "Puck"}}', "more_body": False},
        ]
    )

    async def receive_body() -> dict[str, Any]:
        return next(body)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "root_path": "",
        "scheme": "http",
        "headers": [(b"authorization", AUTH["Authorization"].encode()),
                    (b"content-type", b"application/json")],
        "client": ("198.51.100.7", 5000),
    }  # fmt: skip
    await app(scope, receive_body, send)
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"cache-control"] == b"no-store"
    data = json.loads(sent[1]["body"])
    generation = data["bidiGenerateContentSetup"]["generationConfig"]
    assert generation["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Puck"
    sent.clear()
    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert broker._client is None


# --- FastAPI --------------------------------------------------------------------------------


def test_fastapi_router_and_its_openapi(gemini_emulator_sync: Emulator) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient as FastAPIClient

    from gemini_tokens.broker.fastapi import router

    broker = _broker()
    app = FastAPI()
    app.include_router(router(broker, path="/token"), prefix="/api")
    with FastAPIClient(app, base_url="http://127.0.0.1") as http:
        ok = http.post("/api/token", headers=AUTH, json={"config": {"speech_config": "Kore"}})
        _check_contract(ok.status_code, ok.headers, ok.content, gemini_emulator_sync)
        refused = http.post("/api/token", headers=AUTH, json={"config": {"top_k": 2}})
        assert refused.status_code == 400
        assert refused.json()["error"]["message"].startswith("config.top_k:")
        assert http.get("/api/token").status_code == 405
        assert http.get("/api/token").json()["error"]["status"] == "UNIMPLEMENTED"
        assert http.get("/api/token/other").status_code == 404
        preflight = http.options(
            "/api/token", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 204
        big = http.post(
            "/api/token", headers={**AUTH, "Content-Type": "application/json"}, content=BIG
        )
        assert big.status_code == 413
        schema = http.get("/openapi.json").json()
    assert broker._client is None  # the router's lifespan closed it
    operation = schema["paths"]["/api/token"]["post"]
    assert operation["operationId"] == "mint_token"
    assert {"200", "400", "401", "403", "429", "503"} <= set(operation["responses"])
    config = operation["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "config"
    ]
    assert config["properties"]["speech_config"] == {"enum": ["Kore", "Puck"]}
    assert list(schema["paths"]) == ["/api/token"]  # the other methods stay out of it


# --- aiohttp --------------------------------------------------------------------------------


async def test_aiohttp_add_routes(gemini_emulator: Emulator) -> None:
    from gemini_tokens.broker.aiohttp import add_routes

    events: list[AuditEvent] = []
    broker = _broker(audit=events.append)
    app = web.Application()
    add_routes(app, broker, path="/token")
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        ok = await http.post("/token", headers=AUTH, json={"config": {"temperature": 0.9}})
        data = _check_contract(ok.status, ok.headers, await ok.read(), gemini_emulator)
        # The token opens a Live session through the emulator.
        async with http.session.ws_connect(data["liveUrl"]) as ws:
            await ws.send_json({"setup": {"model": f"models/{MODEL}"}})
            first = await ws.receive(timeout=10)
            assert "setupComplete" in json.loads(first.data)
        assert (await http.post("/token")).status == 401
        assert (await http.get("/token")).status == 405
        assert (await http.post("/token/x", headers=AUTH)).status == 404
        big = await http.post(
            "/token", headers={**AUTH, "Content-Type": "application/json"}, data=BIG
        )
        assert big.status == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read, then cut
            for _ in range(20):
                yield b" " * 1024

        chunked = await http.post(
            "/token", headers={**AUTH, "Content-Type": "application/json"}, data=chunks()
        )
        assert chunked.status == 413
        preflight = await http.options(
            "/token", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status == 204
        assert preflight.headers["Vary"] == "Origin"
        client = broker._client
        assert client is not None
    assert client.closed  # cleanup_ctx closed it with the app
    assert events[0].client_address == "127.0.0.1"


# --- WSGI in Flask --------------------------------------------------------------------------


def test_wsgi_in_flask(gemini_emulator_sync: Emulator) -> None:
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    def sync_authorize(request: BrokerRequest) -> Caller:
        if request.headers.get("Authorization") != AUTH["Authorization"]:
            from gemini_tokens.broker import Denied

            raise Denied(401, "sign in first")
        return Caller(id="alice")

    broker = _broker(authorize=sync_authorize)
    app = Flask(__name__)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/token": broker.wsgi})  # type: ignore[method-assign]
    try:
        http = app.test_client()
        ok = http.post("/token", headers=AUTH, json={"config": {"temperature": 0.1}})
        _check_contract(ok.status_code, ok.headers, ok.data, gemini_emulator_sync)
        assert http.post("/token").status_code == 401
        assert http.get("/token").status_code == 405
        big = http.post("/token", headers={**AUTH, "Content-Type": "application/json"}, data=BIG)
        assert big.status_code == 413
        assert http.post("/token/x", headers=AUTH).status_code == 404
        preflight = http.options(
            "/token", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 204
    finally:
        broker.close()
    assert broker._facade is None


def test_wsgi_needs_a_sync_client(gemini_emulator_sync: Emulator) -> None:
    import gemini_tokens

    client = gemini_tokens.AsyncClient()
    broker = _broker(client=client)
    with pytest.raises(gemini_tokens.ConfigurationError, match="sync facade"):
        broker.wsgi  # noqa: B018
    with gemini_tokens.Client() as sync_client:
        broker = _broker(client=sync_client)
        response = broker._run_sync(
            BrokerRequest(method="POST", headers=AUTH)  # through the given Client's loop
        )
        assert response.status == 200
        broker.close()
        assert not sync_client.closed  # a given client is its giver's to close


async def test_a_sync_client_serves_async_callers_too(gemini_emulator: Emulator) -> None:
    """Given a sync Client, the ASGI path mints on that client's own loop."""
    import gemini_tokens

    sync_client = gemini_tokens.Client()
    try:
        broker = _broker(client=sync_client)
        first = await broker.handle(BrokerRequest(method="POST", headers=AUTH))
        assert first.status == 200, first.body
        wsgi_answer = await asyncio.to_thread(
            broker._run_sync, BrokerRequest(method="POST", headers=AUTH)
        )
        assert wsgi_answer.status == 200
        again = await broker.handle(BrokerRequest(method="POST", headers=AUTH))
        assert again.status == 200
        assert len(gemini_emulator.tokens) == 3
    finally:
        await asyncio.to_thread(sync_client.close)


# --- no web framework needed ------------------------------------------------------------


def test_the_broker_imports_without_any_web_framework(gemini_emulator_sync: Emulator) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"fastapi", "starlette", "flask", "django", "werkzeug"}:
                    raise ImportError(f"blocked {name}")
                return None

        sys.meta_path.insert(0, Block())
        from gemini_tokens.broker import BrokerRequest, Caller, Policy, TokenBroker

        broker = TokenBroker(authorize=lambda r: Caller(id="a"), policy=Policy(model="m"))

        async def main():
            async with broker.lifespan():
                return await broker.handle(BrokerRequest(method="POST"))

        answer = asyncio.run(main())
        assert answer.status == 200, answer
        assert broker.asgi and broker.openapi()
        loaded = {m.split(".")[0] for m in sys.modules}
        assert not loaded & {"fastapi", "starlette", "flask", "django", "werkzeug"}, loaded
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "Unclosed" not in result.stderr
