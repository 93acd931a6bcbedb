"""`AuditEvent`: one record per broker decision, and the default sink that logs it.

An event never holds a token's name or the API key: a minted token is identified by
`token_id`, the first 16 hex digits of the SHA-256 of its name, which lets an operator match
an event to a token they hold without the log being able to open a session.

`deliver` hands an event to a sink within a bound: the token is already minted when its
event is written, so a sink that hangs must not hold the answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import inspect
import json
import logging
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
    timeout: float,
) -> str | None:
    """Hand ``event`` to ``sink``, waiting at most ``timeout`` seconds for it; never raises.

    A sync sink runs in place, on the event loop (as the default `log_audit_event` does):
    nothing is queued or dropped, and the event is recorded before the answer leaves. A sink
    that may block (a socket, a database) is written async, and it is what the timeout
    bounds: it is cancelled when the time is up.

    Returns:
        None when the sink took the event; otherwise why it was lost (``timeout`` or
        ``sink_error``), which is logged (the outcome only: never a token or a session) for
        the caller to count.
    """
    deadline = time.monotonic() + timeout
    try:
        pending = sink(event)
        if not inspect.isawaitable(pending):  # a sync sink: done, in place
            return None
        await _bounded(pending, deadline)
    except asyncio.TimeoutError:
        _logger.warning(
            "token broker: the audit sink did not return within %gs (audit_timeout); "
            "a %s event was lost",
            timeout,
            event.outcome,
        )
        return "timeout"
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
