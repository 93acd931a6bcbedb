"""``gemini-tokens serve``'s app and its life: the broker, health, readiness, metrics.

`build_app` mounts the `TokenBroker` (made by `_build.build_broker`) at ``[server] path``
next to ``/healthz``, ``/readyz`` and, optionally, ``/metrics``, with an access log line per
request and an OpenTelemetry span per decision; `serve` listens until SIGTERM (or Ctrl-C),
then stops accepting, lets in-flight requests finish (``shutdown_timeout``), cuts off the
decisions still waiting (503, audited) and exits, all within about a second more than
``shutdown_timeout``; `run` is `serve` with the logs and telemetry set up, for the command
line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from gemini_tokens import AsyncClient
from gemini_tokens.broker import (
    AuditEvent,
    AuditSink,
    JWTAuthorizer,
    TokenBroker,
    decision_span,
    error_body,
    log_audit_event,
)
from gemini_tokens.broker.aiohttp import add_routes
from gemini_tokens.serve._build import AUDITED, build_broker_with_sink, client_for
from gemini_tokens.serve._logging import configure_logging
from gemini_tokens.serve._settings import ServeSettings
from gemini_tokens.serve._telemetry import prometheus_handler, setup_telemetry

__all__ = ["build_app", "run", "serve"]

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


_BROKER = web.AppKey("gemini_tokens_broker", TokenBroker)
_STATE = web.AppKey("gemini_tokens_serve_state", dict)


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
        mark = AUDITED.set(audited)
        try:
            task = asyncio.ensure_future(in_span())  # a copy of this context, the mark in it
        finally:
            AUDITED.reset(mark)
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
    broker, audit, close_audit = build_broker_with_sink(settings, client=client)
    metrics_handler = prometheus_handler() if settings.server.metrics else None
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
