"""`AuditEvent`: one record per broker decision, and the default sink that logs it.

An event never holds a token's name or the API key: a minted token is identified by
`token_id`, the first 16 hex digits of the SHA-256 of its name, which lets an operator match
an event to a token they hold without the log being able to open a session.

`deliver` hands an event to a sink within a bound: the token is already minted when its
event is written, so a sink that hangs must not hold the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import hashlib
import inspect
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, get_args

import attrs

__all__ = [
    "DEFAULT_AUDIT_TIMEOUT",
    "OUTCOMES",
    "AuditEvent",
    "Outcome",
    "deliver",
    "iso_millis",
    "log_audit_event",
    "token_id",
]

#: Every outcome a decision may have, for the audit and the metrics alike. ``error`` is the
#: broker's own fault (a hook that raised, a policy function that returned something
#: unusable); ``renewed`` is a session's next token.
Outcome = Literal["minted", "renewed", "denied", "limited", "invalid", "upstream_error", "error"]
#: `Outcome`'s values, as a set (the metrics count anything else as ``other``).
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))

AUDIT_LOGGER = logging.getLogger("gemini_tokens.audit")
_logger = logging.getLogger("gemini_tokens.broker")

#: How long the broker waits for its audit sink, in seconds, unless told otherwise.
DEFAULT_AUDIT_TIMEOUT = 5.0
#: Threads that run sync sinks, at most: past it (every one busy, or hung) an event is lost
#: at once, so a sink that never returns cannot pile up threads without end.
MAX_SINK_THREADS = 32


def token_id(name: str) -> str:
    """The first 16 hex digits of the SHA-256 of a token's name: safe to log."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def iso_millis(value: dt.datetime) -> str:
    """RFC 3339 in UTC to the millisecond, ``Z``: how the broker writes times it reports."""
    utc = value.astimezone(dt.timezone.utc)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else iso_millis(value)


@attrs.frozen(kw_only=True)
class AuditEvent:
    """What the broker decided for one request.

    Attributes:
        time: When the request arrived (aware, UTC).
        outcome: ``minted``, ``renewed`` (a session's next token), ``denied`` (origin or
            caller refused; reason ``suspended`` for a caller `TokenBroker.suspend` cut
            off), ``limited`` (a rate limit, reason ``budget_exhausted`` for a minute
            budget, or the limiter's storage down),
            ``invalid`` (the request broke the contract), ``upstream_error`` (the token
            service failed or refused), or ``error`` (the broker's own hooks failed).
        reason: A short, fixed code for why (``caller_limit``, ``origin_not_allowed``, ...).
        status: The HTTP status answered.
        detail: The message the caller was shown, if any (never upstream text).
        caller_id: The `Caller` id, once ``authorize`` has named one.
        client_address: The peer address the server saw.
        origin: The request's ``Origin`` header.
        token_id: For a minted token: the first 16 hex of the SHA-256 of its name.
        model: The model the token is (or would have been) locked to.
        uses: The token's uses.
        expire_time: The token's expiry.
        new_session_expire_time: The end of the token's window to open sessions.
        locked_fields: The token's field mask, or None (the whole setup locked).
        latency_ms: Time spent deciding, in milliseconds.
        charged_minutes: The Live minutes the token was charged, with minute budgets on.
    """

    time: dt.datetime
    outcome: Outcome
    reason: str
    status: int
    detail: str | None = None
    caller_id: str | None = None
    client_address: str | None = None
    origin: str | None = None
    token_id: str | None = None
    model: str | None = None
    uses: int | None = None
    expire_time: dt.datetime | None = None
    new_session_expire_time: dt.datetime | None = None
    locked_fields: tuple[str, ...] | None = None
    latency_ms: float = 0.0
    charged_minutes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready values (RFC 3339 times, lists)."""
        return {
            "time": _iso(self.time),
            "outcome": self.outcome,
            "reason": self.reason,
            "status": self.status,
            "detail": self.detail,
            "caller_id": self.caller_id,
            "client_address": self.client_address,
            "origin": self.origin,
            "token_id": self.token_id,
            "model": self.model,
            "uses": self.uses,
            "expire_time": _iso(self.expire_time),
            "new_session_expire_time": _iso(self.new_session_expire_time),
            "locked_fields": None if self.locked_fields is None else list(self.locked_fields),
            "latency_ms": round(self.latency_ms, 3),
            "charged_minutes": self.charged_minutes,
        }


def log_audit_event(event: AuditEvent) -> None:
    """The default sink: one JSON line on the ``gemini_tokens.audit`` logger.

    ``minted`` at INFO, ``upstream_error`` and ``error`` at WARNING, the rest at INFO.
    """
    level = logging.WARNING if event.outcome in ("upstream_error", "error") else logging.INFO
    if AUDIT_LOGGER.isEnabledFor(level):
        AUDIT_LOGGER.log(level, "%s", json.dumps(event.to_dict(), separators=(",", ":")))


async def deliver(
    sink: Callable[[AuditEvent], Awaitable[None] | None],
    event: AuditEvent,
    *,
    is_async: bool,
    timeout: float,
) -> str | None:
    """Hand ``event`` to ``sink``, waiting at most ``timeout`` seconds; never raises.

    An async sink is cancelled when the time is up. A sync sink runs in a daemon thread of
    its own (it may block on a socket or a database; a thread that hangs then holds neither
    the answer nor the process's exit); the built-in `log_audit_event` runs in place.

    Returns:
        None when the sink took the event; otherwise why it was lost (``timeout``,
        ``sink_error`` or ``busy``: too many sync sink calls still running), which is
        logged at WARNING (the outcome only: never a token or a session) for the caller
        to count.
    """
    deadline = time.monotonic() + timeout
    try:
        if sink is log_audit_event:
            sink(event)
            return None
        pending = sink(event) if is_async else _in_thread(sink, event)
        if pending is None:  # (an "async" sink that returned nothing has taken it)
            return None if is_async else _lost(event, "busy", timeout)
        result = await _bounded(pending, deadline)
        if inspect.isawaitable(result):  # a sync function that returned an awaitable
            await _bounded(result, deadline)
    except asyncio.TimeoutError:
        return _lost(event, "timeout", timeout)
    except Exception:
        _logger.exception("token broker: the audit sink raised; the event was lost")
        return "sink_error"
    return None


async def _bounded(awaitable: Awaitable[Any], deadline: float) -> Any:
    """``awaitable``'s result, or `asyncio.TimeoutError` at ``deadline``.

    Unlike ``asyncio.wait_for``, it does not wait for a cancelled sink to end: one that
    ignores its cancellation is left behind, not waited for.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait((task,), timeout=max(0.0, deadline - time.monotonic()))
    except asyncio.CancelledError:  # the request itself was cancelled: so is the sink
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_forget)
        raise asyncio.TimeoutError
    return task.result()


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it again


class _SinkThreads:
    """Daemon threads that run sync sinks, started as needed and kept, at most ``limit``.

    Not a ``ThreadPoolExecutor``: its threads are joined at exit, so a hung sink would hold
    the process's exit too; these are daemons.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def submit(self, job: Callable[[], None]) -> bool:
        """Run ``job`` in a thread; False when every thread is taken (``job`` not run)."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                start = False
            elif self._threads < self._limit:
                self._threads += 1
                start = True
            else:
                return False
        self._jobs.put(job)
        if start:
            threading.Thread(
                target=self._work, name="gemini-tokens-audit-sink", daemon=True
            ).start()
        return True

    def _work(self) -> None:
        while True:
            self._jobs.get()()
            with self._lock:
                self._idle += 1


_sink_threads = _SinkThreads(MAX_SINK_THREADS)


def _after_fork_in_child() -> None:  # the parent's threads are not in the child
    global _sink_threads
    _sink_threads = _SinkThreads(MAX_SINK_THREADS)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _in_thread(sink: Callable[[AuditEvent], Any], event: AuditEvent) -> asyncio.Future[Any] | None:
    """Run a sync sink on a sink thread; a future for its result (None: no thread free)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:  # on the loop
        if future.done():  # given up on
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:  # on a sink thread
        result: Any = None
        error: BaseException | None = None
        try:
            result = context.run(sink, event)
        except Exception as exc:  # handed to the loop, which logs it
            error = exc
        with contextlib.suppress(RuntimeError):  # a loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    return future if _sink_threads.submit(run) else None


def _lost(event: AuditEvent, why: str, timeout: float) -> str:
    if why == "busy":
        _logger.warning(
            "token broker: %d audit sink calls are still running; a %s event was lost",
            MAX_SINK_THREADS,
            event.outcome,
        )
    else:
        _logger.warning(
            "token broker: the audit sink did not return within %gs (audit_timeout); "
            "a %s event was lost",
            timeout,
            event.outcome,
        )
    return why
