"""`LoopThread`: the WSGI adapter's bridge from sync threads onto one private event loop.

The same thin idea as the core's sync ``Client``: the loop runs in a daemon thread started on
first use, each call is one ``run_coroutine_threadsafe`` future, a forked child forgets the
parent's loop (``os.register_at_fork``) and starts its own on its first call, and `stop`
(or the exit) awaits ``on_stop`` on the loop, then ends its thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from gemini_tokens import ConfigurationError

__all__ = ["LoopThread"]

_T = TypeVar("_T")

#: Loops inherited from a forked parent. They are the parent's too: closing one here would
#: unregister the parent's self-pipe from the epoll instance both share, so they are kept.
_PARENT_LOOPS: list[asyncio.AbstractEventLoop] = []


class LoopThread:
    """A private event loop in a daemon thread, for blocking callers.

    Args:
        on_stop: Awaited on the loop when it stops, after the calls in flight were
            cancelled (closes what was opened there).
    """

    def __init__(self, on_stop: Callable[[], Awaitable[None]]) -> None:
        self._on_stop = on_stop
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.closed = False
        _LOOP_THREADS.add(self)

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop and wait for it; an interrupt while waiting cancels it.

        Raises:
            ConfigurationError: the loop was stopped (before or during the call).
        """
        with self._lock:  # so that stop() sees every call scheduled before it
            if self.closed:
                coro.close()
                raise ConfigurationError("this WSGI app is closed; create a new one")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop or self._start())
        try:
            return future.result()
        except concurrent.futures.CancelledError:  # by stop()
            raise ConfigurationError(
                "the WSGI app was closed while this call was in flight"
            ) from None
        except BaseException:  # KeyboardInterrupt while waiting: the call stops too
            future.cancel()
            raise

    def stop(self) -> None:
        """Cancel the calls in flight, await ``on_stop``, end the thread. Idempotent."""
        with self._lock:
            self.closed = True
            loop, thread, self._loop = self._loop, self._thread, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            if threading.current_thread() is not thread:  # (a finalizer run on the loop)
                thread.join()

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, args=(loop,), name="gemini-tokens-wsgi-loop", daemon=True
        )
        self._thread.start()
        return loop

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:  # the loop's thread
        asyncio.set_event_loop(loop)
        loop.run_forever()
        loop.run_until_complete(self._wind_down(loop))
        loop.close()

    async def _wind_down(self, loop: asyncio.AbstractEventLoop) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # their callers see "closed"
        await self._on_stop()
        await loop.shutdown_asyncgens()  # closes a client's session made on this loop
        await asyncio.gather(loop.shutdown_default_executor(), return_exceptions=True)

    def _forget_parent(self) -> None:  # in a forked child: the parent's thread is not here
        if self._loop is not None:
            _PARENT_LOOPS.append(self._loop)
        # A parent's thread may have held the lock at the fork: a new one.
        self._lock, self._loop, self._thread = threading.Lock(), None, None


_LOOP_THREADS: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for bridge in list(_LOOP_THREADS):
        bridge._forget_parent()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
