"""A test server on its own event loop in a daemon thread, so that the async client (on the
test's loop) and the sync facade (on its private loop) both reach it; and, for servers that
speak raw streams, the bookkeeping that lets `stop` hang up on every connection."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import TypeVar

__all__ = ["LoopServer", "StreamServer"]

_S = TypeVar("_S", bound="LoopServer")


class LoopServer:
    """`start` runs ``_start`` on the server's loop (listen, set the URL); `stop` runs
    ``_stop`` there, then ends the loop and its thread. Also a context manager.

    Args:
        name: The thread's name.
    """

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)

    def start(self: _S) -> _S:
        """Start listening on a free port of 127.0.0.1."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Stop serving, and join the thread."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError


class StreamServer(LoopServer):
    """A `LoopServer` on ``asyncio.start_server``: run each connection's handler inside
    ``async with self._connection(writer)``; `stop` then aborts every open connection (each
    handler ends by itself: a cancelled one makes asyncio log an error) and waits for them."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @contextlib.asynccontextmanager
    async def _connection(self, writer: asyncio.StreamWriter) -> AsyncIterator[None]:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(writer)
        try:
            yield
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
