"""A fault-injection HTTP server on 127.0.0.1, for the retry, timeout and leak tests.

It is a raw asyncio server, not an aiohttp app, so that a reply can misbehave at any byte:
stall before the headers, stall or hang up in the middle of the body, send a body that never
ends, or reset the connection. It runs on its own event loop in its own thread, so the async
client (on the test's loop) and the sync facade (on its private loop) reach it over real
sockets, and a stalled reply never blocks the test.

Every request that arrives whole is recorded (`FaultServer.requests`), whatever is then done
with it: the number of attempts a client made is ``len(server.requests)``. Connections are
counted too, so a test can check that a client left none open.

What to answer is chosen per request: the actions queued with `FaultServer.script` are used
in order, then `FaultServer.default` (a fresh token, echoing the request like the service).
`FaultServer.handler`, when set, chooses instead, from the request. Actions are made by the
functions of this module (`rpc_status`, `stall_before_headers`, `close_mid_body` ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import secrets
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import pytest

from gemini_tokens import RetryPolicy, Timeout
from gemini_tokens.testing._emulator import status_body  # the service's error body shape

__all__ = [
    "ALL_FAULTS",
    "Action",
    "Exchange",
    "FaultServer",
    "Received",
    "close_before_response",
    "close_mid_body",
    "close_mid_headers",
    "endless_body",
    "json_reply",
    "oversized",
    "raw",
    "reset",
    "retry_info",
    "rpc_status",
    "stall_before_headers",
    "stall_mid_body",
    "token",
]

#: A stalled reply waits at most this long for the client to give up.
MAX_STALL = 30.0
ONE_MIB = 1024 * 1024
TYPE_PREFIX = "type.googleapis.com/google.rpc."


@dataclass
class Received:
    """One request, as the server read it."""

    index: int
    connection: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Exchange:
    """What an action gets: the request, the connection's streams, and the server."""

    request: Received
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: FaultServer

    async def send(self, data: bytes) -> None:
        """Write and flush ``data`` (recorded in `FaultServer.sent`, unless it is bulk)."""
        if len(data) < 65536:
            self.server.sent.setdefault(self.request.index, bytearray()).extend(data)
        self.writer.write(data)
        await self.writer.drain()

    async def wait_for_client_to_leave(self) -> None:
        """Stall until the client closes the connection (or `MAX_STALL` passes)."""
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            while await asyncio.wait_for(self.reader.read(65536), MAX_STALL):
                pass


#: Answers one request. Returns whether the connection may serve another one (keep-alive).
Action = Callable[[Exchange], Awaitable[bool]]


def _head(status: int, headers: Mapping[str, str], length: int | None) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw(
    status: int,
    body: bytes,
    *,
    content_type: str | None = "application/json",
    headers: Mapping[str, str] | None = None,
) -> Action:
    """Answer ``status`` with ``body`` as given (HTML, empty, invalid JSON ...)."""
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers.setdefault("Content-Type", content_type)

    async def action(ex: Exchange) -> bool:
        await ex.send(_head(status, all_headers, len(body)) + body)
        return True

    return action


def json_reply(status: int, payload: Any, *, headers: Mapping[str, str] | None = None) -> Action:
    """Answer ``status`` with ``payload`` as JSON."""
    return raw(status, json.dumps(payload).encode(), headers=headers)


def retry_info(delay: str) -> dict[str, Any]:
    """A ``google.rpc.RetryInfo`` detail, e.g. ``retry_info("1.5s")``."""
    return {"@type": TYPE_PREFIX + "RetryInfo", "retryDelay": delay}


def error_info(reason: str) -> dict[str, Any]:
    """A ``google.rpc.ErrorInfo`` detail."""
    return {"@type": TYPE_PREFIX + "ErrorInfo", "reason": reason, "domain": "googleapis.com"}


def rpc_status(
    code: int,
    status: str = "",
    message: str = "",
    *,
    details: Sequence[Mapping[str, Any]] = (),
    retry_after: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Action:
    """Answer ``code`` with a ``google.rpc.Status`` body, and a ``Retry-After`` if given."""
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = retry_after
    body = status_body(code, message or f"injected {code}", list(details))
    if status:
        body["error"]["status"] = status
    return json_reply(code, body, headers=all_headers)


def token(name: str | None = None, **fields: Any) -> Action:
    """Answer 200 with an AuthToken that echoes the request, like the service does.

    The name is fresh and random unless given; every name handed out is recorded in
    `FaultServer.issued_names`.
    """

    async def action(ex: Exchange) -> bool:
        issued = name or f"auth_tokens/{secrets.token_urlsafe(24)}"
        ex.server.issued_names.append(issued)
        echo = ex.request.json
        payload = {**(echo if isinstance(echo, dict) else {}), **fields, "name": issued}
        ex.server.replies[ex.request.index] = issued
        body = json.dumps(payload).encode()
        await ex.send(_head(200, {"Content-Type": "application/json"}, len(body)) + body)
        return True

    return action


def stall_before_headers() -> Action:
    """Read the request, then send nothing until the client gives up."""

    async def action(ex: Exchange) -> bool:
        await ex.wait_for_client_to_leave()
        return False

    return action


def stall_mid_body(status: int = 200) -> Action:
    """Send the headers and part of the declared body, then nothing more."""

    async def action(ex: Exchange) -> bool:
        await ex.send(_head(status, {"Content-Type": "application/json"}, 1000) + b'{"name": "')
        await ex.wait_for_client_to_leave()
        return False

    return action


def close_before_response() -> Action:
    """Read the request, then close the connection without a word."""

    async def action(ex: Exchange) -> bool:
        return False

    return action


def close_mid_headers() -> Action:
    """Send half a status line and close."""

    async def action(ex: Exchange) -> bool:
        await ex.send(b"HTTP/1.1 200 O")
        return False

    return action


def close_mid_body(status: int = 200) -> Action:
    """Send the headers and part of the declared body, then close."""

    async def action(ex: Exchange) -> bool:
        await ex.send(_head(status, {"Content-Type": "application/json"}, 1000) + b'{"name": "')
        return False

    return action


def reset() -> Action:
    """Read the request, then reset the connection (TCP RST, not a clean close)."""

    async def action(ex: Exchange) -> bool:
        sock = ex.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ex.writer.transport.abort()
        return False

    return action


def oversized(status: int = 200, *, size: int = 2 * ONE_MIB) -> Action:
    """Declare and send a ``size``-byte body (more than the client accepts)."""

    async def action(ex: Exchange) -> bool:
        await ex.send(_head(status, {"Content-Type": "application/json"}, size))
        chunk = b" " * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(size // len(chunk)):
                await ex.send(chunk)
                ex.server.body_bytes_sent += len(chunk)
        return False

    return action


def endless_body(status: int = 200) -> Action:
    """Send a chunked body that never ends, until the client hangs up.

    A client that tried to read it whole would hang; one that refuses it after a limit
    returns. `FaultServer.body_bytes_sent` counts what was written.
    """

    async def action(ex: Exchange) -> bool:
        head = _head(
            status, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, None
        )
        await ex.send(head + b"1\r\n{\r\n")
        chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
        with contextlib.suppress(ConnectionError):
            while ex.server.body_bytes_sent < 1024 * ONE_MIB:  # 1 GiB: a backstop only
                await asyncio.wait_for(ex.send(chunk), MAX_STALL)
                ex.server.body_bytes_sent += 0x10000
        return False

    return action


#: One of each fault the suite injects, by name (each call makes a fresh action).
ALL_FAULTS: dict[str, Callable[[], Action]] = {
    "400": lambda: rpc_status(400, message="bad field"),
    "400-api-key-invalid": lambda: rpc_status(
        400, message="API key not valid", details=[error_info("API_KEY_INVALID")]
    ),
    "401": lambda: rpc_status(401),
    "403": lambda: rpc_status(403),
    "404-empty-message": lambda: json_reply(404, {"error": {"code": 404, "status": "NOT_FOUND"}}),
    "409": lambda: rpc_status(409),
    "408": lambda: rpc_status(408),
    "429-retry-info": lambda: rpc_status(429, details=[retry_info("0.01s")]),
    "429-retry-after": lambda: rpc_status(429, retry_after="0"),
    "429-long-retry-after": lambda: rpc_status(429, retry_after="3600"),
    "503-long-retry-info": lambda: rpc_status(503, details=[retry_info("3600s")]),
    "500": lambda: rpc_status(500),
    "502": lambda: rpc_status(502),
    "503": lambda: rpc_status(503),
    "504": lambda: rpc_status(504),
    "502-html": lambda: raw(
        502, b"<html><body>Bad Gateway</body></html>", content_type="text/html"
    ),
    "503-empty": lambda: raw(503, b"", content_type=None),
    "500-invalid-json": lambda: raw(500, b'{"error": {"code": 500,'),
    "200-html": lambda: raw(200, b"<html>Sign in</html>", content_type="text/html"),
    "200-empty": lambda: raw(200, b"", content_type=None),
    "200-invalid-json": lambda: raw(200, b'{"name": "auth_tokens/'),
    "200-without-name": lambda: json_reply(200, {"uses": 1, "expireTime": "2031-01-01T00:00:00Z"}),
    "200-name-not-a-string": lambda: json_reply(200, {"name": 42}),
    "200-json-array": lambda: json_reply(200, [{"name": "auth_tokens/x"}]),
    "stall-before-headers": stall_before_headers,
    "stall-mid-body": stall_mid_body,
    "close-before-response": close_before_response,
    "close-mid-headers": close_mid_headers,
    "close-mid-body": close_mid_body,
    "reset": reset,
    "200-oversized": oversized,
    "200-endless": endless_body,
    "503-oversized": lambda: oversized(503),
}


class FaultServer:
    """The fault-injection server. Use as a context manager, or `start` and `stop` it.

    Attributes:
        default: The action for requests when nothing is scripted (a fresh token).
        handler: When set, chooses the action for every request instead.
        requests: Every request that arrived whole, in order.
        issued_names: Every token name handed out.
        replies: Request index -> the token name sent in answer to it.
        sent: Request index -> the bytes sent in answer (bulk body chunks left out).
        body_bytes_sent: Bulk body bytes written by `oversized` and `endless_body`.
        connections_opened: Connections accepted so far.
        connections_open: Connections open now.
        max_connections_open: The most connections open at once.
        base_url: ``http://127.0.0.1:<port>`` (``https://`` when serving TLS), once started.

    Args:
        tls: Serve TLS with this server context (e.g. a ``trustme`` certificate's).
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self.default: Action = token()
        self.handler: Callable[[Received], Action] | None = None
        self.requests: list[Received] = []
        self.issued_names: list[str] = []
        self.replies: dict[int, str] = {}
        self.sent: dict[int, bytearray] = {}
        self.body_bytes_sent = 0
        self.connections_opened = 0
        self.connections_open = 0
        self.max_connections_open = 0
        self.base_url = ""
        self._queue: list[Action] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-server", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def __repr__(self) -> str:
        return f"FaultServer({self.base_url!r}, attempts={self.attempts})"

    # -- control, from the test's thread ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on, once started."""
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def attempts(self) -> int:
        """How many requests arrived whole."""
        return len(self.requests)

    def script(self, *actions: Action) -> None:
        """Answer the next requests with ``actions``, in order (then `default`)."""
        with self._lock:
            self._queue.extend(actions)

    def start(self) -> FaultServer:
        """Start listening on a free port of 127.0.0.1."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Abort every connection, stop listening, and join the thread."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_until_idle(self, timeout: float = 5.0) -> bool:
        """Block until no connection is open (the client closed them all), or time runs out."""
        stop = time.monotonic() + timeout
        while self.connections_open and time.monotonic() < stop:
            time.sleep(0.01)
        return self.connections_open == 0

    async def until_idle(self, timeout: float = 5.0) -> bool:
        """`wait_until_idle` for async tests: yields to the caller's loop while it waits."""
        return await eventually(lambda: self.connections_open == 0, timeout)

    async def until_attempts(self, count: int, timeout: float = 5.0) -> None:
        """Wait (yielding to the caller's loop) until ``count`` requests have arrived."""
        assert await eventually(lambda: self.attempts >= count, timeout), self

    # -- the server, on its own loop -------------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"{'https' if self._tls else 'http'}://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Hang up on every client rather than cancelling handlers: each one then ends by
        # itself (a cancelled connection handler makes asyncio log an error).
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    def _next_action(self, request: Received) -> Action:
        if self.handler is not None:
            return self.handler(request)
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
        return self.default

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections_opened += 1
        self.connections_open += 1
        self.max_connections_open = max(self.max_connections_open, self.connections_open)
        connection = self.connections_opened
        try:
            keep_alive = True
            while keep_alive:
                request = await self._read_request(reader, connection)
                if request is None:
                    break
                action = self._next_action(request)
                keep_alive = await action(Exchange(request, reader, writer, self))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections_open -= 1
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader, connection: int) -> Received | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None  # the client closed an idle keep-alive connection
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        with self._lock:
            request = Received(len(self.requests), connection, method, path, headers, body)
            self.requests.append(request)
        return request


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return whether it held.

    Polling, not an `asyncio.Event`: the state lives on the server's thread and loop.
    """
    stop = time.monotonic() + timeout
    while not predicate() and time.monotonic() < stop:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    return predicate()


# -- policy bounds ---------------------------------------------------------------------------------

#: Scheduling and loopback overhead allowed on top of a policy's worst case (2 slow cores).
SLACK = 0.6


def worst_case(
    policy: RetryPolicy, timeout: Timeout, attempts: int, *, hints: Sequence[float] = ()
) -> float:
    """The longest a call making ``attempts`` attempts may take under ``policy``.

    Each attempt may take ``timeout.total``; each sleep at most its backoff ceiling, or the
    server's hint where one was given (``hints``, in order). Plus `SLACK`.
    """
    sleeps = [
        hints[i] if i < len(hints) else policy.backoff_ceiling(i + 1) for i in range(attempts - 1)
    ]
    return attempts * timeout.total + sum(sleeps) + SLACK


# -- leak checks -----------------------------------------------------------------------------------


@contextlib.contextmanager
def no_leaked_threads_or_finalizer_errors() -> Iterator[None]:
    """Fail if the body leaves a new thread running, or an object whose finalizer complains.

    Unclosed sessions, connectors and sockets warn in their finalizers; with warnings as
    errors that is an "unraisable" exception, caught here after a `gc.collect`.
    """
    unraisable: list[Any] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    before = set(threading.enumerate())
    try:
        try:
            yield
        finally:
            gc.collect()  # so that finalizers complain here, not in a later test
        stop = time.monotonic() + 5
        while set(threading.enumerate()) - before and time.monotonic() < stop:
            time.sleep(0.01)  # a closing client joins its loop thread; give it a moment
        extra = set(threading.enumerate()) - before
        assert not extra, f"threads left running: {sorted(t.name for t in extra)}"
        problems = [f"{u.exc_type.__name__}: {u.exc_value} ({u.object!r})" for u in unraisable]
        assert not problems, f"finalizers complained: {problems}"
    finally:
        sys.unraisablehook = old_hook


@pytest.fixture(name="faults")
def faults_fixture() -> Iterator[FaultServer]:
    """A started `FaultServer`; on teardown, checks that the client under test leaked nothing.

    No connection may stay open (every client must have been closed), no thread may be left
    behind, and no finalizer may warn (unclosed session, socket, transport).
    """
    with FaultServer() as server, no_leaked_threads_or_finalizer_errors():
        yield server
        assert server.wait_until_idle(), f"{server.connections_open} connections left open"


@pytest.fixture(name="no_stray_tasks")
async def no_stray_tasks_fixture() -> AsyncIterator[None]:
    """Fail an async test that leaves tasks behind on its loop."""
    yield
    for _ in range(3):
        await asyncio.sleep(0)  # let just-finished tasks get collected
    current = asyncio.current_task()
    stray = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not stray, f"tasks left behind: {stray}"
