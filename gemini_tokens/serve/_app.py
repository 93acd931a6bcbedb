"""``gemini-tokens serve``: the broker as a standalone aiohttp service, from `ServeSettings`.

`build_broker` turns the settings into a `TokenBroker` (JWT or ``module:function``
authorizer, one policy or several chosen by a caller attribute, limits, audit sink);
`build_app` serves it next to ``/healthz``, ``/readyz`` and, optionally, ``/metrics``, with
structured access logs and an OpenTelemetry span per decision; `run` listens until SIGTERM
(or Ctrl-C), then stops accepting, lets in-flight requests finish (``shutdown_timeout``),
cuts off the decisions still waiting (503, audited) and exits, all within about a second
more than ``shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from gemini_tokens import AsyncClient, ConfigurationError, __version__
from gemini_tokens.broker import (
    AuditEvent,
    AuditSink,
    Authorize,
    BrokerRequest,
    Caller,
    Denied,
    JWTAuthorizer,
    Policy,
    PolicySource,
    TokenBroker,
    decision_span,
    error_body,
    log_audit_event,
)
from gemini_tokens.broker.aiohttp import add_routes
from gemini_tokens.serve._settings import ServeSettings, SettingsError, SettingsProblem

__all__ = [
    "JsonFormatter",
    "JsonLinesSink",
    "allow_everyone",
    "build_app",
    "build_broker",
    "client_for",
    "load_authorizer",
    "run",
    "serve",
    "setup_telemetry",
]

logger = logging.getLogger("gemini_tokens.serve")
access_logger = logging.getLogger("gemini_tokens.serve.access")

#: Seconds a readiness answer is reused (probes every few seconds must not hammer Google).
READY_CACHE_SECONDS = 5.0
UPSTREAM_PROBE_TIMEOUT = 3.0
#: After ``shutdown_timeout``: seconds the cut-off answers get to be written, then seconds
#: aiohttp gets per step of its own shutdown (it waits for handlers, cancels them, waits
#: again: twice its timeout in all, which is why the drain is done here, not by aiohttp).
CUT_OFF_FLUSH_SECONDS = 0.3
AIOHTTP_SHUTDOWN_SECONDS = 0.2
#: What a caller whose decision was cut off, or refused while draining, is told.
SHUTTING_DOWN = "shutting down"
CUT_OFF = "the service is shutting down; try again"

#: Set in a decision's context: appended to when the audit sink records the decision, so
#: that a decision cut off at shutdown is audited once, by the broker or else by the service.
_AUDITED: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "gemini_tokens_serve_audited", default=None
)

_BROKER = web.AppKey("gemini_tokens_broker", TokenBroker)
_STATE = web.AppKey("gemini_tokens_serve_state", dict)


class JsonLinesSink:
    """An audit sink appending one JSON object per line to a file (flushed per event).

    Args:
        path: The file; created if missing, appended to otherwise.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # Line-buffered: each event reaches the file whole, even if the process dies.
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def __call__(self, event: AuditEvent) -> None:
        self._file.write(json.dumps(event.to_dict(), separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _policy_source(settings: ServeSettings) -> PolicySource:
    if settings.policies is None:
        assert settings.policy is not None
        return settings.policy
    policies = dict(settings.policies.tables)
    claim = settings.policies.claim
    default = settings.policies.default

    def choose(caller: Caller) -> Policy:
        value = caller.attributes.get(claim)
        if isinstance(value, str) and value in policies:
            return policies[value]
        if default is not None:
            return policies[default]
        raise Denied(403, f"no token policy for your {claim}")

    return choose


def _audit_sink(settings: ServeSettings) -> tuple[Callable[[AuditEvent], None], Callable[[], None]]:
    """The audit sink, and its closer. (The broker itself reports each event to
    OpenTelemetry.) The sink marks the decision in whose context it runs as audited."""
    sink: Callable[[AuditEvent], None]
    close: Callable[[], None] = lambda: None  # noqa: E731
    if settings.audit.sink == "jsonl":
        assert settings.audit.path is not None
        try:
            jsonl = JsonLinesSink(settings.audit.path)
        except OSError as exc:
            rule = f"cannot be opened: {exc.strerror or exc}"
            raise SettingsError(SettingsProblem(settings.source, "audit.path", rule)) from None
        sink, close = jsonl, jsonl.close
    else:
        sink = log_audit_event
    inner = sink

    def audit(event: AuditEvent) -> None:
        audited = _AUDITED.get()
        if audited is not None:
            audited.append(True)
        inner(event)

    return audit, close


def client_for(settings: ServeSettings) -> AsyncClient:
    """The `AsyncClient` of ``[upstream]`` (the key from ``GEMINI_API_KEY``).

    Raises:
        ConfigurationError: no API key, or an unusable base URL.
    """
    upstream = settings.upstream
    options: dict[str, Any] = {}
    if upstream.timeout is not None:
        options["timeout"] = upstream.timeout
    if upstream.max_retries is not None:
        options["max_retries"] = upstream.max_retries
    return AsyncClient(
        base_url=upstream.base_url, allow_insecure_http=upstream.allow_insecure_http, **options
    )


def build_broker(
    settings: ServeSettings, *, client: AsyncClient | None = None
) -> tuple[TokenBroker, Callable[[], None]]:
    """The `TokenBroker` the settings describe, and a function closing its audit file.

    Raises:
        ConfigurationError: no API key, an authorizer that cannot be imported, ...
    """
    broker, _, close_audit = _build_broker(settings, client=client)
    return broker, close_audit


def _build_broker(
    settings: ServeSettings, *, client: AsyncClient | None = None
) -> tuple[TokenBroker, AuditSink, Callable[[], None]]:
    """`build_broker`, and the audit sink (the service audits its own cut-offs to it)."""
    authorize: Authorize
    if settings.auth.jwt is not None:
        authorize = JWTAuthorizer(settings.auth.jwt)
    else:
        assert settings.auth.authorizer is not None
        authorize = load_authorizer(settings.auth.authorizer)
    if client is None:
        client = client_for(settings)
    audit, close_audit = _audit_sink(settings)
    broker = TokenBroker(
        authorize=authorize,
        policy=_policy_source(settings),
        rate_limits=settings.limits.per_caller,
        global_rate_limits=settings.limits.global_,
        storage_uri=settings.limits.storage,
        allowed_origins=settings.server.allowed_origins,
        audit=audit,
        client=client,
        on_limiter_error=settings.limits.on_storage_error,
        renewal=settings.renewal.enabled,
        secret=settings.renewal.secret,
        renewal_rate_limits=settings.renewal.rate_limits,
        # Budgets, and suspensions an operator sets with `serve suspend` (GET <path>/usage).
        live_minutes=settings.limits.live_minutes,
        global_live_minutes=settings.limits.global_live_minutes,
        suspensions=True,
    )
    return broker, audit, close_audit


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


class _Readiness:
    """``/readyz``: the limiter's storage, the token service and the JWKS, cached briefly."""

    def __init__(self, broker: TokenBroker, client: AsyncClient, settings: ServeSettings):
        self._broker = broker
        self._client = client
        self._settings = settings
        self._cached: tuple[float, dict[str, bool]] | None = None
        self._lock = asyncio.Lock()

    async def checks(self) -> dict[str, bool]:
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < READY_CACHE_SECONDS:
                return self._cached[1]
            results = await asyncio.gather(self._storage(), self._upstream(), self._keys())
            checks = {"storage": results[0], "upstream": results[1], "jwks": results[2]}
            self._cached = (time.monotonic(), checks)
            return checks

    async def _storage(self) -> bool:
        return await self._broker.check_storage()

    async def _upstream(self) -> bool:
        """Whether the token service answers HTTP at all (any status: it is up)."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=UPSTREAM_PROBE_TIMEOUT)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self._client.base_url + "/", allow_redirects=False) as response,
            ):
                return response.status < 600
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    async def _keys(self) -> bool:
        authorize = self._broker.authorize
        if isinstance(authorize, JWTAuthorizer):
            return await authorize.keys.check()
        return True


def _access_log(request: web.Request, status: int, started: float) -> None:
    if not access_logger.isEnabledFor(logging.INFO):
        return
    # The path only: no query string, no headers (Authorization, cookies), no body.
    access_logger.info(
        "%s",
        json.dumps(
            {
                "method": request.method,
                "path": request.path,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "remote": request.remote,
            },
            separators=(",", ":"),
        ),
    )


def _cors_headers(request: web.Request, settings: ServeSettings) -> dict[str, str]:
    """The broker's CORS headers for an answer the service gives itself (a page must be
    able to read a 503 and its ``Retry-After``)."""
    origin = request.headers.get("Origin")
    allowed = settings.server.allowed_origins
    if origin is None or not ("*" in allowed or origin in allowed):
        return {"Vary": "Origin"}
    return {
        "Vary": "Origin",
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "Retry-After",
    }


def build_app(
    settings: ServeSettings,
    broker: TokenBroker,
    client: AsyncClient,
    *,
    metrics_handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
    audit: AuditSink | None = None,
) -> web.Application:
    """The aiohttp application: the broker at ``settings.server.path``, health, readiness,
    metrics.

    ``audit`` is the sink the service records its own answers to a token request in (one
    refused while draining, one cut off at shutdown); default: the audit log.
    """
    #: decisions: the token requests being decided, which `serve` cuts off at the deadline;
    #: cut_off: those it cut off; idle: set when nothing is in flight while draining.
    state: dict[str, Any] = {
        "draining": False,
        "in_flight": 0,
        "decisions": set(),
        "cut_off": set(),
        "idle": asyncio.Event(),
    }
    readiness = _Readiness(broker, client, settings)
    token_path = settings.server.path
    sink: AuditSink = log_audit_event if audit is None else audit

    async def record(request: web.Request, started: float, reason: str, detail: str) -> None:
        """One audit event for a token request the service answered itself (503)."""
        event = AuditEvent(
            time=dt.datetime.now(dt.timezone.utc)
            - dt.timedelta(seconds=time.perf_counter() - started),
            # Cut off: the token service had not answered in time. Refused while draining:
            # turned away for a moment (503, Retry-After), as when the limiter is down.
            outcome="upstream_error" if reason == "shutdown_cut_off" else "limited",
            reason=reason,
            status=503,
            detail=detail,
            client_address=request.remote,
            origin=request.headers.get("Origin"),
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        try:
            result = sink(event)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            logger.exception("gemini-tokens serve: the audit sink raised; the event was lost")

    def unavailable(request: web.Request, message: str) -> web.Response:
        return web.Response(
            body=error_body(503, message),
            status=503,
            content_type="application/json",
            headers={
                "Connection": "close",
                "Retry-After": "1",
                "Cache-Control": "no-store",
                **_cors_headers(request, settings),
            },
        )

    async def decide(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        started: float,
    ) -> web.StreamResponse:
        """The broker's decision in a task of its own, which `serve` may cut off: the
        caller then gets a 503 (no answer had started), audited once."""

        async def in_span() -> web.StreamResponse:
            with decision_span(request.method, token_path):
                return await handler(request)

        audited: list[bool] = []
        mark = _AUDITED.set(audited)
        try:
            task = asyncio.ensure_future(in_span())  # a copy of this context, the mark in it
        finally:
            _AUDITED.reset(mark)
        state["decisions"].add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if task not in state["cut_off"]:
                raise
            if not audited:
                await record(request, started, "shutdown_cut_off", CUT_OFF)
            return unavailable(request, CUT_OFF)
        finally:
            state["decisions"].discard(task)
            state["cut_off"].discard(task)

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        is_decision = request.path.rstrip("/") == token_path and request.method != "OPTIONS"
        if state["draining"] and request.path not in ("/healthz", "/readyz"):
            # A request on a kept-alive connection after SIGTERM: refused, and told why.
            status = 503
            _access_log(request, status, started)
            if is_decision:
                await record(request, started, "shutting_down", SHUTTING_DOWN)
            return unavailable(request, SHUTTING_DOWN)
        state["in_flight"] += 1
        try:
            if is_decision:
                response = await decide(request, handler, started)
            else:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            state["in_flight"] -= 1
            if state["draining"] and not state["in_flight"]:
                state["idle"].set()
            _access_log(request, status, started)

    async def healthz(request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if state["draining"]:
            return _json(503, {"status": "draining"})
        checks = await readiness.checks()
        ok = all(checks.values())
        return _json(200 if ok else 503, {"status": "ready" if ok else "not ready", **checks})

    app = web.Application(middlewares=[middleware], client_max_size=64 * 1024)
    app[_BROKER] = broker
    app[_STATE] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics_handler is not None:
        app.router.add_get("/metrics", metrics_handler)
    add_routes(app, broker, path=token_path)
    return app


def _missing(what: str) -> ConfigurationError:
    return ConfigurationError(f"{what} needs the serve extra: pip install 'gemini-tokens[serve]'")


def _prometheus_handler() -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    except ImportError:
        raise _missing("[server] metrics = true") from None

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def setup_telemetry(settings: ServeSettings) -> Callable[[], None]:
    """The OpenTelemetry SDK: OTLP export when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set,
    a Prometheus reader for ``/metrics`` when ``[server] metrics = true``.

    Returns:
        A function that flushes and shuts the providers down (a no-op if none was set).

    Raises:
        ConfigurationError: the SDK or an exporter is not installed.
    """
    otlp = bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if not otlp and not settings.metrics:
        return lambda: None
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise _missing("OpenTelemetry export") from None

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", "gemini-tokens-broker"),
            "service.version": __version__,
        }
    )
    readers: list[Any] = []
    tracer_provider = None
    if otlp:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        except ImportError:
            raise _missing("OTEL_EXPORTER_OTLP_ENDPOINT") from None

        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(tracer_provider)
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if settings.metrics:
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
        except ImportError:
            raise _missing("[server] metrics = true") from None

        readers.append(PrometheusMetricReader())
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(meter_provider)

    def shutdown() -> None:
        if tracer_provider is not None:
            tracer_provider.shutdown()
        meter_provider.shutdown()

    return shutdown


async def serve(
    settings: ServeSettings,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM / SIGINT), then shut down gracefully.

    Args:
        settings: The checked settings.
        ready: Called with the base URL once listening.
        stop: An event that stops the service (default: one set by SIGTERM and SIGINT).
    """
    client = client_for(settings)
    broker, audit, close_audit = _build_broker(settings, client=client)
    metrics_handler = _prometheus_handler() if settings.server.metrics else None
    app = build_app(settings, broker, client, metrics_handler=metrics_handler, audit=audit)

    async def close_client(app: web.Application) -> AsyncIterator[None]:
        yield
        await client.close()
        close_audit()

    app.cleanup_ctx.append(close_client)
    # The drain is ours (`_drain`); aiohttp's own shutdown only closes what is left.
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=AIOHTTP_SHUTDOWN_SECONDS
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.server.host, settings.server.port, reuse_address=True)
        await site.start()
        host, port = runner.addresses[0][:2]
        netloc = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        url = f"http://{netloc}"
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(signum, stop.set)
        logger.info(
            "gemini-tokens serve: listening on %s%s",
            url,
            settings.server.path,
            extra={"url": url, "path": settings.server.path},
        )
        if ready is not None:
            ready(url)
        await stop.wait()
        # New connections are refused at once (the load balancer moves on); requests on
        # connections already open are answered 503 by the middleware.
        await site.stop()
        await _drain(app[_STATE], settings.server.shutdown_timeout)
    finally:
        # What is left: idle connections, requests that are not decisions (a readiness
        # probe), then the cleanups (the client, the audit file).
        await runner.cleanup()
    logger.info("gemini-tokens serve: stopped")


async def _drain(state: dict[str, Any], timeout: float) -> None:
    """Let the requests in flight finish for up to ``timeout`` seconds, then cut off the
    decisions still waiting (each answered 503 with ``Retry-After``, and audited)."""
    state["draining"] = True
    logger.info(
        "gemini-tokens serve: stopping; %d request(s) in flight get up to %gs",
        state["in_flight"],
        timeout,
    )
    idle: asyncio.Event = state["idle"]
    if not state["in_flight"]:
        idle.set()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(idle.wait(), timeout)
    decisions = list(state["decisions"])
    if not decisions:
        return
    logger.warning(
        "gemini-tokens serve: cutting off %d decision(s) still waiting after %gs",
        len(decisions),
        timeout,
    )
    for task in decisions:
        state["cut_off"].add(task)
        task.cancel()
    with contextlib.suppress(asyncio.TimeoutError):  # the 503s written
        await asyncio.wait_for(idle.wait(), CUT_OFF_FLUSH_SECONDS)


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message (and its extras)."""

    _PLAIN = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message",
        "asctime",
        "taskName",
    }

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        message = record.getMessage()
        if message.startswith("{"):
            try:
                entry.update(json.loads(message))
            except ValueError:
                entry["message"] = message
        else:
            entry["message"] = message
        for key, value in vars(record).items():
            if key not in self._PLAIN and key not in entry:
                entry[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), default=str)


def configure_logging() -> None:
    """JSON lines on stderr at INFO for the library's loggers (the audit log included)."""
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger("gemini_tokens")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def run(settings: ServeSettings) -> int:
    """Run the service in this process until SIGTERM; returns the exit status."""
    configure_logging()
    shutdown_telemetry = setup_telemetry(settings)

    def ready(url: str) -> None:
        print(f"gemini-tokens serve: listening on {url}{settings.server.path}", flush=True)

    try:
        asyncio.run(serve(settings, ready=ready))
    except OSError as exc:
        print(
            f"gemini-tokens serve: cannot listen on {settings.server.host}:{settings.server.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        shutdown_telemetry()
    return 0


async def allow_everyone(request: BrokerRequest) -> Caller:
    """``--dev`` without a config file: every caller gets in, named by its address."""
    return Caller(id=f"dev:{request.client_address or 'local'}")


def load_authorizer(spec: str) -> Callable[..., Any]:
    """A ``module:function`` authorizer, imported.

    Raises:
        ConfigurationError: not ``module:attribute``, not importable, or not callable.
    """
    import importlib

    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(
            f"authorizer: {spec!r} must be 'module:function', e.g. 'myapp.auth:authorize'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"authorizer: cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                f"authorizer: {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise ConfigurationError(f"authorizer: {spec!r} is not callable")
    return target  # type: ignore[no-any-return]
