"""OpenTelemetry spans and metrics, when ``opentelemetry-api`` is installed; nothing otherwise.

The library takes the API only (the ``otel`` extra) and gets its tracer and meter by name,
``gemini_tokens``; the application chooses the SDK and the exporters. Without the API, every
hook here is a constant: `mint` returns one shared object that does nothing, and `wrap`
hands the attempt back unchanged.

What is recorded:

- a span ``gemini_tokens.create`` (kind CLIENT) per `AsyncClient.create`: attributes
  ``gen_ai.provider.name`` (``gcp.gemini``), ``gen_ai.request.model``,
  ``http.response.status_code`` (the last answer's), ``error.type`` on failure, and in this
  library's namespace ``gemini_tokens.attempts``, ``gemini_tokens.retry_reasons`` (one entry
  per retried attempt: ``"503"``, ``"timeout"``, ``"connection_error"``) and
  ``gemini_tokens.uses``; an event ``gemini_tokens.retry`` per retried attempt;
- a span ``gemini_tokens.broker.decision`` (kind SERVER) per broker decision, with
  ``gemini_tokens.outcome`` and ``gemini_tokens.reason`` (see `decision`);
- metrics: ``gemini_tokens.mint.duration`` (histogram, s), ``gemini_tokens.mint.attempts``
  (counter, by ``gemini_tokens.attempt.outcome``), ``gemini_tokens.broker.decisions``
  (counter, by outcome and reason) and ``gemini_tokens.broker.limiter.rejections`` (counter,
  by ``gemini_tokens.limit.scope``: ``caller`` or ``global``).

Never a token name, an API key, a JWT or a caller id in an attribute: metric attributes take
values from small fixed sets (and the model name the application configured).
"""

from __future__ import annotations

import contextvars
import os
import re
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from gemini_tokens._errors import APIError, APIStatusError, APITimeoutError, InvalidResponseError

__all__ = [
    "DecisionObserver",
    "MintObserver",
    "decision",
    "enabled",
    "mint",
    "observe_audit_event",
    "record_decision",
]

T = TypeVar("T")

INSTRUMENTATION_NAME = "gemini_tokens"
PROVIDER = "gcp.gemini"  # the GenAI semantic conventions' name for the Gemini Developer API

#: The decision outcomes and reasons a metric may carry; anything else is counted as "other".
OUTCOMES = frozenset(
    {"minted", "renewed", "denied", "limited", "invalid", "upstream_error", "error"}
)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_REASON = re.compile(r"[a-z][a-z0-9_.]{0,47}")


class _Instruments:
    """The API's modules, the tracer and the instruments (proxies until an SDK is set)."""

    def __init__(self) -> None:
        from opentelemetry import context, metrics, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from gemini_tokens._version import __version__

        self.context = context
        self.trace = trace
        self.metrics = metrics
        # Until the application sets an SDK's providers, the API hands out proxies: nothing
        # would be recorded, so nothing is done (a span costs ~9 us even unrecorded).
        # Checked on every call, cheaply: the API's own getters read the environment each
        # time, so its globals are read directly where they exist (once set, they stay).
        internal: Any = getattr(metrics, "_internal", None)
        proxy_meter: Any = getattr(internal, "_ProxyMeterProvider", None)
        idle_meters: tuple[type, ...] = (metrics.NoOpMeterProvider,) + (
            (proxy_meter,) if isinstance(proxy_meter, type) else ()
        )
        idle_tracers = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        self._providers: tuple[tuple[Callable[[], object], tuple[type, ...]], ...] = (
            (
                _provider_getter(
                    trace,
                    "_TRACER_PROVIDER",
                    trace.get_tracer_provider,
                    "OTEL_PYTHON_TRACER_PROVIDER",
                ),
                idle_tracers,
            ),
            (
                _provider_getter(
                    internal,
                    "_METER_PROVIDER",
                    metrics.get_meter_provider,
                    "OTEL_PYTHON_METER_PROVIDER",
                ),
                idle_meters,
            ),
        )
        self._active = False
        self.client_kind = SpanKind.CLIENT
        self.server_kind = SpanKind.SERVER
        self.error = StatusCode.ERROR
        self.status = Status
        self.tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__)
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__)
        name, unit = "gemini_tokens.mint.duration", "s"
        about = "Time to mint a token, all attempts and backoff sleeps included"
        try:  # the HTTP semantic conventions' buckets (the default ones start at 5 s)
            self.duration = meter.create_histogram(
                name, unit, about, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
            )
        except TypeError:  # pragma: no cover - opentelemetry-api < 1.23
            self.duration = meter.create_histogram(name, unit, about)
        self.attempts = meter.create_counter(
            "gemini_tokens.mint.attempts",
            unit="{attempt}",
            description="HTTP attempts to mint a token, by outcome",
        )
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

    def idle(self) -> bool:
        """Whether no SDK is set (neither a tracer nor a meter provider): nothing to record."""
        if self._active:
            return False
        for get, idle_types in self._providers:
            provider = get()
            if provider is not None and not isinstance(provider, idle_types):
                self._active = True  # a provider, once set, cannot be unset
                return False
        return True

    def start(self, name: str, kind: Any, attributes: dict[str, Any]) -> tuple[Any, object]:
        """A started span, made current; and the token that `stop` detaches."""
        span = self.tracer.start_span(name, kind=kind, attributes=attributes)
        return span, self.context.attach(self.trace.set_span_in_context(span))


def _provider_getter(
    module: Any, name: str, public: Callable[[], object], variable: str
) -> Callable[[], object]:
    """A cheap reader of the API's global provider (None until set); the public getter when
    the global is not there or the environment names a provider (the getter loads it)."""
    if module is None or not hasattr(module, name) or variable in os.environ:
        return public
    return lambda: getattr(module, name)


# None: not looked for yet; False: opentelemetry-api is not installed. Imported on first use,
# not at ``import gemini_tokens`` (it costs ~20 ms).
_instruments: _Instruments | bool | None = None


def _get() -> _Instruments | None:
    global _instruments
    if _instruments is None:
        try:
            _instruments = _Instruments()
        except ImportError:
            _instruments = False
    return _instruments if isinstance(_instruments, _Instruments) else None


def enabled() -> bool:
    """Whether ``opentelemetry-api`` is installed (and so spans and metrics are recorded)."""
    return _get() is not None


def _attempt_outcome(exc: APIError) -> str:
    """A failed attempt in a few words: the status, ``timeout``, ``connection_error``..."""
    if isinstance(exc, APIStatusError):
        return str(exc.status_code)
    if isinstance(exc, APITimeoutError):
        return "timeout"
    if isinstance(exc, InvalidResponseError):
        return "invalid_response"
    return "connection_error"


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, APIStatusError):
        return str(exc.status_code)
    return type(exc).__name__


def _model_name(model: str | None) -> str | None:
    if not model:
        return None
    return model[len("models/") :] if model.startswith("models/") else model


class _NullMint:
    """What `mint` returns without OpenTelemetry: a context manager that does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NullMint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def wrap(
        self, attempt: Callable[[float | None], Awaitable[T]]
    ) -> Callable[[float | None], Awaitable[T]]:
        """The attempt itself."""
        return attempt


_NULL_MINT = _NullMint()


class MintObserver:
    """One `create` call's span and metrics. Made by `mint`; use it as a context manager."""

    __slots__ = ("_i", "_model", "_reasons", "_span", "_start", "_status", "_token", "_uses")

    def __init__(self, instruments: _Instruments, model: str | None, uses: int | None) -> None:
        self._i = instruments
        self._model = _model_name(model)
        self._uses = uses
        self._reasons: list[str] = []
        self._status: int | None = None
        self._start = 0.0
        self._span: Any = None
        self._token: object = None

    def __enter__(self) -> MintObserver:
        attributes: dict[str, Any] = {"gen_ai.provider.name": PROVIDER}
        if self._model is not None:
            attributes["gen_ai.request.model"] = self._model
        if self._uses is not None:
            attributes["gemini_tokens.uses"] = self._uses
        self._span, self._token = self._i.start(
            "gemini_tokens.create", self._i.client_kind, attributes
        )
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._start
        span, i = self._span, self._i
        i.context.detach(self._token)
        # The last failure is the call's error, not a reason for a retry.
        reasons = self._reasons if exc is None else self._reasons[:-1]
        metric_attributes: dict[str, Any] = {"gen_ai.provider.name": PROVIDER}
        if self._model is not None:
            metric_attributes["gen_ai.request.model"] = self._model
        if exc is not None:
            metric_attributes["error.type"] = _error_type(exc)
        if span.is_recording():
            span.set_attribute("gemini_tokens.attempts", len(self._reasons) + (exc is None))
            if reasons:
                span.set_attribute("gemini_tokens.retry_reasons", reasons)
            if self._status is not None:
                span.set_attribute("http.response.status_code", self._status)
            if exc is not None:
                span.set_attribute("error.type", metric_attributes["error.type"])
                # Our errors' messages are redacted (no key, no token); another exception's
                # text is not ours to vouch for, so only its class is given.
                text = f": {exc}" if isinstance(exc, APIError) else ""
                span.set_status(i.status(i.error, f"{type(exc).__name__}{text}"))
        span.end()
        i.duration.record(elapsed, metric_attributes)

    def wrap(
        self, attempt: Callable[[float | None], Awaitable[T]]
    ) -> Callable[[float | None], Awaitable[T]]:
        """The attempt, counted: each call adds to the attempts metric and the span."""

        async def observed(remaining: float | None) -> T:
            try:
                result = await attempt(remaining)
            except APIError as exc:
                outcome = _attempt_outcome(exc)
                self._reasons.append(outcome)
                self._status = getattr(exc, "status_code", None)  # none without an answer
                self._count(outcome)
                if self._span.is_recording():
                    self._span.add_event(
                        "gemini_tokens.attempt_failed",
                        {"gemini_tokens.attempt": len(self._reasons), "error.type": outcome},
                    )
                raise
            self._status = 200  # every 2xx this library accepts; the service answers 200
            self._count("ok")
            return result

        return observed

    def _count(self, outcome: str) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.provider.name": PROVIDER,
            "gemini_tokens.attempt.outcome": outcome,
        }
        if self._model is not None:
            attributes["gen_ai.request.model"] = self._model
        self._i.attempts.add(1, attributes)


def mint(model: str | None, uses: int | None = None) -> MintObserver | _NullMint:
    """The observer of one `create` call: ``with mint(model) as m: ... m.wrap(attempt)``.

    Without OpenTelemetry, or before the application set an SDK's providers, this is one
    shared object whose methods do nothing.
    """
    instruments = _get()
    if instruments is None or instruments.idle():
        return _NULL_MINT
    return MintObserver(instruments, model, uses)


def _reason_value(reason: str | None) -> str:
    """A reason as a metric attribute: a short snake_case code, else ``other``."""
    if not reason:
        return "none"
    return reason if _REASON.fullmatch(reason) else "other"


def _outcome_value(outcome: str) -> str:
    return outcome if outcome in OUTCOMES else "other"


class DecisionObserver:
    """One broker decision's span (current while it runs). Made by `decision`."""

    __slots__ = ("_attributes", "_i", "_name", "_outer", "_recorded", "_reset", "_span", "_token")

    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        instruments = _get()
        self._i = None if instruments is None or instruments.idle() else instruments
        self._outer = _current_decision.get()  # a decision inside another is the same one
        self._name = name
        self._attributes = attributes
        self._span: Any = None
        self._token: object = None
        self._recorded = False
        self._reset: contextvars.Token[DecisionObserver | None] | None = None

    def __enter__(self) -> DecisionObserver:
        if self._i is not None and self._outer is None:
            self._span, self._token = self._i.start(
                self._name, self._i.server_kind, self._attributes
            )
            self._reset = _current_decision.set(self)
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
            _current_decision.reset(self._reset)
        i.context.detach(self._token)
        if exc is not None:
            self._span.set_attribute("error.type", type(exc).__name__)
            self._span.set_status(i.status(i.error, type(exc).__name__))
            if not self._recorded:
                record_decision("error", "exception")
        self._span.end()

    def outcome(
        self,
        outcome: str,
        reason: str | None = None,
        *,
        status: int | None = None,
        limit_scope: str | None = None,
    ) -> None:
        """Record the decision on the span and in the metrics (see `record_decision`).

        Args:
            outcome: ``minted``, ``denied``, ``limited``, ``invalid``, ``upstream_error``...
            reason: A short snake_case code.
            status: The HTTP status answered.
            limit_scope: For ``limited``: ``caller`` or ``global``.
        """
        if self._outer is not None:
            self._outer.outcome(outcome, reason, status=status, limit_scope=limit_scope)
            return
        if self._recorded:
            return  # once per decision, however many hooks report it
        self._recorded = True
        span, i = self._span, self._i
        if i is not None and span is not None and span.is_recording():
            span.set_attribute("gemini_tokens.outcome", _outcome_value(outcome))
            span.set_attribute("gemini_tokens.reason", _reason_value(reason))
            if status is not None:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(i.status(i.error))
        record_decision(outcome, reason, limit_scope=limit_scope)


_current_decision: contextvars.ContextVar[DecisionObserver | None] = contextvars.ContextVar(
    "gemini_tokens_decision", default=None
)


def observe_audit_event(event: Any) -> None:
    """Record a broker `AuditEvent`: on the current decision span, and in the metrics.

    `TokenBroker` calls it for every event it emits. Inside a `decision` span (as
    ``gemini-tokens serve`` opens one per request, so that the mint span is its child) the
    outcome goes on that span; otherwise a span of its own is recorded for the decision,
    spanning its ``latency_ms``. Reported twice, a decision still counts once.
    """
    instruments = _get()
    if instruments is None or instruments.idle():
        return
    reason = getattr(event, "reason", None)
    outcome = getattr(event, "outcome", "other")
    status = getattr(event, "status", None)
    scope = None
    if outcome == "limited" and isinstance(reason, str) and reason.endswith("_limit"):
        # ``global_limit`` is the API key's budget; every other limit (``caller_limit``,
        # ``renewal_limit``) is one caller's.
        scope = "global" if reason == "global_limit" else "caller"
    current = _current_decision.get()
    if current is not None:
        current.outcome(outcome, reason, status=status, limit_scope=scope)
        return
    latency = getattr(event, "latency_ms", 0.0)
    now = time.time_ns()
    span = instruments.tracer.start_span(
        "gemini_tokens.broker.decision",
        kind=instruments.server_kind,
        start_time=now - int(max(0.0, latency) * 1_000_000),
    )
    if span.is_recording():
        span.set_attribute("gemini_tokens.outcome", _outcome_value(outcome))
        span.set_attribute("gemini_tokens.reason", _reason_value(reason))
        if isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(instruments.status(instruments.error))
    span.end(end_time=now)
    record_decision(outcome, reason, limit_scope=scope)


def decision(
    method: str | None = None,
    route: str | None = None,
    *,
    name: str = "gemini_tokens.broker.decision",
) -> DecisionObserver:
    """A span around one broker decision: ``with decision("POST", "/token") as d: ...``.

    Call ``d.outcome(...)`` once the decision is known. The span of a token minted inside
    becomes its child.
    """
    attributes: dict[str, Any] = {}
    if method is not None:
        attributes["http.request.method"] = method
    if route is not None:
        attributes["http.route"] = route
    return DecisionObserver(name, attributes)


def record_decision(
    outcome: str, reason: str | None = None, *, limit_scope: str | None = None
) -> None:
    """Count one broker decision (and a limiter rejection, when ``outcome`` is ``limited``).

    Args:
        outcome: ``minted``, ``denied``, ``limited``, ``invalid``, ``upstream_error``...
        reason: A short snake_case code (free text is counted as ``other``: metric
            attributes stay low-cardinality).
        limit_scope: For ``limited`` by a rate limit: ``caller`` or ``global``.
    """
    instruments = _get()
    if instruments is None or instruments.idle():
        return
    attributes = {
        "gemini_tokens.outcome": _outcome_value(outcome),
        "gemini_tokens.reason": _reason_value(reason),
    }
    instruments.decisions.add(1, attributes)
    if outcome == "limited" and limit_scope in ("caller", "global"):
        # (A limiter whose storage is down refuses too, but that is not a rejection.)
        instruments.rejections.add(1, {"gemini_tokens.limit.scope": limit_scope})
