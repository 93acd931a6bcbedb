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
  ``gemini_tokens.uses``; an event ``gemini_tokens.attempt_failed`` per failed attempt;
- metrics: ``gemini_tokens.mint.duration`` (histogram, s) and ``gemini_tokens.mint.attempts``
  (counter, by ``gemini_tokens.attempt.outcome``).

The broker's decisions are its own (`gemini_tokens.broker`'s ``_telemetry``). Only the API's
public names are used: before the application sets an SDK, the API's tracer and meter are
its own no-ops, which cost a few microseconds a mint (the mint costs hundreds).

Never a token name or an API key in an attribute: metric attributes take values from small
fixed sets (and the model name the application configured).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from gemini_tokens._errors import APIError, APIStatusError, APITimeoutError, InvalidResponseError

__all__ = ["MintObserver", "enabled", "mint"]

T = TypeVar("T")

INSTRUMENTATION_NAME = "gemini_tokens"
PROVIDER = "gcp.gemini"  # the GenAI semantic conventions' name for the Gemini Developer API
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class _Instruments:
    """The API's modules, the tracer and the instruments (the API's no-ops until the
    application sets an SDK's providers; they record from then on)."""

    def __init__(self) -> None:
        from opentelemetry import context, metrics, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from gemini_tokens._version import __version__

        self.context = context
        self.trace = trace
        self.client_kind = SpanKind.CLIENT
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

    def start(self, name: str, kind: Any, attributes: dict[str, Any]) -> tuple[Any, object]:
        """A started span, made current; and the token that `stop` detaches."""
        span = self.tracer.start_span(name, kind=kind, attributes=attributes)
        return span, self.context.attach(self.trace.set_span_in_context(span))


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
    """Whether ``opentelemetry-api`` is installed (spans and metrics are recorded once the
    application sets an SDK)."""
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

    Without ``opentelemetry-api`` this is one shared object whose methods do nothing.
    """
    instruments = _get()
    if instruments is None:
        return _NULL_MINT
    return MintObserver(instruments, model, uses)
