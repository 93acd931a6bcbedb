"""OpenTelemetry: the spans and metrics of `AsyncClient.create`, read with the SDK's in-memory
exporter and reader, against the emulator; and nothing at all without ``opentelemetry-api``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk: pip install -e '.[test]'")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import gemini_tokens
from gemini_tokens.testing import Emulator

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


class Telemetry:
    """The process's one tracer and meter provider (OpenTelemetry allows setting them once)."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader(
            preferred_temporality={
                Counter: AggregationTemporality.DELTA,
                Histogram: AggregationTemporality.DELTA,
            }
        )
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[self.reader]))

    def reset(self) -> None:
        self.spans.clear()
        self.reader.get_metrics_data()  # delta temporality: the next read starts from here

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def read(self) -> dict[str, list[Any]]:
        """Metric name -> the data points of the library's metrics since the last read (one
        read: with delta temporality, reading again starts afresh)."""
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                if scope.scope.name != "gemini_tokens":
                    continue
                for m in scope.metrics:
                    found.setdefault(m.name, []).extend(m.data.data_points)
        return found

    @staticmethod
    def decisions(points: dict[str, list[Any]]) -> dict[tuple[str, str], int]:
        """(outcome, reason) -> count, from the broker's decision counter in ``points``."""
        return {
            (p.attributes["gemini_tokens.outcome"], p.attributes["gemini_tokens.reason"]): p.value
            for p in points["gemini_tokens.broker.decisions"]
        }

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of each data point of ``metric`` since the last read."""
        return [(dict(p.attributes or {}), p) for p in self.read().get(metric, [])]

    def all_metric_attributes(self) -> list[dict[str, Any]]:
        data = self.reader.get_metrics_data()
        return [
            dict(p.attributes or {})
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for m in scope.metrics
            for p in m.data.data_points
        ]


_telemetry: Telemetry | None = None


def telemetry_once() -> Telemetry:
    global _telemetry
    if _telemetry is None:
        _telemetry = Telemetry()
    return _telemetry


@pytest.fixture(name="otel")
def otel_fixture() -> Iterator[Telemetry]:
    telemetry = telemetry_once()
    telemetry.reset()
    yield telemetry
    telemetry.reset()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator() as emu:
        yield emu


@pytest.fixture
def instant_retries() -> Iterator[None]:
    gemini_tokens.set_testing(True)
    yield
    gemini_tokens.set_testing(False)


def _counts(points: list[tuple[dict[str, Any], Any]], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for attributes, point in points:
        counts[attributes[key]] = counts.get(attributes[key], 0) + point.value
    return counts


async def test_a_minted_token_makes_one_client_span_and_its_metrics(
    otel: Telemetry, emulator: Emulator
) -> None:
    async with gemini_tokens.AsyncClient(emulator.api_key, base_url=emulator.base_url) as client:
        await client.create(uses=2, live_connect_constraints={"model": f"models/{MODEL}"})

    (span,) = otel.finished()
    assert span.name == "gemini_tokens.create"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": MODEL,  # without the models/ prefix
        "gemini_tokens.uses": 2,
        "gemini_tokens.attempts": 1,
        "http.response.status_code": 200,
    }
    assert span.events == ()

    durations = otel.points("gemini_tokens.mint.duration")
    # (one read returns every metric: read the attempts from a fresh run below)
    assert len(durations) == 1
    attributes, point = durations[0]
    assert attributes == {"gen_ai.provider.name": "gcp.gemini", "gen_ai.request.model": MODEL}
    assert point.count == 1
    assert 0 < point.sum < 30


async def test_each_attempt_is_counted_by_outcome(otel: Telemetry, emulator: Emulator) -> None:
    async with gemini_tokens.AsyncClient(emulator.api_key, base_url=emulator.base_url) as client:
        await client.create()
        await client.create()
    points = otel.points("gemini_tokens.mint.attempts")
    assert _counts(points, "gemini_tokens.attempt.outcome") == {"ok": 2}
    # No model given: the model attribute is absent, not empty.
    assert all("gen_ai.request.model" not in a for a, _ in points)


@pytest.mark.usefixtures("instant_retries")
async def test_a_retried_mint_records_the_reason_the_attempts_and_the_final_status(
    otel: Telemetry, emulator: Emulator
) -> None:
    emulator.fail_next(503)
    async with gemini_tokens.AsyncClient(emulator.api_key, base_url=emulator.base_url) as client:
        await client.create(live_connect_constraints={"model": MODEL})

    (span,) = otel.finished("gemini_tokens.create")
    attributes = dict(span.attributes or {})
    assert attributes["gemini_tokens.attempts"] == 2
    assert list(attributes["gemini_tokens.retry_reasons"]) == ["503"]
    assert attributes["http.response.status_code"] == 200
    assert "error.type" not in attributes
    (event,) = span.events
    assert event.name == "gemini_tokens.attempt_failed"
    assert dict(event.attributes or {}) == {"gemini_tokens.attempt": 1, "error.type": "503"}

    data = otel.reader.get_metrics_data()
    by_name = {
        m.name: m
        for r in data.resource_metrics
        for s in r.scope_metrics
        if s.scope.name == "gemini_tokens"
        for m in s.metrics
    }
    attempts = [
        (dict(p.attributes or {}), p)
        for p in by_name["gemini_tokens.mint.attempts"].data.data_points
    ]
    assert _counts(attempts, "gemini_tokens.attempt.outcome") == {"503": 1, "ok": 1}
    (duration,) = by_name["gemini_tokens.mint.duration"].data.data_points
    assert duration.count == 1  # one mint, however many attempts
    assert "error.type" not in (duration.attributes or {})


@pytest.mark.usefixtures("instant_retries")
async def test_a_mint_that_fails_for_good_is_an_error_span(
    otel: Telemetry, emulator: Emulator
) -> None:
    emulator.fail_next(503, times=3)
    async with gemini_tokens.AsyncClient(emulator.api_key, base_url=emulator.base_url) as client:
        with pytest.raises(gemini_tokens.ServerError):
            await client.create(live_connect_constraints={"model": MODEL})

    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert attributes["gemini_tokens.attempts"] == 3
    # The third failure is the call's error, not a reason for a retry.
    assert list(attributes["gemini_tokens.retry_reasons"]) == ["503", "503"]
    assert attributes["http.response.status_code"] == 503
    assert attributes["error.type"] == "503"
    assert span.status.status_code is StatusCode.ERROR
    assert (span.status.description or "").startswith("ServerError: 503")
    assert len(span.events) == 3

    (duration,) = otel.points("gemini_tokens.mint.duration")
    assert duration[0]["error.type"] == "503"


@pytest.mark.usefixtures("instant_retries")
async def test_an_unreachable_service_is_a_connection_error_without_a_status(
    otel: Telemetry, unused_tcp_port: int
) -> None:
    async with gemini_tokens.AsyncClient(
        "some-key", base_url=f"http://127.0.0.1:{unused_tcp_port}", max_retries=1
    ) as client:
        with pytest.raises(gemini_tokens.APIConnectionError):
            await client.create()
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert list(attributes["gemini_tokens.retry_reasons"]) == ["connection_error"]
    assert "http.response.status_code" not in attributes
    assert attributes["error.type"] == "APIConnectionError"


async def test_a_refused_request_is_not_a_span(otel: Telemetry, emulator: Emulator) -> None:
    """Bad input raises before anything is sent: no mint was tried, none is recorded."""
    async with gemini_tokens.AsyncClient(emulator.api_key, base_url=emulator.base_url) as client:
        with pytest.raises(gemini_tokens.ValidationError):
            await client.create(uses=-1)
    assert otel.finished() == []
    assert otel.points("gemini_tokens.mint.duration") == []


async def test_the_mint_span_is_a_child_of_the_callers_span(
    otel: Telemetry, emulator: Emulator
) -> None:
    tracer = trace.get_tracer("app")
    async with gemini_tokens.AsyncClient(emulator.api_key, base_url=emulator.base_url) as client:
        with tracer.start_as_current_span("handler") as parent:
            await client.create()
            # ... and the caller's span is current again afterwards.
            assert trace.get_current_span() is parent
    mint = otel.finished("gemini_tokens.create")[0]
    assert mint.parent is not None
    assert mint.parent.span_id == parent.get_span_context().span_id


@pytest.mark.usefixtures("instant_retries")
async def test_no_secret_in_any_span_or_metric(otel: Telemetry, emulator: Emulator) -> None:
    emulator.fail_next(400, body={"error": {"code": 400, "message": "bad", "status": "X"}})
    emulator.fail_next(503)
    names = []
    async with gemini_tokens.AsyncClient(emulator.api_key, base_url=emulator.base_url) as client:
        with pytest.raises(gemini_tokens.BadRequestError):
            await client.create()
        names.append((await client.create(live_connect_constraints={"model": MODEL})).name)
    async with gemini_tokens.AsyncClient("wrong-key-123", base_url=emulator.base_url) as client:
        with pytest.raises(gemini_tokens.APIStatusError):
            await client.create()
    secrets = [emulator.api_key, "wrong-key-123", *names, *(n.split("/", 1)[1] for n in names)]
    dumped = json.dumps(
        [json.loads(s.to_json()) for s in otel.finished()] + otel.all_metric_attributes()
    )
    assert "gemini_tokens.create" in dumped
    for secret in secrets:
        assert secret not in dumped


async def test_spans_end_and_context_is_restored_on_cancellation(
    otel: Telemetry, emulator: Emulator
) -> None:
    import asyncio

    emulator.delay_next(5)
    async with gemini_tokens.AsyncClient(emulator.api_key, base_url=emulator.base_url) as client:
        task = asyncio.ensure_future(client.create())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (span,) = otel.finished()
    assert dict(span.attributes or {})["error.type"] == "CancelledError"
    assert span.status.description == "CancelledError"  # the class only, never a message
    assert trace.get_current_span() is trace.INVALID_SPAN


ABSENT = textwrap.dedent(
    """
    import asyncio, importlib.abc, json, sys

    class NoOtel(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, NoOtel())
    import gemini_tokens
    from gemini_tokens import _instrumentation
    from gemini_tokens.broker import _telemetry
    from gemini_tokens.testing import Emulator

    async def main():
        async with Emulator() as emu:
            async with gemini_tokens.AsyncClient(emu.api_key, base_url=emu.base_url) as c:
                token = await c.create(live_connect_constraints={"model": "m"})
        observer = _instrumentation.mint("m")
        attempt = object()
        with _telemetry.decision_span("POST", "/token") as d:
            d.outcome("minted", "ok", status=200)
        _telemetry.record_decision("limited", "caller_limit")
        print(json.dumps({
            "minted": token.name.startswith("auth_tokens/"),
            "enabled": _instrumentation.enabled(),
            "shared": observer is _instrumentation.mint("other"),
            "unwrapped": observer.wrap(attempt) is attempt,
            "loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
        }))

    asyncio.run(main())
    """
)


def test_without_opentelemetry_nothing_is_recorded_and_minting_works() -> None:
    out = subprocess.run(
        [sys.executable, "-c", ABSENT],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {
        "minted": True,
        "enabled": False,
        "shared": True,
        "unwrapped": True,
        "loaded": [],
    }


def test_importing_the_library_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, gemini_tokens; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


IDLE = textwrap.dedent(
    """
    import asyncio, json
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from gemini_tokens import _instrumentation
    from gemini_tokens.broker import decision_span

    def recording(observer):
        with observer:
            return trace.get_current_span().is_recording()

    before = recording(_instrumentation.mint("m"))
    with decision_span("POST", "/token") as d:
        d.outcome("minted", "ok")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    after = recording(_instrumentation.mint("m"))
    with decision_span("POST", "/token") as outer:
        with decision_span("POST", "/token") as inner:  # the broker's own
            inner.outcome("denied", "unauthenticated", status=401)
        outer.outcome("denied", "unauthenticated", status=401)  # reported twice: once
    print(json.dumps({
        "before": before,
        "after": after,
        "spans": [s.name for s in exporter.get_finished_spans()],
        "outcome": exporter.get_finished_spans()[-1].attributes["gemini_tokens.outcome"],
    }))
    """
)


def test_nothing_is_recorded_until_the_application_sets_an_sdk() -> None:
    """With the API but no SDK providers, the API's own no-ops: nothing is recorded (and
    nothing reads the API's private globals to find out)."""
    out = subprocess.run(
        [sys.executable, "-c", IDLE], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {
        "before": False,
        "after": True,
        # Only what ran after the SDK was set; one decision, though two hooks opened one.
        "spans": ["gemini_tokens.create", "gemini_tokens.broker.decision"],
        "outcome": "denied",
    }
