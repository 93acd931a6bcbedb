"""The service's OpenTelemetry set-up: the SDK, OTLP export when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, and Prometheus' ``/metrics`` when ``[server]
metrics = true``. (What is recorded is the library's and the broker's own instrumentation.)
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gemini_tokens import ConfigurationError, __version__
from gemini_tokens.serve._settings import ServeSettings

__all__ = ["prometheus_handler", "setup_telemetry"]


def _missing(what: str) -> ConfigurationError:
    return ConfigurationError(f"{what} needs the serve extra: pip install 'gemini-tokens[serve]'")


def prometheus_handler() -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
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
