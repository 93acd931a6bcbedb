"""Redis limits: at most two round trips per request, and no global slot for a caller who
is refused.

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
        self._taken = 0

    def take(self) -> int:
        """Round trips since the last `take`."""
        taken, self._taken = self.round_trips - self._taken, self.round_trips
        return taken

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


async def statuses(
    broker: TokenBroker, user: str, times: int, counter: RoundTrips
) -> list[tuple[int, int, int]]:
    """(status, Retry-After or 0, round trips) of ``times`` requests one after the other."""
    out = []
    counter.take()
    for _ in range(times):
        response = await broker.handle(post(user=user))
        out.append((response.status, int(response.header("Retry-After") or 0), counter.take()))
    return out


class GlobalWindow:
    """Reads the global window's slots left, with `limits`' API, as a replica would."""

    def __init__(self, uri: str, limit: str) -> None:
        self.limiter = Limiter(None, [limit], uri)

    async def remaining(self) -> int:  # also loads the stats script into Redis
        item = self.limiter.global_limits[0]
        stats = await self.limiter.strategy.get_window_stats(item, "gemini_tokens", "global")
        return int(stats.remaining)


async def test_a_minted_request_takes_two_round_trips(
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
                answers = await statuses(broker, "alice", 4, counter)
            received = monitor.commands()
        finally:
            monitor.close()
    # At most two round trips: the caller's two limits together, then the global one
    # with its window's stats.
    assert [(status, wait) for status, wait, _ in answers] == [(200, 0)] * 4
    assert all(trips <= 2 for _, _, trips in answers), answers
    assert counter.commands == ["EVALSHA"] * 4 * 4
    assert received == ["EVALSHA"] * 4 * 4


async def test_a_refused_caller_spends_no_global_slot_in_two_round_trips(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server() as uri:
        options: dict[str, Any] = {
            "rate_limits": ["1/minute"],
            "global_rate_limits": ["10/minute"],
            "storage_uri": uri,
        }
        replicas = [make_broker(**options), make_broker(**options)]  # two processes' worth
        window = GlobalWindow(uri, "10/minute")
        assert await window.remaining() == 10
        assert (await replicas[0].handle(post())).status == 200
        assert (await replicas[1].handle(post(user="bob"))).status == 200
        with counting(monkeypatch) as counter:
            first = await statuses(replicas[0], "alice", 6, counter)
            second = await statuses(replicas[1], "alice", 6, counter)
        for answers in (first, second):
            assert [status for status, _, _ in answers] == [429] * 6
            waits = [wait for _, wait, _ in answers]
            # The caller's window's reset, from Redis each time: counting down, never up.
            assert 55 <= waits[0] <= 60
            assert all(0 <= a - b <= 1 for a, b in itertools.pairwise(waits))
            # Each refusal asks Redis (nothing is remembered), in at most two round trips:
            # the caller's hit, then the refused window's stats.
            assert all(1 <= trips <= 2 for _, _, trips in answers), answers
        assert counter.commands == ["EVALSHA"] * 2 * 12
        # The global budget: the two tokens, and not one slot for the twelve refusals.
        assert await window.remaining() == 10 - 2
        await window.limiter.aclose()
        assert len(gemini_emulator.tokens) == 2


async def test_a_global_refusal_takes_two_round_trips_and_keeps_the_callers_slot(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server() as uri:
        broker = make_broker(
            rate_limits=["2/minute"], global_rate_limits=["1/minute"], storage_uri=uri
        )
        # The global slot (and both scripts loaded: the hit's, and the stats' read along).
        assert (await broker.handle(post(user="bob"))).status == 200
        with counting(monkeypatch) as counter:
            refused = [await broker.handle(post(user=user)) for user in ("alice", "bob")]
            trips = counter.take()
            answers = await statuses(broker, "alice", 1, counter)
        assert [r.status for r in refused] == [429] * 2
        assert all("everyone" in r.json()["error"]["message"] for r in refused)
        # The global window's reset, read along with the global hit: no third round trip.
        assert all(55 <= int(r.header("Retry-After") or 0) <= 60 for r in refused)
        assert trips <= 2 * 2
        # alice's first refusal kept the slot of hers it spent (documented): her second
        # request is her window's second, refused by the global limit once more.
        assert answers[0][0] == 429
        assert 1 <= answers[0][2] <= 2
        caller = make_broker(rate_limits=["2/minute"], storage_uri=uri)
        limited = await caller.handle(post(user="alice"))
        assert limited.status == 429
        assert "you have" in limited.json()["error"]["message"]
    assert len(gemini_emulator.tokens) == 1


async def test_the_reset_is_redis_s_and_nothing_is_remembered(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server() as uri:
        broker = make_broker(rate_limits=["1 per 2 seconds"], storage_uri=uri)
        assert (await broker.handle(post(user="bob"))).status == 200
        assert (await broker.handle(post(user="bob"))).status == 429  # loads the scripts
        assert (await broker.handle(post())).status == 200
        with counting(monkeypatch) as counter:
            # Each request reaches Redis: the wait is the window's reset, counting down.
            assert await statuses(broker, "alice", 1, counter) == [(429, 2, 2)]
            await asyncio.sleep(1.1)
            assert await statuses(broker, "alice", 1, counter) == [(429, 1, 2)]
            await asyncio.sleep(1.0)  # the window frees its slot
            assert await statuses(broker, "alice", 1, counter) == [(200, 0, 1)]
    assert len(gemini_emulator.tokens) == 3


async def test_replicas_still_share_one_callers_limit_exactly(gemini_emulator: Emulator) -> None:
    with redis_server() as uri:
        options: dict[str, Any] = {"rate_limits": ["3/minute"], "storage_uri": uri}
        replicas = [make_broker(**options), make_broker(**options)]
        answers = [(await replicas[i % 2].handle(post())).status for i in range(10)]
    assert sorted(answers) == [200] * 3 + [429] * 7
    assert len(gemini_emulator.tokens) == 3
