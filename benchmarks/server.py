"""A loopback token server for the benchmarks, run in its own process.

It answers ``POST /v1alpha/auth_tokens`` like the service: ``200`` with a JSON AuthToken that
has a fresh random ``name`` and echoes the fields of the request (uses, times, setup, mask).
A request without an ``x-goog-api-key`` header gets the service's 400 instead, so a client
that forgot its key cannot look fast.

It is a bare ``asyncio.Protocol`` speaking HTTP/1.1 with keep-alive, not an aiohttp app: the
server shares a 2-core machine with the client under test, and the cheaper it is, the less
it disturbs the figures. ``GET /stats`` returns how many tokens were minted and refused, so the
benchmark can check that every call really reached the server.

Run: ``python benchmarks/server.py [--port N]``; it prints ``PORT <n>`` once it listens and
stops when its standard input closes (so it never outlives the benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from typing import Any

_STATS = {"minted": 0, "refused": 0}

_REFUSAL = json.dumps(
    {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ],
        }
    }
).encode()

_ECHOED = ("uses", "expireTime", "newSessionExpireTime", "bidiGenerateContentSetup", "fieldMask")


def _response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json; charset=UTF-8\r\n"
        "Vary: Origin, X-Origin, Referer\r\n"
        "Server: ESF\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


def _mint(body: bytes) -> bytes:
    try:
        request: Any = json.loads(body) if body else {}
    except ValueError:
        request = None
    if not isinstance(request, dict):
        _STATS["refused"] += 1
        error = {"error": {"code": 400, "message": "Invalid JSON payload received.",
                           "status": "INVALID_ARGUMENT"}}  # fmt: skip
        return _response("400 Bad Request", json.dumps(error).encode())
    token: dict[str, Any] = {"name": "auth_tokens/" + secrets.token_hex(32)}
    for key in _ECHOED:
        if key in request:
            token[key] = request[key]
    token.setdefault("uses", 1)
    _STATS["minted"] += 1
    return _response("200 OK", json.dumps(token, separators=(",", ":")).encode())


class _HTTP(asyncio.Protocol):
    """Just enough HTTP/1.1 for one POST at a time per connection, with pipelining."""

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self._buffer) < end + 4 + length:
                return  # the rest of the body is still on its way
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            self._answer(request_line, headers, body)

    def _answer(self, request_line: str, headers: dict[str, str], body: bytes) -> None:
        assert self._transport is not None
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if method == "POST" and path == "/v1alpha/auth_tokens":
            if not headers.get("x-goog-api-key"):
                _STATS["refused"] += 1
                out = _response("400 Bad Request", _REFUSAL)
            else:
                out = _mint(body)
        elif method == "GET" and path == "/stats":
            out = _response("200 OK", json.dumps(_STATS).encode())
        else:
            error = {"error": {"code": 404, "message": "", "status": "NOT_FOUND"}}
            out = _response("404 Not Found", json.dumps(error).encode())
        self._transport.write(out)
        if headers.get("connection", "").lower() == "close":
            self._transport.close()


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_HTTP, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    # Stop when the parent closes our stdin (or dies): never outlive the benchmark.
    done = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not os.read(0, 4096) else None)
    async with server:
        await done.wait()


def main() -> None:
    """Parse ``--port`` and serve until standard input closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
