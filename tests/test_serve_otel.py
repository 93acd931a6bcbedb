"""The OpenTelemetry spans and metrics of the service's broker decisions (a minted, a denied
and a limited caller), read with the SDK's in-memory exporter and reader. Apart from
``test_serve_app.py`` so that its other tests run without opentelemetry-sdk.
"""

from __future__ import annotations

import json
from typing import Any

from . import test_serve_app as serve_app
from .test_otel import Telemetry, otel_fixture  # noqa: F401  (fixture; skips without the SDK)
from .test_serve_app import App, token

# The service's fixtures, shared with test_serve_app.py.
app = serve_app.app
emulator = serve_app.emulator


def _decisions(otel: Telemetry) -> list[Any]:
    return otel.finished("gemini_tokens.broker.decision")


async def test_decision_spans_and_metrics_for_minted_denied_and_limited_callers(
    app: App, otel: Telemetry
) -> None:
    otel.reset()
    assert (await app.post(token("kim")))[0] == 200
    assert (await app.post(token("kim")))[0] == 200
    assert (await app.post(token("kim")))[0] == 429  # 2/minute
    assert (await app.post(None))[0] == 401
    assert (await app.post(token("lee"), headers={"Origin": "https://evil.test"}))[0] == 403

    spans = _decisions(otel)
    outcomes = [
        (
            s.attributes["gemini_tokens.outcome"],
            s.attributes["gemini_tokens.reason"],
            s.attributes["http.response.status_code"],
        )
        for s in spans
    ]
    assert outcomes == [
        ("minted", "ok", 200),
        ("minted", "ok", 200),
        ("limited", "caller_limit", 429),
        ("denied", "unauthenticated", 401),
        ("denied", "origin_not_allowed", 403),
    ]
    for span in spans:
        assert span.attributes["http.request.method"] == "POST"
        assert span.attributes["http.route"] == "/token"
    mints = otel.finished("gemini_tokens.create")
    assert len(mints) == 2
    # Each mint span is the child of its decision's span.
    assert {m.parent.span_id for m in mints} == {s.context.span_id for s in spans[:2]}

    points = otel.read()
    assert otel.decisions(points) == {
        ("minted", "ok"): 2,
        ("limited", "caller_limit"): 1,
        ("denied", "unauthenticated"): 1,
        ("denied", "origin_not_allowed"): 1,
    }
    (rejections,) = points["gemini_tokens.broker.limiter.rejections"]
    assert dict(rejections.attributes) == {"gemini_tokens.limit.scope": "caller"}
    assert rejections.value == 1
    (duration,) = points["gemini_tokens.mint.duration"]
    assert duration.count == 2
    # No caller id, JWT or token anywhere in the telemetry.
    dumped = json.dumps(
        [json.loads(s.to_json()) for s in otel.finished()]
        + [dict(p.attributes) for ps in points.values() for p in ps]
    )
    assert "kim" not in dumped
    assert "lee" not in dumped
    for issued in app.emu.tokens:
        assert issued.name not in dumped
