"""A small HTTP proxy on 127.0.0.1, for the proxy tests: CONNECT tunnels and forwarding.

It tunnels ``CONNECT host:port`` (how clients reach https:// through a proxy) and forwards
absolute-form requests (``POST http://host:port/path``, how they reach http://). Names in
``hosts`` map to addresses, so a test can target a host that only the proxy can reach
(``gemini.invalid``: no resolver knows it). Anything else that is not loopback is refused
with 502: tests never leave the machine.

It runs on its own event loop in its own thread, like `fault_server.FaultServer`, so the
async client (on the test's loop) and the sync facade (on its private loop) both reach it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = ["ConnectProxy", "MapResolver", "ProxyRequest", "basic"]


def basic(user: str, password: str) -> str:
    """The ``Proxy-Authorization`` value for ``user`` and ``password``."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class ProxyRequest:
    """One request the proxy received: ``CONNECT`` and its target, or a forwarded URL."""

    method: str
    target: str
    proxy_authorization: str | None


class ConnectProxy:
    """The proxy. Use as a context manager, or `start` and `stop` it.

    Args:
        hosts: Host name -> the address the proxy connects to instead.
        require_auth: When set, the ``Proxy-Authorization`` value a request must carry
            (else 407).

    Attributes:
        requests: Every request, in order.
        url: ``http://127.0.0.1:<port>``, once started.
    """

    def __init__(
        self, hosts: Mapping[str, str] | None = None, *, require_auth: str | None = None
    ) -> None:
        self.hosts = dict(hosts or {})
        self.require_auth = require_auth
        self.requests: list[ProxyRequest] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.url.rsplit(":", 1)[1])

    @property
    def connects(self) -> list[str]:
        """The targets of the ``CONNECT`` requests, e.g. ``["gemini.invalid:8443"]``."""
        return [r.target for r in self.requests if r.method == "CONNECT"]

    @property
    def forwarded(self) -> list[str]:
        """The URLs of the forwarded (absolute-form) requests."""
        return [r.target for r in self.requests if r.method != "CONNECT"]

    def start(self) -> ConnectProxy:
        """Start listening on a free port of 127.0.0.1."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Hang up on every connection, stop listening, and join the thread."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- on the proxy's loop -------------------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._server.wait_closed()

    def _address(self, host: str) -> str | None:
        if host in self.hosts:
            return self.hosts[host]
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_loopback:
                return host
        return "127.0.0.1" if host == "localhost" else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = [line.split(":", 1) for line in lines if ":" in line]
        auth = next(
            (v.strip() for k, v in headers if k.strip().lower() == "proxy-authorization"), None
        )
        self.requests.append(ProxyRequest(method, target, auth))
        if self.require_auth is not None and auth != self.require_auth:
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
            )
            await writer.drain()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            path = ""
        else:
            parts = urlsplit(target)
            host, port = parts.hostname or "", str(parts.port or 80)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        address = self._address(host.strip("[]"))
        if address is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.open_connection(address, int(port))
        self._writers.add(up_writer)
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                kept = [
                    f"{k}:{v}"
                    for k, v in headers
                    if not k.strip().lower().startswith("proxy-")
                    and k.strip().lower() != "connection"
                ]
                up_writer.write(
                    "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close"]).encode(
                        "latin-1"
                    )
                    + b"\r\n\r\n"
                )
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
            up_writer.close()
            with contextlib.suppress(ConnectionError):
                await up_writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the end (or a hang-up), then end the other side's stream."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.transport.close()


@pytest.fixture(name="proxy")
def proxy_fixture() -> Iterator[ConnectProxy]:
    """A started `ConnectProxy` mapping ``gemini.invalid`` to 127.0.0.1."""
    with ConnectProxy({"gemini.invalid": "127.0.0.1"}) as proxy:
        yield proxy


class MapResolver(AbstractResolver):
    """An aiohttp resolver that knows only the names it is given (never asks DNS).

    With it, a client can reach ``gemini.invalid`` directly (a ``NO_PROXY`` bypass) without
    a DNS query leaving the machine.
    """

    def __init__(self, hosts: Mapping[str, str]) -> None:
        self.hosts = dict(hosts)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.hosts:
            raise OSError(f"MapResolver knows no host {host!r}")
        return [
            {
                "hostname": host,
                "host": self.hosts[host],
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass
