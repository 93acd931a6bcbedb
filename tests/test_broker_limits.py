"""Rate limits: per caller and global, counted after validation, memory and a real Redis."""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from gemini_tokens.broker import AuditEvent, TokenBroker
from gemini_tokens.testing import Emulator
from tests.broker.helpers import (
    close_brokers,  # noqa: F401  (an autouse fixture)
    make_broker,
    post,
)
from tests.broker.redis_server import Monitor, needs_redis, redis_server
from tests.spawn import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent


def make(**options: Any) -> TokenBroker:
    return make_broker(**options)


async def test_a_caller_limit_counts_only_valid_requests(gemini_emulator: Emulator) -> None:
    events: list[AuditEvent] = []
    broker = make(rate_limits=["3/minute"], audit=events.append)
    try:
        # Refused requests (bad body, unknown caller) do not count.
        for _ in range(5):
            assert (await broker.handle(post({"config": {"top_k": 1}}))).status == 400
            assert (await broker.handle(post(user="nobody"))).status == 401
        statuses = [(await broker.handle(post())).status for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        limited = await broker.handle(post())
        assert limited.status == 429
        assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert 1 <= int(limited.header("Retry-After") or 0) <= 60
        # Another caller has a budget of their own.
        assert (await broker.handle(post(user="bob"))).status == 200
        assert len(gemini_emulator.tokens) == 4
        assert [e.reason for e in events if e.outcome == "limited"] == ["caller_limit"] * 3
    finally:
        await broker.aclose()


async def test_several_limits_per_caller(gemini_emulator: Emulator) -> None:
    broker = make(rate_limits=["2/second", "4/hour"])
    try:
        statuses = [(await broker.handle(post())).status for _ in range(3)]
        assert statuses == [200, 200, 429]  # 2 per second
        # A validated request counts against each of the caller's limits (they are sent
        # together), so the refused third one used up the hour's third.
        await asyncio.sleep(1.05)
        assert (await broker.handle(post())).status == 200  # the hour's 4th
        hour = await broker.handle(post())
        assert hour.status == 429
        assert int(hour.header("Retry-After") or 0) > 3000  # the hour's window
        assert len(gemini_emulator.tokens) == 3
    finally:
        await broker.aclose()


async def test_the_global_limit_and_a_limited_caller_does_not_spend_it(
    gemini_emulator: Emulator,
) -> None:
    broker = make(rate_limits=["1/minute"], global_rate_limits=["3/minute"])
    try:
        assert (await broker.handle(post(user="alice"))).status == 200
        # alice is now limited: her refused requests must not use up the global budget.
        for _ in range(5):
            assert (await broker.handle(post(user="alice"))).status == 429
        assert (await broker.handle(post(user="bob"))).status == 200
        broker2_caller = post(user="bob")
        assert (await broker.handle(broker2_caller)).status == 429  # bob's own limit
    finally:
        await broker.aclose()

    broker = make(global_rate_limits=["2/minute"])
    try:
        assert (await broker.handle(post(user="alice"))).status == 200
        assert (await broker.handle(post(user="bob"))).status == 200
        everyone = await broker.handle(post(user="alice"))
        assert everyone.status == 429
        assert "everyone" in everyone.json()["error"]["message"]
        assert 1 <= int(everyone.header("Retry-After") or "0") <= 60  # a 2/minute window
    finally:
        await broker.aclose()


async def test_a_global_refusal_keeps_the_callers_slot(gemini_emulator: Emulator) -> None:
    # Documented: the caller's limits are hit first, and `limits` cannot take a hit back.
    broker = make(rate_limits=["2/minute"], global_rate_limits=["1/minute"])
    try:
        assert (await broker.handle(post(user="bob"))).status == 200
        for _ in range(2):
            everyone = await broker.handle(post(user="alice"))
            assert everyone.status == 429
            assert "everyone" in everyone.json()["error"]["message"]
        mine = await broker.handle(post(user="alice"))  # her window: two slots, both spent
        assert mine.status == 429
        assert "you have" in mine.json()["error"]["message"]
        assert len(gemini_emulator.tokens) == 1
    finally:
        await broker.aclose()


async def test_unreachable_storage_fails_closed(
    gemini_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    events: list[AuditEvent] = []
    broker = make(rate_limits=["3/minute"], storage_uri=dead, audit=events.append)
    try:
        with caplog.at_level(logging.ERROR, logger="gemini_tokens.broker"):
            response = await broker.handle(post())
        assert response.status == 503
        assert response.json()["error"]["status"] == "UNAVAILABLE"
        assert response.header("Retry-After") == "5"
        assert events[0].reason == "limiter_unavailable"
        assert gemini_emulator.tokens == []
        assert any("unreachable" in r.getMessage() for r in caplog.records)
    finally:
        await broker.aclose()

    broker = make(rate_limits=["3/minute"], storage_uri=dead, on_limiter_error="allow")
    try:
        assert (await broker.handle(post())).status == 200
        assert await broker.check_storage() is False  # for a readiness probe
    finally:
        await broker.aclose()
    memory = make(rate_limits=["3/minute"])
    try:
        assert await memory.check_storage() is True
    finally:
        await memory.aclose()


@needs_redis
async def test_redis_limits_cost_one_command_per_limit_group(gemini_emulator: Emulator) -> None:
    with redis_server() as uri:
        broker = make(rate_limits=["5/minute", "100/day"], storage_uri=uri)
        try:
            assert await broker.check_storage() is True
            assert (await broker.handle(post())).status == 200  # connects, loads scripts
            monitor = Monitor(uri)
            try:
                for _ in range(3):
                    assert (await broker.handle(post())).status == 200
                commands = monitor.commands()
            finally:
                monitor.close()
        finally:
            await broker.aclose()
    # Two limits of one caller: two scripts sent together (one round trip), nothing else.
    assert commands == ["EVALSHA"] * 6


@needs_redis
async def test_more_requests_in_flight_than_redis_connections(gemini_emulator: Emulator) -> None:
    """Requests wait for a free connection instead of failing ("Too many connections")."""
    with redis_server() as uri:
        broker = make(rate_limits=["1000/minute", "10000/day"], storage_uri=uri)
        try:
            responses = await asyncio.gather(*(broker.handle(post()) for _ in range(150)))
        finally:
            await broker.aclose()
    assert [r.status for r in responses] == [200] * 150


def _post(port: int, user: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/token",
        method="POST",
        data=b"",
        headers={"Authorization": f"Bearer {user}-token"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


@needs_redis
@pytest.mark.slow
def test_two_worker_processes_share_one_callers_limit_through_redis() -> None:
    with redis_server() as uri, Emulator.running() as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
        env.update(GEMINI_API_KEY=emu.api_key, GEMINI_BASE_URL=emu.base_url)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        ports = [free_port(), free_port()]
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.broker.worker", str(port), uri],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for port in ports
        ]
        try:
            for worker in workers:
                assert worker.stdout is not None
                line = worker.stdout.readline()
                assert line.strip() == "ready", line
            alice = [_post(ports[i % 2], "alice") for i in range(10)]
            bob = [_post(ports[i % 2], "bob") for i in range(4)]
        finally:
            outputs = []
            for worker in workers:
                worker.terminate()
                outputs.append(worker.communicate(timeout=30)[0])
        assert sorted(alice) == [200] * 3 + [429] * 7, outputs
        assert sorted(bob) == [200] * 3 + [429], outputs
        assert len(emu.tokens) == 6
        # Both processes minted and refused: the limit really was shared.
        for output in outputs:
            assert "minted" in output, outputs
            assert "limited" in output, outputs
            assert "Traceback" not in output
