"""The broker hardened: abandoned requests refused, a hanging audit sink bounded, no token
name in what an error tracker records (the frames' locals)."""

from __future__ import annotations

import json
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
