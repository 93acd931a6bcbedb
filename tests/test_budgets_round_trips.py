"""Budgets on Redis: the charge and the limits together in at most two round trips
(counted as `tests/test_broker_limiter_round_trips.py` counts them)."""

from __future__ import annotations

import pytest

from gemini_tokens.testing import Emulator
from tests.broker.helpers import (
    close_brokers,  # noqa: F401  (an autouse fixture)
    make_broker,
    post,
)
from tests.broker.redis_server import needs_redis, redis_server
from tests.test_broker_limiter_round_trips import counting, statuses

pytestmark = needs_redis


async def test_a_charged_token_takes_two_round_trips(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server() as uri:
        broker = make_broker(
            rate_limits=["5/minute", "100/day"],
            global_rate_limits=["600/minute"],
            live_minutes=["60/day", "600/month"],
            global_live_minutes=["20000/day"],
            storage_uri=uri,
        )
        assert (await broker.handle(post())).status == 200  # connects, loads the scripts
        with counting(monkeypatch) as counter:
            answers = await statuses(broker, "alice", 3, counter)
    # 15 minutes each: the fourth request of the day (with the warm-up) is refused; each in
    # at most two round trips (suspension and budgets read with the caller's hits; the
    # charge with the global hits).
    assert [(status, trips <= 2) for status, _, trips in answers] == [
        (200, True),
        (200, True),
        (200, True),
    ], answers
    # Per request: 2 caller hits + GET + 3 budget reads; 1 global hit + its stats + 3
    # budget hits + their 3 stats.
    assert counter.commands.count("GET") == 3
    assert len(counter.commands) == 3 * (2 + 1 + 3 + 2 + 3 + 3)


async def test_an_exhausted_budget_and_a_suspension_take_at_most_two_round_trips(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server() as uri:
        broker = make_broker(
            rate_limits=["50/minute"],
            global_rate_limits=["600/minute"],
            live_minutes=["15/day"],
            storage_uri=uri,
        )
        assert (await broker.handle(post())).status == 200
        await broker.suspend("bob", reason="testing")
        with counting(monkeypatch) as counter:
            exhausted = await statuses(broker, "alice", 2, counter)
            suspended = await statuses(broker, "bob", 2, counter)
        assert [status for status, _, _ in exhausted] == [429, 429]
        assert all(80_000 < wait <= 86_400 for _, wait, _ in exhausted)
        assert [status for status, _, _ in suspended] == [403, 403]
        # Refused in the first round trip.
        assert all(trips == 1 for _, _, trips in exhausted + suspended), (exhausted, suspended)
        # Refused before the global limits and the charge: only reads and caller hits.
        assert counter.commands.count("GET") == 4
    assert len(gemini_emulator.tokens) == 1
