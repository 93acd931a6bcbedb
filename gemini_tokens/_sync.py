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
import collections
import concurrent.futures
import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from gemini_tokens._client import _FORK_ORPHANS, AsyncClient, _Process
from gemini_tokens._config import DEFAULT_API_VERSION, Timeout
from gemini_tokens._errors import ConfigurationError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from gemini_tokens._config import Verify
    from gemini_tokens._models import EphemeralToken, LiveConnectConstraints
    from gemini_tokens._retry import RetryPolicy

__all__ = ["Client"]

T = TypeVar("T")


_CLOSED_IN_FLIGHT = "the client was closed while this call was in flight"


class _Call:
    """One blocking call: its coroutine, its outcome, and the lock its caller waits on."""

    __slots__ = ("coro", "done", "error", "task", "value")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.done = threading.Lock()
        self.done.acquire()  # released once, when the outcome is set
        self.value: Any = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None

    def fail(self) -> None:
        """Settle a call that never ran (the client was closed first)."""
        self.coro.close()
        self.error = ConfigurationError(_CLOSED_IN_FLIGHT)
        self.done.release()


async def _execute(call: _Call) -> None:
    """Run a call's coroutine and hand its outcome to the waiting thread.

    The release happens here, inside the task's last step, rather than in a done callback,
    which would cost the loop one more turn per call.
    """
    try:
        call.value = await call.coro
    except asyncio.CancelledError:
        call.error = ConfigurationError(_CLOSED_IN_FLIGHT)
    except BaseException as exc:  # KeyboardInterrupt too: it belongs to the caller
        call.error = exc
    finally:
        call.done.release()


class _LoopThread:
    """An event loop running forever in a daemon thread, restarted lazily after a fork.

    Calls reach the loop through a queue: a caller appends its `_Call` and wakes the loop
    only when no wake-up is already on its way, so calls made together (many threads at
    once) share one wake-up instead of paying one each. The wake-up is an eventfd (a pipe
    where there is none) that the loop watches with ``add_reader``: cheaper than
    ``call_soon_threadsafe``'s, which it falls back to where a loop cannot watch a file.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._pending: collections.deque[_Call] = collections.deque()
        self._wake_scheduled = False
        self._stopping = False
        #: (read end, write end) of the wake-up, or None: use call_soon_threadsafe.
        self._wake_fds: tuple[int, int] | None = None
        _RUNNERS.add(self)

    @property
    def started(self) -> bool:
        return self._loop is not None and self._pid == os.getpid()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and self._pid == _Process.pid:
            return loop  # the usual case, without taking the lock
        with self._lock:
            if self._pid != os.getpid():
                # Inherited from the parent: its thread does not exist here. Never close
                # its loop or its wake-up files (they are the parent's too).
                if self._loop is not None:
                    _FORK_ORPHANS.append(self._loop)
                self._loop = self._thread = self._wake_fds = None
                # The parent's queued calls belong to threads that do not exist here.
                self._pending = collections.deque()
                self._wake_scheduled = self._stopping = False
                self._pid = os.getpid()
            if self._stopping:
                raise ConfigurationError("this client is closed; create a new one")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._wake_fds = self._watch_wake_fds(loop)
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(loop, ready), name="gemini-tokens-loop", daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def _watch_wake_fds(self, loop: asyncio.AbstractEventLoop) -> tuple[int, int] | None:
        """Make the wake-up file and have ``loop`` watch it; None where it cannot."""
        if hasattr(os, "eventfd"):  # Linux
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            fds = (fd, fd)
        else:
            fds = os.pipe()
            for fd in fds:
                os.set_blocking(fd, False)
        try:
            loop.add_reader(fds[0], self._on_wake)
        except NotImplementedError:  # e.g. Windows' proactor loop
            for fd in set(fds):
                os.close(fd)
            return None
        return fds

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    def in_loop_thread(self) -> bool:
        thread = self._thread
        return thread is not None and threading.get_ident() == thread.ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the private loop; the future resolves in any thread."""
        try:
            loop = self._ensure_loop()
        except ConfigurationError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def _on_wake(self) -> None:
        """On the loop: the wake-up file is readable. Empty it, then start the queued calls."""
        fds = self._wake_fds
        if fds is not None:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                os.read(fds[0], 4096)  # an eventfd's 8-byte counter, or a pipe's bytes
        self._start_pending()

    def _start_pending(self) -> None:
        """On the loop: start every queued call (one wake-up may carry many)."""
        self._wake_scheduled = False  # before popping: a call queued from now on wakes us
        loop = self._loop
        pending = self._pending
        while pending:
            call = pending.popleft()
            if loop is None:  # pragma: no cover - stop() clears it only after this loop
                call.fail()
            else:
                call.task = loop.create_task(_execute(call))

    def _wake(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Wake the loop from another thread; False if it is closed."""
        # Under the lock: stop() closes the file under it, and a closed descriptor's number
        # may be reused by another file at once.
        with self._lock:
            fds = self._wake_fds
            if fds is not None:
                with contextlib.suppress(BlockingIOError):  # a full pipe: already awake
                    os.write(fds[1], _ONE)
                return True
        try:
            loop.call_soon_threadsafe(self._start_pending)
        except RuntimeError:  # the loop was closed by a concurrent close()
            return False
        return True

    def _fail_pending(self) -> None:
        """Settle every queued call that no loop will start. Each call is popped once."""
        while True:
            try:
                call = self._pending.popleft()
            except IndexError:
                return
            call.fail()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and block until it finishes.

        The hand-off is a queue, a wake-up file and a bare lock rather than
        ``run_coroutine_threadsafe``'s futures: the thread wake-ups are the facade's whole
        cost (see docs/performance.md).
        """
        if self.in_loop_thread():
            coro.close()
            raise ConfigurationError(
                "the sync Client was called from its own event loop; use AsyncClient there"
            )
        try:
            loop = self._ensure_loop()
        except ConfigurationError:
            coro.close()
            raise
        call = _Call(coro)
        self._pending.append(call)
        if self._stopping:
            # A close() began meanwhile and may already have swept the queue.
            self._fail_pending()
        elif not self._wake_scheduled:
            # The wake-up comes last: the loop thread starts at once, and anything this
            # thread still did before blocking would hold it up on the GIL.
            self._wake_scheduled = True
            try:
                woken = self._wake(loop)
            except BaseException:
                self._wake_scheduled = False  # so that the next call wakes the loop
                raise
            if not woken:
                self._fail_pending()
        try:
            call.done.acquire()
        except BaseException:
            # KeyboardInterrupt while waiting: do not leave the coroutine running.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._cancel, call)
            raise
        error = call.error
        if error is not None:
            try:
                raise error
            finally:
                error = call.error = None  # no exception -> traceback -> frame -> call cycle
        value: T = call.value
        return value

    def _cancel(self, call: _Call) -> None:
        """On the loop: cancel a call whose caller stopped waiting."""
        if call.task is not None:
            call.task.cancel()

    def stop(self) -> None:
        """Stop the loop and join its thread (no-op if never started or inherited).

        Calls still in flight are cancelled first, and queued ones are failed, so that no
        caller waits forever.
        """
        self._stopping = True  # refuse new calls first, then sweep the queue
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or self._pid != os.getpid():
            return
        if thread is threading.current_thread():
            loop.stop()  # called on the loop itself (e.g. by a finalizer); it exits soon
            return

        async def _drain() -> None:
            self._fail_pending()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await loop.shutdown_asyncgens()

        asyncio.run_coroutine_threadsafe(_drain(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        with self._lock:
            fds, self._wake_fds = self._wake_fds, None
        if fds is not None:
            loop.remove_reader(fds[0])
            for fd in set(fds):
                os.close(fd)
        loop.close()
        self._fail_pending()  # queued after the sweep above


_ONE = (1).to_bytes(8, sys.byteorder)  # an eventfd takes an 8-byte count; a pipe any bytes

#: Every runner, so that a forked child can replace locks a parent's thread may have held.
_RUNNERS: weakref.WeakSet[_LoopThread] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for runner in list(_RUNNERS):
        runner._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
        proxy: The proxy URL; default: the environment's (see ``trust_env``).
        trust_env: Read ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` (default True).
        verify: True (default), False, a CA bundle path or an ``ssl.SSLContext`` (see
            `AsyncClient`).

    Raises:
        ConfigurationError: no API key, or an unusable base URL, proxy or ``verify``.
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
            proxy=proxy,
            trust_env=trust_env,
            verify=verify,
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
        """Close the connection pool and stop the private loop's thread. Idempotent.

        Calls still running in other threads then fail with `ConfigurationError` rather
        than wait; later calls are refused the same way.
        """
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
