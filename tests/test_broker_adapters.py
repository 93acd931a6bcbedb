"""Each adapter, in its own framework: ASGI (Starlette), FastAPI, aiohttp, WSGI (Flask, a
plain WSGI call, gunicorn --preload).

(The Django recipe's test is in tests/test_examples.py; the WSGI app across a fork in
tests/test_processes.py.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import logging
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import gemini_tokens
from gemini_tokens.broker import (
    ASGIApp,
    AuditEvent,
    BrokerRequest,
    Caller,
    TokenBroker,
    WSGIApp,
)
from gemini_tokens.testing import Emulator
from tests.broker.helpers import MODEL, ORIGIN, authorize, policy
from tests.spawn import env_for, free_port, start, stop, wait_http

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


def wsgi_call(
    app: Callable[..., Iterable[bytes]],
    method: str = "POST",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    subpath: str = "",
) -> tuple[int, dict[str, str], bytes]:
    """One request through a WSGI app, as a WSGI server makes it (mounted at /token)."""
    answer: list[Any] = []
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "/token",
        "PATH_INFO": subpath,
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    chunks = app(environ, lambda status, headers: answer.extend((status, headers)))
    status, response_headers = answer
    return int(status.split()[0]), dict(response_headers), b"".join(chunks)


def _wsgi_loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gemini-tokens-wsgi-loop"]


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
        routes=[Route("/token", ASGIApp(broker)), Mount("/token", app=ASGIApp(broker))],
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
    app = ASGIApp(broker)
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
    token_app = WSGIApp(broker)
    app = Flask(__name__)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/token": token_app})  # type: ignore[method-assign]
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
        token_app.close()
    assert broker._client is None  # the broker's own client, closed on the app's loop
    assert not _wsgi_loop_threads()


def test_wsgi_serves_a_broker_built_on_an_async_client(gemini_emulator_sync: Emulator) -> None:
    """The WSGI app brings its own loop: the broker's AsyncClient mints there, from any
    thread, and stays its giver's to close."""
    client = gemini_tokens.AsyncClient()
    broker = _broker(client=client)
    app = WSGIApp(broker)
    try:
        status, headers, body = wsgi_call(app, headers={**AUTH, "Origin": ORIGIN})
        data = _check_contract(status, headers, body, gemini_emulator_sync)
        assert headers["Access-Control-Allow-Origin"] == ORIGIN
        assert data["uses"] == 2
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: wsgi_call(app, headers=AUTH)[0], range(16)))
        assert statuses == [200] * 16
        assert len(gemini_emulator_sync.tokens) == 17
        assert wsgi_call(app)[0] == 401
        assert wsgi_call(app, "GET", headers=AUTH)[0] == 405
        assert wsgi_call(app, headers=AUTH, subpath="/nope")[0] == 404
        assert wsgi_call(app, "GET", subpath="/client.js")[0] == 200
        assert len(_wsgi_loop_threads()) == 1  # one loop for every thread
    finally:
        app.close()
    assert not _wsgi_loop_threads()
    assert not client.closed  # a given client is its giver's to close
    with pytest.raises(gemini_tokens.ConfigurationError, match="WSGI app is closed"):
        wsgi_call(app, headers=AUTH)
    asyncio.run(client.close())


def test_a_sync_client_is_refused_with_a_clear_error(gemini_emulator_sync: Emulator) -> None:
    """The broker decides on an event loop; the sync Client runs on a loop of its own."""
    with (
        gemini_tokens.Client() as sync_client,
        pytest.raises(gemini_tokens.ConfigurationError, match=r"^client: .*AsyncClient"),
    ):
        _broker(client=sync_client)
    with pytest.raises(gemini_tokens.ConfigurationError, match=r"^client: must be"):
        _broker(client="not a client")


def test_the_routes_an_adapter_sees_are_read_only(gemini_emulator_sync: Emulator) -> None:
    broker = _broker()
    assert broker.subpaths == ("", "/client.js")
    with pytest.raises(AttributeError):
        broker.subpaths = ()  # type: ignore[misc]
    for gone in ("routes", "mint", "parse_body", "body_keys", "asgi", "wsgi", "close"):
        assert not hasattr(broker, gone), gone


def test_the_brokers_own_client_moves_to_a_new_loop(
    gemini_emulator_sync: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """An app restarted on a new loop without closing the broker: its own client starts
    afresh (a warning when the old loop is still open), instead of failing every call."""
    broker = _broker()
    request = BrokerRequest(method="POST", headers=AUTH)
    assert asyncio.run(broker.handle(request)).status == 200
    assert asyncio.run(broker.handle(request)).status == 200  # the old loop ended cleanly
    assert "new event loop" not in caplog.text
    old = asyncio.new_event_loop()  # an app's loop that keeps running in another thread
    thread = threading.Thread(target=old.run_forever)
    thread.start()

    async def settle() -> None:  # the dropped client's session closes on its own loop
        await old.shutdown_asyncgens()
        await asyncio.gather(*asyncio.all_tasks() - {asyncio.current_task()})

    try:
        on_old = asyncio.run_coroutine_threadsafe(broker.handle(request), old).result(30)
        assert on_old.status == 200
        with caplog.at_level(logging.WARNING, logger="gemini_tokens.broker"):
            assert asyncio.run(broker.handle(request)).status == 200  # `old` still runs
        assert "used on a new event loop without aclose()" in caplog.text
    finally:
        asyncio.run_coroutine_threadsafe(settle(), old).result(30)
        old.call_soon_threadsafe(old.stop)
        thread.join()
        old.close()
    assert len(gemini_emulator_sync.tokens) == 4
    asyncio.run(broker.aclose())


@pytest.mark.slow
def test_wsgi_app_of_a_broker_on_an_async_client_under_gunicorn_gthread_preload() -> None:
    """The master builds the broker (on an AsyncClient) and its WSGI app and mints through it
    at start-up; forked gthread workers then mint on their own loops."""
    pytest.importorskip("gunicorn", reason="needs gunicorn: pip install -e '.[test]'")
    requests = 16
    with Emulator.running() as emu:
        port = free_port()
        server = start(
            [
                sys.executable, "-m", "gunicorn", "--preload", "-k", "gthread", "--threads", "4",
                "-w", "2", "-b", f"127.0.0.1:{port}", "tests.apps.broker_wsgi_app:app",
            ],
            env_for(emu),
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/"

        def post(_: int) -> tuple[int, Any]:
            request = urllib.request.Request(
                url, method="POST", data=b"", headers={"Authorization": "Bearer demo"}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()

        try:
            wait_http(f"{url}client.js", server)
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                results = list(pool.map(post, range(requests)))
        finally:
            output = stop(server, timeout=30)
    assert [status for status, _ in results] == [200] * requests, (results[:2], output)
    assert len({body["name"] for _, body in results}) == requests
    assert len(emu.tokens) == requests + 1  # and the master's start-up mint
    decisions = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [d["outcome"] for d in decisions] == ["minted"] * (requests + 1), output
    master, *workers = [d["pid"] for d in decisions]
    assert master not in workers  # minted in the forked workers
    assert "Traceback" not in output
    assert "Unclosed" not in output


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
        from gemini_tokens.broker import ASGIApp, WSGIApp

        assert ASGIApp(broker) and WSGIApp(broker) and broker.openapi()
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
