"""The broker hardened: abandoned requests refused, a hanging audit sink bounded, no token
name in what an error tracker records (the frames' locals)."""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
import urllib.request
from typing import Any

import pytest

from gemini_tokens.testing import Emulator
from tests.spawn import env_for, free_port, start, stop, wait_http

# --- #5: a request abandoned before its body's end mints nothing, and is audited ----------

_HEAD = (
    "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer demo\r\n"
    "Content-Type: application/json\r\n"
)
#: Declares 100 bytes, sends 10 (a JSON object, then spaces), and leaves.
_CUT_BY_LENGTH = (_HEAD + "Content-Length: 100\r\n\r\n").encode() + b"{}" + b" " * 8
#: A chunked body whose first chunk is a whole JSON object; the last chunk never comes.
_CUT_CHUNKED = (_HEAD + "Transfer-Encoding: chunked\r\n\r\n").encode() + b"a\r\n{}        \r\n"

_SERVERS = {
    "uvicorn-asgi": ("-m", "uvicorn", "tests.apps.broker_servers:asgi_app"),
    "uvicorn-fastapi": ("-m", "uvicorn", "tests.apps.broker_servers:fastapi_app"),
    "gunicorn-wsgi": (
        "-m", "gunicorn", "-k", "gthread", "--threads", "2", "-w", "1",
        "tests.apps.broker_servers:wsgi_app",
    ),
}  # fmt: skip


def _server(kind: str, port: int) -> list[str]:
    args = [sys.executable, *_SERVERS[kind]]
    if "uvicorn" in args:
        return [*args, "--host", "127.0.0.1", "--port", str(port)]
    return [*args, "-b", f"127.0.0.1:{port}"]


def _send_and_leave(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        time.sleep(0.2)  # the server has read the head and called the app
    time.sleep(0.5)  # and has seen the close


def _audit_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in output.splitlines() if line.startswith("AUDIT ")]


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(_SERVERS))
def test_an_abandoned_request_mints_nothing_and_is_audited(kind: str) -> None:
    pytest.importorskip(_SERVERS[kind][1])
    with Emulator.running() as emu:
        port = free_port()
        server = start(_server(kind, port), env_for(emu))
        url = f"http://127.0.0.1:{port}/token"
        try:
            wait_http(url + "/client.js", server)
            _send_and_leave(port, _CUT_BY_LENGTH)
            _send_and_leave(port, _CUT_CHUNKED)
            # A whole request still mints: the server is not stuck.
            request = urllib.request.Request(
                url, method="POST", data=b"{}", headers={"Authorization": "Bearer demo",
                                                         "Content-Type": "application/json"}
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
        finally:
            output = stop(server, timeout=30)
        minted = len(emu.tokens)
    decisions = _audit_lines(output)
    assert minted == 1, output  # the whole request's token, none for the abandoned ones
    incomplete = [d for d in decisions if d["outcome"] == "invalid"]
    assert [(d["reason"], d["status"]) for d in incomplete] == [("body_incomplete", 400)] * 2, (
        output
    )
    assert all(d["token_id"] is None and d["caller_id"] is None for d in incomplete)
    assert [d["outcome"] for d in decisions].count("minted") == 1, output
    assert "Traceback" not in output


async def test_aiohttp_audits_an_abandoned_request_too(gemini_emulator: Emulator) -> None:
    """aiohttp fails the read itself; the adapter turns that into the same refusal."""
    import asyncio

    from aiohttp import web

    from gemini_tokens.broker import AuditEvent, Caller, Policy, TokenBroker
    from gemini_tokens.broker.aiohttp import add_routes

    events: list[AuditEvent] = []
    broker = TokenBroker(
        authorize=lambda request: Caller(id="demo"),
        policy=Policy(model="gemini-live-test", uses=1),
        audit=events.append,
    )
    app = web.Application()
    add_routes(app, broker)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        for count, data in enumerate((_CUT_BY_LENGTH, _CUT_CHUNKED), 1):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            for _ in range(50):  # until the decision is made
                if len(events) >= count:
                    break
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert gemini_emulator.tokens == []
    assert [(e.outcome, e.reason, e.status) for e in events] == [
        ("invalid", "body_incomplete", 400)
    ] * 2


# --- #9: no token name in the frames an error tracker records ----------------------------


def _chain(exc: BaseException | None) -> list[BaseException]:
    """The exceptions a tracker reports, as Sentry walks them (a suppressed context not)."""
    found: list[BaseException] = []
    while exc is not None and exc not in found:
        found.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return found


def _render(value: Any, depth: int = 0) -> str:
    """A local as an error tracker serializes it: containers walked (depth-limited, as
    Sentry's serializer does), everything else by its ``repr``."""
    if depth > 6:
        return "..."
    if isinstance(value, dict):
        return " ".join(
            f"{_render(k, depth + 1)}: {_render(v, depth + 1)}" for k, v in value.items()
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        return " ".join(_render(v, depth + 1) for v in value)
    try:
        return repr(value)
    except Exception as exc:  # a tracker shows something else, never fails
        return f"<repr failed: {type(exc).__name__}>"


#: Frames of this file that stand for a server's (the others are the tests' own, or the
#: doubles that make an error after the mint, whose arguments are the real code's).
_SERVER_STAND_INS = frozenset({"send", "start_response"})


def _recorded_locals(exc: BaseException | None, records: list[logging.LogRecord]) -> str:
    """Every local of every frame a tracker would record: those of each exception raised
    (and of each one logged with its traceback)."""
    errors = _chain(exc)
    for record in records:
        if record.exc_info and record.exc_info[1] is not None:
            errors.extend(_chain(record.exc_info[1]))
    out = []
    for error in errors:
        tb = error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            code = frame.f_code
            if code.co_filename == __file__ and code.co_name not in _SERVER_STAND_INS:
                tb = tb.tb_next
                continue
            out.extend(
                f"{frame.f_code.co_name}.{k}={_render(v)}" for k, v in frame.f_locals.items()
            )
            tb = tb.tb_next
    return "\n".join(out)


def _names(emu: Emulator) -> list[str]:
    """The minted tokens' ids (the name after ``auth_tokens/``: found URL-encoded too)."""
    names = [token.name.partition("/")[2] for token in emu.tokens]
    assert names  # a token was minted: the test means something
    assert all(len(name) > 16 for name in names)
    return names


async def test_no_token_name_in_the_frames_of_a_core_error_after_the_mint(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gemini_tokens
    from gemini_tokens import _client

    real = _client.parse_token

    def parse_then_fail(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise RuntimeError("a surprise after the parse")

    for failure in (parse_then_fail, _fail_with_invalid_response(real)):
        monkeypatch.setattr(_client, "parse_token", failure)
        async with gemini_tokens.AsyncClient() as client:
            with pytest.raises(gemini_tokens.InvalidResponseError) as caught:
                await client.create(uses=1)
        recorded = _recorded_locals(caught.value, [])
        assert "_attempt." in recorded  # the frames were walked
        for name in _names(gemini_emulator):
            assert name not in recorded


def _fail_with_invalid_response(real: Any) -> Any:
    import gemini_tokens

    def parse_then_refuse(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise gemini_tokens.InvalidResponseError("an odd answer")

    return parse_then_refuse


async def _broker_request(broker: Any, caplog: pytest.LogCaptureFixture) -> tuple[Any, str]:
    from gemini_tokens.broker import BrokerRequest

    caplog.clear()
    request = BrokerRequest(method="POST", path="/token", headers={"Authorization": "Bearer a"})
    error: BaseException | None = None
    response = None
    try:
        response = await broker.handle(request)
    except Exception as exc:
        error = exc
    return response, _recorded_locals(error, caplog.records)


def _plain_broker(**options: Any) -> Any:
    from gemini_tokens.broker import Caller, Policy, TokenBroker

    return TokenBroker(
        authorize=lambda request: Caller(id="ann"),
        policy=Policy(model="gemini-live-test", uses=1),
        audit=lambda event: None,
        **options,
    )


async def test_no_token_name_in_the_frames_of_a_broker_error_after_the_mint(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gemini_tokens.broker import _broker as broker_module

    broker = _plain_broker()
    real_json_body = broker_module.json_body

    def json_body_fails(value: Any) -> bytes:
        if isinstance(value, dict) and "name" in value:
            raise TypeError("not serializable")
        return real_json_body(value)

    # The answer's body cannot be made: a 500, audited, and no name in any frame.
    monkeypatch.setattr(broker_module, "json_body", json_body_fails)
    response, recorded = await _broker_request(broker, caplog)
    assert response is not None
    assert response.status == 500
    for name in _names(gemini_emulator):
        assert name not in recorded
    monkeypatch.undo()

    # The decision's telemetry fails after the answer is made: the error propagates.
    def observe_fails(event: Any) -> None:
        raise RuntimeError("an exporter's bug")

    monkeypatch.setattr(broker_module, "observe", observe_fails)
    response, recorded = await _broker_request(broker, caplog)
    assert response is None
    assert "_answer." in recorded
    for name in _names(gemini_emulator):
        assert name not in recorded
    await broker.aclose()


async def test_no_token_name_in_the_frames_of_a_failing_asgi_write(
    gemini_emulator: Emulator,
) -> None:
    from gemini_tokens.broker import ASGIApp

    broker = _plain_broker()
    app = ASGIApp(broker)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise ConnectionResetError("the client went away")

    scope = {"type": "http", "method": "POST", "path": "/token", "headers": []}
    with pytest.raises(ConnectionResetError) as caught:
        await app(scope, receive, send)
    recorded = _recorded_locals(caught.value, [])
    assert "send.message" in recorded
    for name in _names(gemini_emulator):
        assert name not in recorded
    await broker.aclose()


def test_no_token_name_in_the_frames_of_a_failing_wsgi_write(gemini_emulator: Emulator) -> None:
    import io

    from gemini_tokens.broker import WSGIApp

    app = WSGIApp(_plain_broker())
    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/token",
        "PATH_INFO": "",
        "CONTENT_LENGTH": "0",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
    }

    def start_response(status: str, headers: Any) -> None:
        raise BrokenPipeError("the client went away")

    try:
        with pytest.raises(BrokenPipeError) as caught:
            app(environ, start_response)
    finally:
        app.close()
    recorded = _recorded_locals(caught.value, [])
    assert "__call__.response" in recorded
    for name in _names(gemini_emulator):
        assert name not in recorded


async def test_an_abandoned_request_spends_no_limit_slot(gemini_emulator: Emulator) -> None:
    """In-process ASGI: the client disconnects mid-body; with a limit of one a minute, the
    next whole request still gets its token."""
    from gemini_tokens.broker import ASGIApp, AuditEvent, Caller, Policy, TokenBroker

    events: list[AuditEvent] = []
    broker = TokenBroker(
        authorize=lambda request: Caller(id="ann"),
        policy=Policy(model="gemini-live-test", uses=1),
        rate_limits=["1/minute"],
        audit=events.append,
    )
    app = ASGIApp(broker)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/token",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
    }

    async def run(messages: list[dict[str, Any]]) -> int:
        incoming = iter(messages)
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return next(incoming)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        status: int = sent[0]["status"]
        return status

    part = {"type": "http.request", "body": b"{}" + b" " * 8, "more_body": True}
    assert await run([part, {"type": "http.disconnect"}]) == 400
    # A server that hands over fewer bytes than declared, then says it is all.
    assert await run([{**part, "more_body": False}]) == 400
    whole = {"type": "http.request", "body": b"{}" + b" " * 98, "more_body": False}
    assert await run([whole]) == 200
    assert len(gemini_emulator.tokens) == 1
    assert [(e.outcome, e.reason) for e in events] == [
        ("invalid", "body_incomplete"),
        ("invalid", "body_incomplete"),
        ("minted", "ok"),
    ]
    await broker.aclose()
