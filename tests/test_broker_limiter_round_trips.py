"""Redis limits: one round trip per request, and refusals each process remembers.

Round trips are counted on redis-py's own connections: a round trip starts when a command
goes out while none of ours is waiting for its reply (commands sent together, on several
connections, before any reply, are one round trip). `Monitor` cross-checks what Redis
received.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from gemini_tokens.broker import TokenBroker
from gemini_tokens.broker._limiter import Limiter
from gemini_tokens.testing import Emulator
from tests.broker.helpers import (
    close_brokers,  # noqa: F401  (an autouse fixture)
    make_broker,
    post,
)
from tests.broker.redis_server import Monitor, needs_redis, redis_server

pytestmark = needs_redis


class RoundTrips:
    """Commands and round trips of every redis-py asyncio connection in this process."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.round_trips = 0
        self.in_flight = 0

    def sent(self, command: Any) -> None:
        packed = command if isinstance(command, (bytes, str)) else b"".join(command)
        raw = packed.encode() if isinstance(packed, str) else packed
        self.commands.append(raw.split(b"\r\n")[2].decode().upper())
        if self.in_flight == 0:
            self.round_trips += 1
        self.in_flight += 1

    def answered(self) -> None:
        self.in_flight -= 1


@contextlib.contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[RoundTrips]:
    from redis.asyncio.connection import AbstractConnection

    counter = RoundTrips()
    send, read = AbstractConnection.send_packed_command, AbstractConnection.read_response

    async def send_packed_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> None:
        counter.sent(command)
        await send(self, command, *args, **kwargs)

    async def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await read(self, *args, **kwargs)
        finally:
            counter.answered()

    with monkeypatch.context() as patch:
        patch.setattr(AbstractConnection, "send_packed_command", send_packed_command)
        patch.setattr(AbstractConnection, "read_response", read_response)
        yield counter


async def statuses(broker: TokenBroker, user: str, times: int) -> list[tuple[int, int]]:
    """(status, Retry-After or 0) of ``times`` requests one after the other."""
    out = []
    for _ in range(times):
        response = await broker.handle(post(user=user))
        out.append((response.status, int(response.header("Retry-After") or 0)))
    return out


async def test_a_minted_request_with_caller_and_global_limits_takes_one_round_trip(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server() as uri:
        broker = make_broker(
            rate_limits=["5/minute", "100/day"], global_rate_limits=["600/minute"], storage_uri=uri
        )
        assert (await broker.handle(post())).status == 200  # connects, loads the scripts
        monitor = Monitor(uri)
        try:
            with counting(monkeypatch) as counter:
                for _ in range(4):
                    assert (await broker.handle(post())).status == 200
            received = monitor.commands()
        finally:
            monitor.close()
    # Three limits, three scripts, sent together: one round trip per request.
    assert counter.round_trips == 4
    assert counter.commands == ["EVALSHA"] * 12
    assert received == ["EVALSHA"] * 12


async def test_a_limited_callers_requests_reach_redis_once_per_process_and_spend_little(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server() as uri:
        options: dict[str, Any] = {
            "rate_limits": ["1/minute"],
            "global_rate_limits": ["10/minute"],
            "storage_uri": uri,
        }
        replicas = [make_broker(**options), make_broker(**options)]  # two processes' worth
        checker = Limiter(None, options["global_rate_limits"], uri)
        item = checker.global_limits[0]

        async def global_remaining() -> int:  # also loads the stats script into Redis
            stats = await checker.strategy.get_window_stats(item, "gemini_tokens", "global")
            return int(stats.remaining)

        assert await global_remaining() == 10
        assert (await replicas[0].handle(post())).status == 200
        assert (await replicas[1].handle(post(user="bob"))).status == 200
        with counting(monkeypatch) as counter:
            first = await statuses(replicas[0], "alice", 6)
            after_first = counter.round_trips
            second = await statuses(replicas[1], "alice", 6)
        for answers in (first, second):
            assert [status for status, _ in answers] == [429] * 6
            waits = [wait for _, wait in answers]
            # Redis's Retry-After, then the same one counting down, never up.
            assert 55 <= waits[0] <= 60
            assert all(0 <= a - b <= 1 for a, b in itertools.pairwise(waits))
        # Each replica asked Redis once (the hits together, then the refused window's
        # stats): two round trips, then nothing for the next five requests.
        assert after_first == 2, counter.commands
        assert counter.round_trips == 4
        assert counter.commands == ["EVALSHA"] * 3 * 2
        # The global budget: two tokens, and one slot per replica for the request that
        # found alice limited; not one per refused request (that would be 12).
        assert await global_remaining() == 10 - 2 - 2
        await checker.aclose()
        assert len(gemini_emulator.tokens) == 2


async def test_a_remembered_refusal_counts_down_and_ends_at_the_reset(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server() as uri:
        broker = make_broker(rate_limits=["1 per 2 seconds"], storage_uri=uri)
        assert (await broker.handle(post(user="bob"))).status == 200
        assert (await broker.handle(post(user="bob"))).status == 429  # loads the scripts
        assert (await broker.handle(post())).status == 200
        with counting(monkeypatch) as counter:
            assert await statuses(broker, "alice", 1) == [(429, 2)]  # from Redis
            assert counter.round_trips == 2
            await asyncio.sleep(1.1)
            assert await statuses(broker, "alice", 1) == [(429, 1)]  # remembered
            assert counter.round_trips == 2
            await asyncio.sleep(1.0)  # the window frees its slot: ask Redis again
            assert await statuses(broker, "alice", 1) == [(200, 0)]
            assert counter.round_trips == 3
    assert len(gemini_emulator.tokens) == 3


async def test_a_global_refusal_is_remembered_too(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server() as uri:
        broker = make_broker(rate_limits=["1/minute"], storage_uri=uri)
        assert (await broker.handle(post(user="bob"))).status == 200
        assert (await broker.handle(post(user="bob"))).status == 429  # loads the scripts
        broker = make_broker(global_rate_limits=["1/minute"], storage_uri=uri)
        assert (await broker.handle(post())).status == 200
        with counting(monkeypatch) as counter:
            refused = [await broker.handle(post(user=user)) for user in ("bob", "alice", "bob")]
        assert [r.status for r in refused] == [429] * 3
        assert all("everyone" in r.json()["error"]["message"] for r in refused)
        assert counter.round_trips == 2  # the first refusal only
    assert len(gemini_emulator.tokens) == 2


async def test_the_memory_of_refusals_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    with redis_server() as uri:
        limiter = Limiter(["1/minute"], None, uri)
        limiter.refused.size = 3
        try:
            assert await limiter.hit("warm-up") is None
            assert await limiter.hit("warm-up") is not None  # loads the scripts
            limiter.refused = type(limiter.refused)(3)
            for number in range(5):
                assert await limiter.hit(f"caller-{number}") is None
                assert await limiter.hit(f"caller-{number}") is not None  # remembered
            assert len(limiter.refused) == 3
            with counting(monkeypatch) as counter:
                for number in (2, 3, 4):  # the most recent three: no Redis
                    assert await limiter.hit(f"caller-{number}") is not None
                assert counter.round_trips == 0
                # The oldest was forgotten: Redis, still the authority, refuses it again.
                refused = await limiter.hit("caller-0")
                assert refused is not None
                assert refused.scope == "caller"
                assert counter.round_trips == 2
            assert len(limiter.refused) == 3
        finally:
            await limiter.aclose()


async def test_replicas_still_share_one_callers_limit_exactly(gemini_emulator: Emulator) -> None:
    with redis_server() as uri:
        options: dict[str, Any] = {"rate_limits": ["3/minute"], "storage_uri": uri}
        replicas = [make_broker(**options), make_broker(**options)]
        answers = [(await replicas[i % 2].handle(post())).status for i in range(10)]
    assert sorted(answers) == [200] * 3 + [429] * 7
    assert len(gemini_emulator.tokens) == 3
