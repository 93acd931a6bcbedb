"""`Client`: `AsyncClient`'s coroutines on a private event loop in a daemon thread, one
``run_coroutine_threadsafe`` hop per call. A forked child forgets the parent's loop at once
(``os.register_at_fork``) and starts its own on its first call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from gemini_tokens._client import _FORK_ORPHANS, AsyncClient
from gemini_tokens._config import DEFAULT_API_VERSION, Timeout
from gemini_tokens._errors import ConfigurationError
from gemini_tokens._models import EphemeralToken, LiveConnectConstraints
from gemini_tokens._retry import RetryPolicy

if TYPE_CHECKING:
    from gemini_tokens._config import Verify

__all__ = ["Client"]

T = TypeVar("T")


class _Runner:
    """A private event loop in a daemon thread, started on first use and again after fork."""

    def __init__(self, on_stop: Callable[[], Awaitable[None]]) -> None:
        self._on_stop = on_stop  # awaited on the loop before it stops: closes the pool
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.closed = False
        _RUNNERS.add(self)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the private loop; the future resolves in any thread."""
        try:
            if threading.current_thread() is self._thread:
                raise ConfigurationError("the sync Client was called from its own event loop")
            with self._lock:  # so that stop() sees every call scheduled before it
                if not self.closed:
                    return asyncio.run_coroutine_threadsafe(coro, self._loop or self._start())
            raise _closed("this client is closed; create a new one")  # (not holding the lock)
        except BaseException:
            coro.close()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait; an interrupt (Ctrl-C) cancels it."""
        future = self.submit(coro)
        try:
            return future.result()
        except concurrent.futures.CancelledError:  # by stop()
            raise _closed("the client was closed while this call was in flight") from None
        except BaseException:  # KeyboardInterrupt while waiting: the call stops too
            future.cancel()
            raise
        finally:
            del future  # no future -> exception -> traceback -> frame cycle

    def _forget_parent(self) -> None:  # in a forked child (a parent thread held the lock?)
        if self._loop is not None:
            _FORK_ORPHANS.append(self._loop)  # closing it would harm the parent's
        self._lock, self._loop, self._thread = threading.Lock(), None, None

    def _start(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, args=(self._loop,), name="gemini-tokens-loop", daemon=True
        )
        self._thread.start()
        return self._loop

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:  # the loop thread
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
        await loop.shutdown_asyncgens()  # then the executor: at exit 3.12+ can't start its joiner
        await asyncio.gather(loop.shutdown_default_executor(), return_exceptions=True)

    def stop(self) -> None:
        """Cancel the calls in flight, await ``on_stop``, end the thread. Idempotent."""
        with self._lock:
            self.closed = True
            loop, self._loop = self._loop, None
        if loop is not None and self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            if threading.current_thread() is not self._thread:  # (a finalizer on the loop)
                self._thread.join()


def _closed(message: str) -> BaseException:
    """The error for a call on a closed client.

    At exit (the main thread is over and the interpreter closed every client), the caller
    is a daemon thread the interpreter is about to stop: it gets `SystemExit`, which ends a
    thread without a traceback.
    """
    if not threading.main_thread().is_alive() and threading.current_thread().daemon:
        return SystemExit()
    return ConfigurationError(message)


_RUNNERS: weakref.WeakSet[_Runner] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for runner in list(_RUNNERS):
        runner._forget_parent()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """Mints ephemeral tokens; the blocking client.

    Takes `AsyncClient`'s arguments (but ``session``) and runs its very coroutines on a private
    loop: safe across threads, inside a running event loop and after ``os.fork()`` (Celery
    prefork, gunicorn ``--preload``). Use it as a context manager, or call `close`.
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
        proxy: str | None = None,
        trust_env: bool = True,
        verify: Verify | None = None,
    ) -> None:
        self._async = AsyncClient(
            api_key,
            base_url=base_url,
            api_version=api_version,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            proxy=proxy,
            trust_env=trust_env,
            verify=verify,
        )
        self._runner = _Runner(self._async.close)
        self._finalizer = weakref.finalize(self, self._runner.stop)

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
        """Close the pool and end the loop's thread. Idempotent. Calls in flight in other
        threads then raise `ConfigurationError`, as later calls do."""
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
        return self._runner.run(
            self._async.create(
                uses=uses,
                expire_minutes=expire_minutes,
                expire_time=expire_time,
                new_session_expire_minutes=new_session_expire_minutes,
                new_session_expire_time=new_session_expire_time,
                live_connect_constraints=live_connect_constraints,
                lock_additional_fields=lock_additional_fields,
                max_retries=max_retries,
                deadline=deadline,
                **unknown,
            )
        )


async def create_on_its_loop(client: Client, **options: Any) -> EphemeralToken:
    """``client.create(**options)``, awaited from any event loop (the one-shot ``acreate``).

    The call runs on the client's private loop, so one connection pool serves every loop and
    thread of the process. Cancelling the await cancels the call.
    """
    future = client._runner.submit(client._async.create(**options))
    return await asyncio.wrap_future(future)
