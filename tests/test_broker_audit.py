"""Audit: one event per decision, JSON-ready, without token names or the key."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import random

import attrs
import pytest

from gemini_tokens.broker import AuditEvent, BrokerRequest, TokenBroker, token_id
from gemini_tokens.testing import Emulator
from tests.broker.helpers import (
    ORIGIN,
    authorize,
    fast_retries,  # noqa: F401  (autouse fixtures)
    policy,
    post,
)


async def test_fifty_mixed_requests_make_exactly_fifty_clean_events(
    gemini_emulator: Emulator,
) -> None:
    events: list[AuditEvent] = []
    broker = TokenBroker(
        authorize=authorize,
        policy=policy(),
        rate_limits=["6/minute"],
        allowed_origins=[ORIGIN],
        audit=events.append,
    )
    kinds = (
        ["ok"] * 14
        + ["anonymous"] * 6
        + ["banned"] * 4
        + ["bad_field"] * 6
        + ["not_json"] * 4
        + ["foreign"] * 4
        + ["get"] * 3
        + ["too_large"] * 3
        + ["upstream"] * 3
        + ["bob"] * 3
    )
    assert len(kinds) == 50
    random.Random(14).shuffle(kinds)

    def request_for(kind: str) -> BrokerRequest:
        return {
            "ok": lambda: post({"config": {"temperature": 0.3}}, origin=ORIGIN),
            "anonymous": lambda: post(user=None),
            "banned": lambda: post(user="eve"),
            "bad_field": lambda: post({"config": {"top_k": 3}}),
            "not_json": lambda: post(raw=b"{{"),
            "foreign": lambda: post(origin="https://evil.example"),
            "get": lambda: BrokerRequest(method="GET", path="/token"),
            "too_large": lambda: BrokerRequest(method="POST", body_too_large=True),
            "upstream": lambda: post(user="bob"),
            "bob": lambda: post(user="bob"),
        }[kind]()

    responses = []
    names: list[str] = []
    try:
        for kind in kinds:
            if kind == "upstream":
                gemini_emulator.fail_next(status=403)
            response = await broker.handle(request_for(kind))
            responses.append(response)
            if response.status == 200:
                names.append(response.json()["name"])
    finally:
        await broker.aclose()

    assert len(events) == 50
    outcomes = {e.outcome for e in events}
    assert outcomes == {"minted", "denied", "limited", "invalid", "upstream_error"}
    assert [e.status for e in events] == [r.status for r in responses]
    minted = [e for e in events if e.outcome == "minted"]
    assert len(minted) == len(names) == len(gemini_emulator.tokens)
    assert [e.token_id for e in minted] == [token_id(n) for n in names]
    dumped = [json.dumps(e.to_dict()) for e in events] + [repr(e) for e in events]
    secrets = [*names, *(n.split("/", 1)[1] for n in names), gemini_emulator.api_key]
    for text in dumped:
        for secret in secrets:
            assert secret not in text
        assert "alice-token" not in text


async def test_a_minted_event_has_every_field(gemini_emulator: Emulator) -> None:
    events: list[AuditEvent] = []
    broker = TokenBroker(
        authorize=authorize, policy=policy(), allowed_origins=[ORIGIN], audit=events.append
    )
    try:
        response = await broker.handle(post({"config": {"speech_config": "Kore"}}, origin=ORIGIN))
    finally:
        await broker.aclose()
    name = response.json()["name"]
    (event,) = events
    assert event.outcome == "minted"
    assert event.caller_id == "alice"
    assert event.client_address == "203.0.113.9"
    assert event.origin == ORIGIN
    assert event.token_id == hashlib.sha256(name.encode()).hexdigest()[:16]
    assert event.model == "gemini-2.5-flash-native-audio-preview-12-2025"
    assert event.uses == 2
    issued = gemini_emulator.token(name)
    assert issued is not None
    # The times the service gave this token (the audit keeps milliseconds).
    assert event.expire_time is not None
    assert abs(event.expire_time - issued.expire_time) < dt.timedelta(milliseconds=1)
    assert event.new_session_expire_time is not None
    assert abs(event.new_session_expire_time - issued.new_session_expire_time) < dt.timedelta(
        milliseconds=1
    )
    assert event.locked_fields is not None
    assert "generationConfig.speechConfig" in event.locked_fields
    assert event.latency_ms > 0
    data = event.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["time"].endswith("Z")
    assert data["expire_time"].endswith("Z")
    assert isinstance(data["locked_fields"], list)
    with pytest.raises(AttributeError):
        event.outcome = "denied"  # type: ignore[misc]


async def test_the_default_sink_logs_one_line(
    gemini_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    broker = TokenBroker(authorize=authorize, policy=policy())
    try:
        with caplog.at_level(logging.INFO, logger="gemini_tokens.audit"):
            ok = await broker.handle(post())
            await broker.handle(post(user=None))
    finally:
        await broker.aclose()
    records = [r for r in caplog.records if r.name == "gemini_tokens.audit"]
    assert len(records) == 2
    lines = [r.getMessage() for r in records]
    assert all("\n" not in line for line in lines)
    first, second = (json.loads(line) for line in lines)
    assert first["outcome"] == "minted"
    assert second["outcome"] == "denied"
    assert second["reason"] == "unauthenticated"
    assert ok.json()["name"] not in "".join(lines)


async def test_async_sinks_and_a_failing_sink(
    gemini_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[AuditEvent] = []

    async def async_sink(event: AuditEvent) -> None:
        await asyncio.sleep(0)
        seen.append(event)

    broker = TokenBroker(authorize=authorize, policy=policy(), audit=async_sink)
    try:
        assert (await broker.handle(post())).status == 200
    finally:
        await broker.aclose()
    assert [e.outcome for e in seen] == ["minted"]

    def broken(event: AuditEvent) -> None:
        raise OSError("disk full")

    broker = TokenBroker(authorize=authorize, policy=policy(), audit=broken)
    try:
        with caplog.at_level(logging.ERROR, logger="gemini_tokens.broker"):
            response = await broker.handle(post())
    finally:
        await broker.aclose()
    assert response.status == 200  # the token is not lost because the audit failed
    assert any("audit sink raised" in r.getMessage() for r in caplog.records)


def test_preflights_are_not_decisions(gemini_emulator_sync: Emulator) -> None:
    events: list[AuditEvent] = []
    broker = TokenBroker(
        authorize=authorize, policy=policy(), allowed_origins=[ORIGIN], audit=events.append
    )
    request = BrokerRequest(
        method="OPTIONS", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert asyncio.run(broker.handle(request)).status == 204
    assert events == []


def test_audit_and_metrics_share_one_outcome_set() -> None:
    from typing import get_args

    from gemini_tokens.broker import _audit, _telemetry

    # One set, the audit's: the metrics count exactly the outcomes an event may have.
    assert _telemetry.OUTCOMES is _audit.OUTCOMES
    assert frozenset(get_args(_audit.Outcome)) == _audit.OUTCOMES
    assert attrs.fields(_audit.AuditEvent).outcome.type in ("Outcome", _audit.Outcome)
    assert {_telemetry._outcome_value(outcome) for outcome in _audit.OUTCOMES} == _audit.OUTCOMES
    assert _telemetry._outcome_value("weird") == "other"
