"""`AuditEvent`: one record per broker decision, and the default sink that logs it.

An event never holds a token's name or the API key: a minted token is identified by
`token_id`, the first 16 hex digits of the SHA-256 of its name, which lets an operator match
an event to a token they hold without the log being able to open a session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Any, Literal, get_args

import attrs

__all__ = ["OUTCOMES", "AuditEvent", "Outcome", "iso_millis", "log_audit_event", "token_id"]

#: Every outcome a decision may have, for the audit and the metrics alike. ``error`` is the
#: broker's own fault (a hook that raised, a policy function that returned something
#: unusable); ``renewed`` is a session's next token.
Outcome = Literal["minted", "renewed", "denied", "limited", "invalid", "upstream_error", "error"]
#: `Outcome`'s values, as a set (the metrics count anything else as ``other``).
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))

AUDIT_LOGGER = logging.getLogger("gemini_tokens.audit")


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
