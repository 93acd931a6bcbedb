"""Shared fixtures: a real token server on 127.0.0.1 that records what it receives.

The server runs on its own event loop in its own thread, so both the async client (on the
test's loop) and the sync facade (on its private loop) talk to it over real sockets.
"""

from __future__ import annotations

import gc
import json
import secrets
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web

from .loop_server import LoopServer

if TYPE_CHECKING:
    from gemini_tokens import EphemeralToken
    from gemini_tokens.testing import Emulator

# The plugin is loaded here rather than through its pytest11 entry point, so that the package
# is first imported after pytest-cov has started measuring (see pyproject's addopts).
# pytester runs the plugin's own tests in a project of their own (tests/test_plugin.py).
pytest_plugins = ["gemini_tokens.testing._pytest_plugin", "pytester"]

API_KEY = "test-key-5f2d9c81b7"  # a fake key; tests assert it never leaks into messages


class RecordingServer(LoopServer):
    """An aiohttp server answering ``POST /v1alpha/auth_tokens`` like the service.

    By default it echoes the body back as an AuthToken with a fresh random ``name``.
    ``respond`` replaces that with a function of the parsed body.
    """

    def __init__(self) -> None:
        super().__init__("recording-server")
        self.requests: list[dict[str, Any]] = []
        self.respond: Callable[[dict[str, Any]], web.StreamResponse] | None = None
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        self.requests.append(
            {"body": body, "headers": dict(request.headers), "path": request.path, "raw": raw}
        )
        if self.respond is not None:
            return self.respond(body)
        return web.json_response({"name": f"auth_tokens/{secrets.token_urlsafe(24)}", **body})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1alpha/auth_tokens", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def last_body(self) -> dict[str, Any]:
        body: dict[str, Any] = self.requests[-1]["body"]
        return body


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    """A recording token server on 127.0.0.1, in its own thread."""
    srv = RecordingServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's real key or endpoint."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


if sys.version_info < (3, 11):

    @pytest.fixture(autouse=True)
    def _collect_py310_ssl_transports() -> Iterator[None]:
        """Python 3.10's asyncio SSL transport (rewritten in 3.11) warns "unclosed transport"
        when collected after a TLS connection whose closing handshake the peer cut short (the
        TLS emulator tests). Collect those here, quietly, so they cannot fail a later test's
        leak check; every other warning still counts."""
        yield
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", "unclosed transport <asyncio.sslproto", ResourceWarning
            )
            gc.collect()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session (20 s a request: a broken server fails a test, not hangs it)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def mint(emu: Emulator, **options: Any) -> EphemeralToken:
    """A token from ``emu``, minted with ``create(**options)`` by a client of its own."""
    from gemini_tokens import AsyncClient  # (imported once coverage runs; see pytest_plugins)

    async with AsyncClient(emu.api_key, base_url=emu.base_url) as client:
        return await client.create(**options)
