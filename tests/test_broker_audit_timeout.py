"""A hanging audit sink never holds an answer: ``TokenBroker(audit_timeout=...)`` bounds it,
async sinks and sync ones alike; the lost event is logged (without secrets) and counted in
``gemini_tokens.broker.audit.lost``."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk: pip install -e '.[test]'")

import gemini_tokens
from gemini_tokens.broker import AuditEvent, BrokerRequest, Caller, Policy, TokenBroker
from gemini_tokens.testing import Emulator

from .test_otel import Telemetry, otel_fixture  # noqa: F401  (fixture)

TIMEOUT = 0.3
SLACK = 1.5


async def authorize(request: BrokerRequest) -> Caller:
    return Caller(id="ann")


@pytest.fixture
def emu(gemini_emulator: Emulator) -> Emulator:
    """The emulator, in the environment: each broker makes (and closes) its own client."""
    return gemini_emulator


def _broker(emu: Emulator, audit: Any) -> TokenBroker:
    return TokenBroker(
        authorize=authorize,
        policy=Policy(model="gemini-live", uses=1),
        audit=audit,
        audit_timeout=TIMEOUT,
    )


def _lost(otel: Telemetry) -> dict[str, int]:
    points = otel.read().get("gemini_tokens.broker.audit.lost", [])
    return {p.attributes["gemini_tokens.reason"]: p.value for p in points}


async def _answer_in_time(broker: TokenBroker) -> tuple[int, float, str]:
    started = time.monotonic()
    response = await broker.handle(BrokerRequest(method="POST", path="/token"))
    name: str = response.json()["name"] if response.status == 200 else ""
    return response.status, time.monotonic() - started, name


async def test_an_async_sink_that_never_returns_is_given_up(
    emu: Emulator, otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    cancelled = asyncio.Event()

    async def hang(event: AuditEvent) -> None:
        try:
            await asyncio.Event().wait()  # forever
        finally:
            cancelled.set()

    broker = _broker(emu, hang)
    with caplog.at_level(logging.WARNING, logger="gemini_tokens.broker"):
        status, took, name = await _answer_in_time(broker)
    assert status == 200
    assert TIMEOUT <= took < TIMEOUT + SLACK
    assert len(emu.tokens) == 1
    await asyncio.wait_for(cancelled.wait(), 1)  # the sink was cancelled, not left running
    (record,) = [r for r in caplog.records if "audit" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "did not return within 0.3s" in record.getMessage()
    assert "minted" in record.getMessage()
    assert name not in caplog.text
    assert "auth_tokens/" not in caplog.text
    assert _lost(otel) == {"timeout": 1}
    await broker.aclose()


async def test_a_sink_that_ignores_its_cancellation_is_not_waited_for(
    emu: Emulator, otel: Telemetry
) -> None:
    async def stubborn(event: AuditEvent) -> None:
        for _ in range(30):
            try:
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                continue

    broker = _broker(emu, stubborn)
    status, took, _ = await _answer_in_time(broker)
    assert status == 200
    assert took < TIMEOUT + SLACK
    assert _lost(otel) == {"timeout": 1}
    await broker.aclose()


async def test_a_sync_sink_that_blocks_is_bounded_too(
    emu: Emulator, otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    loop_threads: list[bool] = []

    def blocking(event: AuditEvent) -> None:
        loop_threads.append(threading.current_thread() is threading.main_thread())
        release.wait(10)  # a stuck socket, a locked database

    broker = _broker(emu, blocking)
    with caplog.at_level(logging.WARNING, logger="gemini_tokens.broker"):
        # Two at once: a blocking sink holds neither answer, nor the loop.
        results = await asyncio.gather(_answer_in_time(broker), _answer_in_time(broker))
    release.set()
    assert [status for status, _, _ in results] == [200, 200]
    assert all(took < TIMEOUT + SLACK for _, took, _ in results)
    assert loop_threads == [False, False]  # off the event loop's thread
    assert _lost(otel) == {"timeout": 2}
    assert caplog.text.count("did not return within") == 2
    assert all(name not in caplog.text for _, _, name in results)
    await broker.aclose()


async def test_a_quick_sink_loses_nothing(emu: Emulator, otel: Telemetry) -> None:
    events: list[AuditEvent] = []

    async def quick(event: AuditEvent) -> None:
        events.append(event)

    for sink in (quick, events.append):
        broker = _broker(emu, sink)
        assert (await _answer_in_time(broker))[0] == 200
        await broker.aclose()
    assert [e.outcome for e in events] == ["minted", "minted"]
    assert _lost(otel) == {}


async def test_a_sink_that_raises_is_logged_and_counted(
    emu: Emulator, otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: AuditEvent) -> None:
        raise RuntimeError("disk full")

    broker = _broker(emu, broken)
    with caplog.at_level(logging.ERROR, logger="gemini_tokens.broker"):
        assert (await _answer_in_time(broker))[0] == 200
    assert "the audit sink raised; the event was lost" in caplog.text
    assert _lost(otel) == {"sink_error": 1}
    await broker.aclose()


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "5", True, None])
def test_audit_timeout_must_be_a_positive_number(emu: Emulator, value: Any) -> None:
    with pytest.raises(gemini_tokens.ConfigurationError, match="audit_timeout: must be a posi"):
        TokenBroker(
            authorize=authorize,
            policy=Policy(model="gemini-live"),
            audit_timeout=value,
        )


async def test_hung_sync_sinks_hold_a_bounded_number_of_threads(
    emu: Emulator, otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gemini_tokens.broker import _audit

    monkeypatch.setattr(_audit, "_sink_threads", _audit._SinkThreads(1))
    release = threading.Event()
    calls: list[str] = []

    def blocking(event: AuditEvent) -> None:
        calls.append(event.outcome)
        release.wait(10)

    broker = _broker(emu, blocking)
    first = await _answer_in_time(broker)  # its thread still hangs after the timeout
    started = time.monotonic()
    second = await _answer_in_time(broker)  # no thread left: lost at once
    took_second = time.monotonic() - started
    release.set()
    assert (first[0], second[0]) == (200, 200)
    assert took_second < TIMEOUT  # not even waited for
    assert calls == ["minted"]
    assert _lost(otel) == {"timeout": 1, "busy": 1}
    await broker.aclose()
