"""OpenTelemetry of an embedded `TokenBroker` (no ``serve``): a span per decision with its
outcome, the decision and rejection counters, for a minted, a denied and a limited caller.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import gemini_tokens
from gemini_tokens.broker import BrokerRequest, Caller, Denied, Policy, TokenBroker
from gemini_tokens.testing import Emulator

from .test_otel import Telemetry, otel_fixture  # noqa: F401  (fixture)


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

    points: dict[str, list[Any]] = {}
    for resource in otel.reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    decisions = {
        (p.attributes["gemini_tokens.outcome"], p.attributes["gemini_tokens.reason"]): p.value
        for p in points["gemini_tokens.broker.decisions"]
    }
    assert decisions == {
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
