"""A hanging audit sink never holds an answer: ``TokenBroker(audit_timeout=...)`` bounds an
async sink (a sync one runs in place, on the loop); the lost event is logged (without
secrets) and counted in ``gemini_tokens.broker.audit.lost``."""

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


async def test_a_sync_sink_runs_in_place_and_a_blocking_one_is_written_async(
    emu: Emulator, otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    """A sync sink runs on the loop, in place: its event is recorded before the answer
    leaves, and nothing is queued or dropped. Blocking work goes in an async sink (here
    through a thread), which the timeout bounds: two at once, neither holds its answer."""
    on_loop: list[bool] = []
    events: list[AuditEvent] = []

    def in_place(event: AuditEvent) -> None:
        on_loop.append(threading.current_thread() is threading.main_thread())
        events.append(event)

    broker = _broker(emu, in_place)
    assert (await _answer_in_time(broker))[0] == 200
    assert on_loop == [True]
    assert [e.outcome for e in events] == ["minted"]
    await broker.aclose()

    release = threading.Event()

    async def blocking(event: AuditEvent) -> None:
        await asyncio.to_thread(release.wait, 10)  # a stuck socket, a locked database

    broker = _broker(emu, blocking)
    with caplog.at_level(logging.WARNING, logger="gemini_tokens.broker"):
        results = await asyncio.gather(_answer_in_time(broker), _answer_in_time(broker))
    release.set()
    assert [status for status, _, _ in results] == [200, 200]
    assert all(took < TIMEOUT + SLACK for _, took, _ in results)
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
