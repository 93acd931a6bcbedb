"""OpenTelemetry of an embedded `TokenBroker` (no ``serve``): a span per decision with its
outcome, the decision and rejection counters, for a minted, a denied and a limited caller;
and the broker's telemetry helpers (`decision_span`, `record_decision`, `observe`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk: pip install -e '.[test]'")

from opentelemetry.trace import SpanKind, StatusCode

import gemini_tokens
from gemini_tokens.broker import BrokerRequest, Caller, Denied, Policy, TokenBroker, _telemetry
from gemini_tokens.testing import Emulator

from .test_otel import Telemetry, _counts, otel_fixture  # noqa: F401  (fixture)


async def authorize(request: BrokerRequest) -> Caller:
    user = request.headers.get("x-user")
    if not user:
        raise Denied(401, "sign in first")
    return Caller(id=user)


@pytest.fixture
async def broker() -> AsyncIterator[tuple[TokenBroker, Emulator]]:
    async with Emulator() as emu:
        client = gemini_tokens.AsyncClient(emu.api_key, base_url=emu.base_url)
        broker = TokenBroker(
            authorize=authorize,
            policy=Policy(model="gemini-live", uses=1),
            rate_limits=["1/minute"],
            audit=lambda event: None,
            client=client,
        )
        yield broker, emu
        await client.close()


def ask(user: str | None) -> BrokerRequest:
    headers = {"x-user": user} if user else {}
    return BrokerRequest(method="POST", path="/token", headers=headers)


async def test_each_decision_is_a_span_and_counted(
    broker: tuple[TokenBroker, Emulator], otel: Telemetry
) -> None:
    token_broker, emu = broker
    statuses = [(await token_broker.handle(ask(u))).status for u in ("ann", "ann", None, "bo")]
    assert statuses == [200, 429, 401, 200]

    spans = otel.finished("gemini_tokens.broker.decision")
    assert [
        (s.attributes["gemini_tokens.outcome"], s.attributes["http.response.status_code"])
        for s in spans
    ] == [("minted", 200), ("limited", 429), ("denied", 401), ("minted", 200)]
    assert all(s.kind is SpanKind.SERVER for s in spans)
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)
    # Each span covers the decision's time: it starts before it ends, by its latency.
    assert all(s.end_time >= s.start_time for s in spans)
    assert len(otel.finished("gemini_tokens.create")) == 2

    points = otel.read()
    assert otel.decisions(points) == {
        ("minted", "ok"): 2,
        ("limited", "caller_limit"): 1,
        ("denied", "unauthenticated"): 1,
    }
    (rejection,) = points["gemini_tokens.broker.limiter.rejections"]
    assert (dict(rejection.attributes), rejection.value) == (
        {"gemini_tokens.limit.scope": "caller"},
        1,
    )
    dumped = json.dumps([json.loads(s.to_json()) for s in otel.finished()])
    for secret in ("ann", emu.api_key, *(t.name for t in emu.tokens)):
        assert secret not in dumped


async def test_a_server_side_failure_is_an_error_span(
    broker: tuple[TokenBroker, Emulator], otel: Telemetry
) -> None:
    token_broker, emu = broker
    emu.fail_next(400, body={"error": {"code": 400, "message": "bad key", "status": "X"}})
    response = await token_broker.handle(ask("cy"))
    assert response.status == 500
    (span,) = otel.finished("gemini_tokens.broker.decision")
    assert span.attributes["gemini_tokens.outcome"] == "upstream_error"
    assert span.attributes["gemini_tokens.reason"] == "upstream_refused"
    assert span.status.status_code is StatusCode.ERROR


def test_the_broker_decision_helpers_keep_metric_attributes_low_cardinality(
    otel: Telemetry,
) -> None:
    with _telemetry.decision_span("POST", "/token") as d:
        d.outcome("denied", "Bearer abc.def.ghi is not welcome, user 1234", status=401)
    _telemetry.record_decision("limited", "caller_limit")
    _telemetry.record_decision("weird-outcome", "global_limit")
    (span,) = otel.finished()
    assert span.name == "gemini_tokens.broker.decision"
    assert span.kind is SpanKind.SERVER
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/token",
        "gemini_tokens.outcome": "denied",
        "gemini_tokens.reason": "other",  # free text never becomes an attribute
        "http.response.status_code": 401,
    }
    decisions = otel.reader.get_metrics_data()
    points = {
        (p.attributes["gemini_tokens.outcome"], p.attributes["gemini_tokens.reason"]): p.value
        for r in decisions.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        if m.name == "gemini_tokens.broker.decisions"
        for p in m.data.data_points
    }
    assert points == {
        ("denied", "other"): 1,
        ("limited", "caller_limit"): 1,
        ("other", "global_limit"): 1,
    }


@pytest.mark.parametrize(
    ("reason", "scope"),
    [("caller_limit", "caller"), ("renewal_limit", "caller"), ("global_limit", "global")],
)
def test_every_limited_decision_is_a_limiter_rejection_with_its_scope(
    otel: Telemetry, reason: str, scope: str
) -> None:
    event = SimpleNamespace(outcome="limited", reason=reason, status=429, latency_ms=1.0)
    _telemetry.observe(event)  # type: ignore[arg-type]
    rejections = [
        dict(p.attributes)
        for r in otel.reader.get_metrics_data().resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        if m.name == "gemini_tokens.broker.limiter.rejections"
        for p in m.data.data_points
    ]
    assert rejections == [{"gemini_tokens.limit.scope": scope}]


def test_a_decision_that_raises_is_an_error_span_counted_once(otel: Telemetry) -> None:
    with pytest.raises(RuntimeError), _telemetry.decision_span("POST", "/token"):
        raise RuntimeError("secret text")
    (span,) = otel.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RuntimeError"
    counts = _counts(otel.points("gemini_tokens.broker.decisions"), "gemini_tokens.outcome")
    assert counts == {"error": 1}
