"""`Client`: the blocking facade. It runs `AsyncClient`'s coroutines on a private event loop
in a daemon thread, and adds nothing else.

Why a thread of its own: a sync call may come from a plain script, from many threads at
once, or from inside a running event loop (a notebook, a sync helper called in a coroutine).
Running the coroutine on the caller's thread would fail in the last case ("loop already
running"); a private loop in its own thread works in all of them.

Fork safety: after ``os.fork()`` the child has the parent's loop object but not its thread.
The first call in the child starts a fresh loop and a fresh connection pool; the inherited
ones are left untouched (see ``_client._FORK_ORPHANS``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from gemini_tokens._client import _FORK_ORPHANS, AsyncClient
from gemini_tokens._config import DEFAULT_API_VERSION, Timeout
from gemini_tokens._errors import ConfigurationError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from gemini_tokens._models import EphemeralToken, LiveConnectConstraints
    from gemini_tokens._retry import RetryPolicy

__all__ = ["Client"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread, restarted lazily after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @property
    def started(self) -> bool:
        return self._loop is not None and self._pid == os.getpid()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and self._pid != os.getpid():
                # Inherited from the parent: its thread does not exist here. Never close it.
                _FORK_ORPHANS.append(self._loop)
                self._loop = self._thread = None
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(loop, ready), name="gemini-tokens-loop", daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the private loop; the future resolves in any thread."""
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and block until it finishes.

        The hand-off is a bare lock rather than ``run_coroutine_threadsafe``'s future: the
        two thread wake-ups are the facade's whole cost, and a lock is the cheapest way to
        make them (see docs/performance.md).
        """
        if self.in_loop_thread():
            coro.close()
            raise ConfigurationError(
                "the sync Client was called from its own event loop; use AsyncClient there"
            )
        loop = self._ensure_loop()
        done = threading.Lock()
        done.acquire()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            task = loop.create_task(coro)
            tasks.append(task)
            task.add_done_callback(lambda _: done.release())

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop was closed by a concurrent close()
            coro.close()
            raise ConfigurationError("this client is closed; create a new one") from None
        try:
            done.acquire()
        except BaseException:
            # KeyboardInterrupt while waiting: do not leave the coroutine running.
            loop.call_soon_threadsafe(lambda: tasks and tasks[0].cancel())
            raise
        task = tasks[0]
        if task.cancelled():
            raise ConfigurationError("the client was closed while this call was in flight")
        return task.result()

    def stop(self) -> None:
        """Stop the loop and join its thread (no-op if never started or inherited).

        Calls still in flight are cancelled first, so that no caller waits forever.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or self._pid != os.getpid():
            return
        if thread is threading.current_thread():
            loop.stop()  # called on the loop itself (e.g. by a finalizer); it exits soon
            return

        async def _drain() -> None:
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await loop.shutdown_asyncgens()

        asyncio.run_coroutine_threadsafe(_drain(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _shutdown(runner: _LoopThread, client: AsyncClient) -> None:
    """Close the pool on the private loop, then stop it. Safe to call more than once."""
    if runner.started and not runner.in_loop_thread():
        runner.run(client.close())
    runner.stop()


class Client:
    """Mints ephemeral tokens; the blocking client.

    The same options and behaviour as `AsyncClient` (it runs the very same coroutines on a
    private event loop). Safe to share between threads, to call from inside a running event
    loop, and to use in a child process after ``os.fork()`` (Celery prefork, gunicorn
    ``--preload``). Use it as a context manager, or call `close`.

    Args:
        api_key: The Gemini API key. Default: ``GEMINI_API_KEY``, else ``GOOGLE_API_KEY``.
        base_url: The service's root. Default: ``GEMINI_BASE_URL``, else the public endpoint.
        api_version: Token creation exists only in ``v1alpha``.
        timeout: A `Timeout`, or a number of seconds for the whole attempt.
        max_retries: Retries after the first attempt on 408, 429, 5xx and connection errors.
        max_retry_wait: A server ``Retry-After`` longer than this is raised, not slept.
        retry: A whole `RetryPolicy` (backoff included); ``max_retries`` and
            ``max_retry_wait``, when given, override its values.
        allow_insecure_http: Allow ``http://`` to a non-loopback host.

    Raises:
        ConfigurationError: no API key, or an unusable base URL.
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
        self._async = AsyncClient(
            api_key,
            base_url=base_url,
            api_version=api_version,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
        )
        self._runner = _LoopThread()
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._runner, self._async)

    def __repr__(self) -> str:
        return f"Client(base_url={self._async.base_url!r})"

    @property
    def base_url(self) -> str:
        """The service root requests go to."""
        return self._async.base_url

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and stop the private loop's thread. Idempotent."""
        self._closed = True
        self._finalizer()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._closed:
            coro.close()
            raise ConfigurationError("this client is closed; create a new one")
        return self._runner.submit(coro)

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
        if self._closed:
            raise ConfigurationError("this client is closed; create a new one")
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
