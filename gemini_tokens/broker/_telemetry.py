"""OpenTelemetry for the broker's decisions, when ``opentelemetry-api`` is installed.

The mint has its own span and metrics (the core's); this module observes what the broker
decided, from its `AuditEvent`:

- a span ``gemini_tokens.broker.decision`` (kind SERVER) per decision, with
  ``gemini_tokens.outcome``, ``gemini_tokens.reason`` and ``http.response.status_code``;
- metrics: ``gemini_tokens.broker.decisions`` (counter, by outcome and reason),
  ``gemini_tokens.broker.limiter.rejections`` (counter, by ``gemini_tokens.limit.scope``:
  ``caller`` or ``global``) and ``gemini_tokens.broker.audit.lost`` (counter, by
  ``gemini_tokens.reason``: ``timeout`` or ``sink_error``: audit events the sink
  never took) and ``gemini_tokens.broker.live_minutes`` (counter of the Live
  minutes granted under budgets, by outcome: ``minted`` or ``renewed``).

The tracer and the meter are the library's (``gemini_tokens``), taken by name through the
API's public functions; until the application sets an SDK they are the API's no-ops. The
outcomes a metric may carry are the audit's `OUTCOMES`, the one set. Never a caller id, a
token or a JWT in an attribute: outcomes and reasons come from small fixed sets.
"""

from __future__ import annotations

import contextvars
import re
import time
from types import TracebackType
from typing import Any

from gemini_tokens import __version__
from gemini_tokens.broker._audit import OUTCOMES, AuditEvent

__all__ = [
    "DecisionSpan",
    "decision_span",
    "observe",
    "record_audit_lost",
    "record_decision",
    "record_minutes",
]

INSTRUMENTATION_NAME = "gemini_tokens"
DECISION_SPAN = "gemini_tokens.broker.decision"
_REASON = re.compile(r"[a-z][a-z0-9_.]{0,47}")


class _Instruments:
    """The API's modules, the tracer and the counters."""

    def __init__(self) -> None:
        from opentelemetry import context, metrics, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.context = context
        self.trace = trace
        self.server_kind = SpanKind.SERVER
        self.error = StatusCode.ERROR
        self.status = Status
        self.tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__)
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__)
        self.decisions = meter.create_counter(
            "gemini_tokens.broker.decisions",
            unit="{decision}",
            description="Token broker decisions, by outcome and reason",
        )
        self.rejections = meter.create_counter(
            "gemini_tokens.broker.limiter.rejections",
            unit="{request}",
            description="Requests refused by the broker's rate limits, by scope",
        )
        self.audit_lost = meter.create_counter(
            "gemini_tokens.broker.audit.lost",
            unit="{event}",
            description="Audit events the broker's audit sink never took, by reason",
        )


# None: not looked for yet; False: opentelemetry-api is not installed.
_instruments: _Instruments | bool | None = None


def _get() -> _Instruments | None:
    global _instruments
    if _instruments is None:
        try:
            _instruments = _Instruments()
        except ImportError:
            _instruments = False
    return _instruments if isinstance(_instruments, _Instruments) else None


def _reason_value(reason: str | None) -> str:
    """A reason as an attribute: a short snake_case code, else ``other``."""
    if not reason:
        return "none"
    return reason if _REASON.fullmatch(reason) else "other"


def _outcome_value(outcome: str) -> str:
    return outcome if outcome in OUTCOMES else "other"


def _limit_scope(outcome: str, reason: str | None) -> str | None:
    if outcome != "limited" or not isinstance(reason, str) or not reason.endswith("_limit"):
        return None  # (a limiter whose storage is down refuses too, but that is no rejection)
    # ``global_limit`` is the API key's budget; every other limit (``caller_limit``,
    # ``renewal_limit``) is one caller's.
    return "global" if reason == "global_limit" else "caller"


def _label(span: Any, i: _Instruments, outcome: str, reason: str | None, status: Any) -> None:
    if not span.is_recording():
        return
    span.set_attribute("gemini_tokens.outcome", _outcome_value(outcome))
    span.set_attribute("gemini_tokens.reason", _reason_value(reason))
    if isinstance(status, int):
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(i.status(i.error))


class DecisionSpan:
    """One decision's span, current while it runs. Made by `decision_span`."""

    __slots__ = ("_attributes", "_i", "_outer", "_recorded", "_reset", "_span", "_token")

    def __init__(self, attributes: dict[str, Any]) -> None:
        self._i = _get()
        self._outer = _current.get()  # a decision inside another is the same one
        self._attributes = attributes
        self._span: Any = None
        self._token: object = None
        self._recorded = False
        self._reset: contextvars.Token[DecisionSpan | None] | None = None

    def __enter__(self) -> DecisionSpan:
        i = self._i
        if i is not None and self._outer is None:
            self._span = i.tracer.start_span(
                DECISION_SPAN, kind=i.server_kind, attributes=self._attributes
            )
            self._token = i.context.attach(i.trace.set_span_in_context(self._span))
            self._reset = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        i = self._i
        if i is None or self._span is None:
            return
        if self._reset is not None:
            _current.reset(self._reset)
        i.context.detach(self._token)
        if exc is not None:
            self._span.set_attribute("error.type", type(exc).__name__)
            self._span.set_status(i.status(i.error, type(exc).__name__))
            if not self._recorded:
                record_decision("error", "exception")
        self._span.end()

    def outcome(
        self, outcome: str, reason: str | None = None, *, status: int | None = None
    ) -> None:
        """Record the decision on the span and in the metrics, once however often told.

        Args:
            outcome: One of the audit's `OUTCOMES` (anything else is counted as ``other``).
            reason: A short snake_case code.
            status: The HTTP status answered.
        """
        if self._outer is not None:
            self._outer.outcome(outcome, reason, status=status)
            return
        if self._recorded:
            return
        self._recorded = True
        if self._i is not None and self._span is not None:
            _label(self._span, self._i, outcome, reason, status)
        record_decision(outcome, reason)


_current: contextvars.ContextVar[DecisionSpan | None] = contextvars.ContextVar(
    "gemini_tokens_broker_decision", default=None
)


def decision_span(method: str | None = None, route: str | None = None) -> DecisionSpan:
    """A span around one broker decision, for a server that hosts the broker:
    ``with decision_span("POST", "/token"): ...``.

    The broker reports its decision onto it (and a token minted inside becomes its child),
    instead of recording a span of its own after the fact. Nothing without
    ``opentelemetry-api``.

    Args:
        method: The request's HTTP method (``http.request.method``).
        route: The route it matched (``http.route``), never the raw path.
    """
    attributes: dict[str, Any] = {}
    if method is not None:
        attributes["http.request.method"] = method
    if route is not None:
        attributes["http.route"] = route
    return DecisionSpan(attributes)


def observe(event: AuditEvent) -> None:
    """Record one decision the broker audits: on the current `decision_span`, or as a span
    of its own spanning the event's ``latency_ms``; and in the metrics."""
    i = _get()
    if i is None:
        return
    current = _current.get()
    if current is not None:
        current.outcome(event.outcome, event.reason, status=event.status)
        return
    now = time.time_ns()
    span = i.tracer.start_span(
        DECISION_SPAN,
        kind=i.server_kind,
        start_time=now - int(max(0.0, event.latency_ms) * 1_000_000),
    )
    _label(span, i, event.outcome, event.reason, event.status)
    span.end(end_time=now)
    record_decision(event.outcome, event.reason)


def record_decision(outcome: str, reason: str | None = None) -> None:
    """Count one decision, and a limiter rejection when a rate limit refused it.

    Args:
        outcome: One of the audit's `OUTCOMES` (anything else is counted as ``other``).
        reason: A short snake_case code (free text is counted as ``other``: metric
            attributes stay low-cardinality).
    """
    i = _get()
    if i is None:
        return
    i.decisions.add(
        1,
        {
            "gemini_tokens.outcome": _outcome_value(outcome),
            "gemini_tokens.reason": _reason_value(reason),
        },
    )
    scope = _limit_scope(outcome, reason)
    if scope is not None:
        i.rejections.add(1, {"gemini_tokens.limit.scope": scope})


def record_audit_lost(reason: str) -> None:
    """Count one audit event the sink never took.

    Args:
        reason: ``timeout`` (past ``audit_timeout``) or ``sink_error`` (the sink raised).
    """
    i = _get()
    if i is not None:
        i.audit_lost.add(1, {"gemini_tokens.reason": _reason_value(reason)})


# The minutes counter, made on first use (None: not yet).
_minutes: Any = None


def record_minutes(minutes: int, outcome: str) -> None:
    """Count the Live minutes a token was granted under the budgets (no caller id).

    Args:
        minutes: The minutes charged.
        outcome: ``minted`` or ``renewed``.
    """
    global _minutes
    if minutes <= 0 or _get() is None:
        return
    if _minutes is None:
        from opentelemetry import metrics

        _minutes = metrics.get_meter(INSTRUMENTATION_NAME, __version__).create_counter(
            "gemini_tokens.broker.live_minutes",
            unit="min",
            description="Live minutes granted to tokens under the broker's budgets",
        )
    _minutes.add(minutes, {"gemini_tokens.outcome": _outcome_value(outcome)})
