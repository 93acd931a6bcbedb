"""`Client`: the blocking facade. It runs `AsyncClient`'s coroutines on a private event loop
in a daemon thread, one ``asyncio.run_coroutine_threadsafe`` hop per call, and nothing else.
After ``os.fork()`` the child's first call sees the new process id (before anything else) and
starts a fresh loop; the parent's is never touched (see ``_client._FORK_ORPHANS``).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from gemini_tokens._client import _FORK_ORPHANS, AsyncClient
from gemini_tokens._config import DEFAULT_API_VERSION, Timeout
from gemini_tokens._errors import ConfigurationError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence

    from gemini_tokens._models import EphemeralToken, LiveConnectConstraints
    from gemini_tokens._retry import RetryPolicy

__all__ = ["Client"]

T = TypeVar("T")
_exiting = False  # set by the exit-time close, _close_all_at_exit


class _Runner:
    """A private event loop in a daemon thread, started on first use and again after fork."""

    def __init__(self, on_stop: Callable[[], Awaitable[None]]) -> None:
        self._on_stop = on_stop  # awaited on the loop before it stops: closes the pool
        self._lock = threading.Lock()  # replaced in a forked child: a parent thread held it?
        self._pid = os.getpid()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.closed = False

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the private loop; the future resolves in any thread."""
        try:
            if self._pid != os.getpid():  # first: glibc may reuse the old loop thread's id
                self._forget_parent()
            if threading.current_thread() is self._thread:
                raise ConfigurationError(
                    "the sync Client was called from its own event loop; use AsyncClient there"
                )
            with self._lock:  # so that stop() sees every call scheduled before it
                if self.closed:
                    raise _closed_error("this client is closed; create a new one")
                return asyncio.run_coroutine_threadsafe(coro, self._loop or self._start())
        except BaseException:
            coro.close()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait; an interrupt (Ctrl-C) cancels it."""
        future = self.submit(coro)
        try:
            return future.result()
        except concurrent.futures.CancelledError:  # by stop()
            raise _closed_error("the client was closed while this call was in flight") from None
        except BaseException:  # KeyboardInterrupt while waiting: the call stops too
            future.cancel()
            raise
        finally:
            del future  # no future -> exception -> traceback -> frame cycle

    def _forget_parent(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                if self._loop is not None:
                    _FORK_ORPHANS.append(self._loop)  # closing it would harm the parent's
                self._loop = self._thread = None
                self._pid = os.getpid()

    def _start(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=_serve, args=(self._loop, self._on_stop), name="gemini-tokens-loop", daemon=True
        )
        self._thread.start()
        return self._loop

    def stop(self) -> None:
        """Cancel the calls in flight, await ``on_stop``, end the thread. Idempotent."""
        if self._pid != os.getpid():
            self._forget_parent()
        with self._lock:
            self.closed = True
            loop, self._loop = self._loop, None
        if loop is not None and self._thread is not None:
            if threading.current_thread() is self._thread:  # a finalizer on the loop
                loop.stop()
            else:
                loop.call_soon_threadsafe(loop.stop)
                self._thread.join()


def _serve(loop: asyncio.AbstractEventLoop, on_stop: Callable[[], Awaitable[None]]) -> None:
    """The loop thread: run until stopped, then cancel what runs, await ``on_stop``, close."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(_wind_down(on_stop))
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


async def _wind_down(on_stop: Callable[[], Awaitable[None]]) -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)  # their callers see "closed"
    await on_stop()
    await asyncio.get_running_loop().shutdown_asyncgens()


def _closed_error(message: str) -> ConfigurationError:
    """The error for a closed client; at exit, a daemon thread waits instead, unseen."""
    if _exiting and threading.current_thread().daemon:
        threading.Event().wait()  # as the interpreter stops daemon threads: no traceback
    return ConfigurationError(message)


_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    global _exiting
    _exiting = True
    for client in list(_CLIENTS):
        client.close()


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._runner._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _arguments(scope: dict[str, Any]) -> dict[str, Any]:
    """The arguments a method was called with (its ``locals()`` first thing), to pass on."""
    unknown: dict[str, Any] = scope.get("unknown", {})
    return {k: v for k, v in scope.items() if k not in ("self", "unknown")} | unknown


class Client:
    """Mints ephemeral tokens; the blocking client.

    Takes the same arguments as `AsyncClient` (but ``session``) and behaves the same: it runs
    the very same coroutines on a private event loop. Safe to share between threads, to call
    from inside a running event loop, and to use in a child process after ``os.fork()``
    (Celery prefork, gunicorn ``--preload``). Use it as a context manager, or call `close`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
        max_retry_wait: float | None = None,
        retry: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        # Built now so that bad settings raise here; its session is made lazily on the loop.
        self._async = AsyncClient(**_arguments(locals()))
        self._runner = _Runner(self._async.close)
        self._finalizer = weakref.finalize(self, self._runner.stop)
        self._finalizer.atexit = False  # _close_all_at_exit does it, knowing it is exit
        _CLIENTS.add(self)

    def __repr__(self) -> str:
        return f"Client(base_url={self._async.base_url!r})"

    @property
    def base_url(self) -> str:
        """The service root requests go to."""
        return self._async.base_url

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._runner.closed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pool, stop the loop's thread. Idempotent. Calls in flight in other
        threads then fail with `ConfigurationError` rather than wait, as later calls do."""
        self._finalizer()

    def create(
        self,
        *,
        uses: int = 1,
        expire_minutes: float | None = None,
        expire_time: dt.datetime | None = None,
        new_session_expire_minutes: float | None = None,
        new_session_expire_time: dt.datetime | None = None,
        live_connect_constraints: LiveConnectConstraints | Mapping[str, Any] | None = None,
        lock_additional_fields: Sequence[str] | None = None,
        max_retries: int | None = None,
        deadline: float | None = None,
        **unknown: NoReturn,
    ) -> EphemeralToken:
        """Mint an ephemeral token, blocking. Same arguments as `AsyncClient.create`."""
        return self._runner.run(self._async.create(**_arguments(locals())))
