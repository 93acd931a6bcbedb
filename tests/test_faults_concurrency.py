"""Faults under load: cancellation, many threads on the sync facade, a burst of async calls.

Every call must end (a token or a typed error), none may be lost or answered with another
call's token, and the attempts the server saw must add up to the attempts the calls made.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import gemini_tokens
from gemini_tokens import (
    APIError,
    AsyncClient,
    Client,
    EphemeralToken,
    GeminiTokensError,
    RetryPolicy,
    Timeout,
)

from .conftest import API_KEY
from .fault_server import (  # noqa: F401  (fixtures)
    ALL_FAULTS,
    SLACK,
    Action,
    FaultServer,
    Received,
    close_before_response,
    faults_fixture,
    no_stray_tasks_fixture,
    raw,
    retry_info,
    rpc_status,
    stall_before_headers,
    token,
    worst_case,
)

POLICY = RetryPolicy(max_retries=2, initial_backoff=0.01, max_backoff=0.05)


def uses_of(request: Received) -> int:
    """Each call in these tests sends a distinct ``uses``: it tells the calls apart."""
    body = request.json
    assert isinstance(body, dict)
    uses = body["uses"]
    assert isinstance(uses, int)
    return uses


def check_accounting(
    server: FaultServer, outcomes: dict[int, EphemeralToken | BaseException], max_attempts: int
) -> None:
    """Every call ended; the server's log of attempts agrees with each call's outcome."""
    seen: dict[int, list[Received]] = defaultdict(list)
    for request in server.requests:
        seen[uses_of(request)].append(request)
    assert set(seen) == set(outcomes), "the server saw calls that never ended, or none at all"
    for uses, outcome in outcomes.items():
        requests = seen[uses]
        failed, last = requests[:-1], requests[-1]
        assert all(r.index not in server.replies for r in failed)
        if isinstance(outcome, EphemeralToken):
            # The token answered to this call's last attempt, and to no other call.
            assert server.replies.get(last.index) == outcome.name
            assert outcome.uses == uses
            assert len(requests) <= max_attempts
        else:
            assert isinstance(outcome, APIError), f"untyped outcome: {outcome!r}"
            assert last.index not in server.replies
            assert outcome.attempts == len(requests)
    assert sum(len(r) for r in seen.values()) == server.attempts


# -- cancellation ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_stray_tasks")
async def test_cancel_during_backoff_sleep(faults: FaultServer) -> None:
    faults.default = rpc_status(503, details=[retry_info("10s")])  # under max_retry_wait
    async with AsyncClient(API_KEY, base_url=faults.base_url, retry=POLICY) as client:
        task = asyncio.create_task(client.create())
        await faults.until_attempts(1)
        await asyncio.sleep(0.05)  # now sleeping the 10 s hint
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 0.5
        await asyncio.sleep(0.1)
        assert faults.attempts == 1  # no attempt after the cancellation
        # The client is still usable.
        faults.default = token()
        assert isinstance(await client.create(), EphemeralToken)


@pytest.mark.usefixtures("no_stray_tasks")
async def test_cancel_during_an_attempt(faults: FaultServer) -> None:
    faults.script(rpc_status(503), stall_before_headers())
    timeout = Timeout(connect=1.0, total=30.0)
    async with AsyncClient(
        API_KEY, base_url=faults.base_url, retry=POLICY, timeout=timeout
    ) as client:
        task = asyncio.create_task(client.create())
        await faults.until_attempts(2)  # the retry is on the wire, stalled
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await faults.until_idle(2.0)  # the stalled connection was dropped at once
        assert isinstance(await client.create(), EphemeralToken)


@pytest.mark.usefixtures("no_stray_tasks")
async def test_caller_timeout_is_the_callers_not_ours(faults: FaultServer) -> None:
    """A timeout around ``create`` raises the caller's TimeoutError, cleanly."""
    faults.default = stall_before_headers()
    timeout = Timeout(connect=1.0, total=30.0)
    async with AsyncClient(
        API_KEY, base_url=faults.base_url, retry=POLICY, timeout=timeout
    ) as client:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError) as caught:  # TimeoutError on 3.11+
            await asyncio.wait_for(client.create(), 0.3)
        assert not isinstance(caught.value, GeminiTokensError)
        assert time.monotonic() - started < 0.3 + SLACK
        assert faults.attempts == 1


@pytest.mark.usefixtures("no_stray_tasks")
async def test_cancelling_acreate_mid_retry_stops_the_retries(
    faults: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-shot helper runs on the default client's own loop; cancelling still reaches it."""
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", faults.base_url)
    faults.default = rpc_status(503, details=[retry_info("10s")])
    try:
        task = asyncio.create_task(gemini_tokens.acreate())
        await faults.until_attempts(1)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)
        assert faults.attempts == 1
    finally:
        gemini_tokens.close_default_client()


# -- many threads on the sync facade ---------------------------------------------------------------


@pytest.fixture
def instant_backoff() -> Iterator[None]:
    gemini_tokens.set_testing(True)
    try:
        yield
    finally:
        gemini_tokens.set_testing(False)


@pytest.mark.usefixtures("instant_backoff")
def test_32_threads_with_faults_lose_no_call(faults: FaultServer) -> None:
    rng = random.Random(32)
    lock = threading.Lock()
    menu: list[Action] = [
        token(),
        token(),
        rpc_status(503),
        rpc_status(429, retry_after="0"),
        close_before_response(),
        ALL_FAULTS["close-mid-body"](),
        ALL_FAULTS["502-html"](),
        ALL_FAULTS["stall-before-headers"](),
    ]

    def choose(request: Received) -> Action:
        with lock:
            return rng.choice(menu)

    faults.handler = choose
    calls = 32 * 4
    timeout = Timeout(connect=2.0, total=0.5)
    outcomes: dict[int, EphemeralToken | BaseException] = {}
    with Client(API_KEY, base_url=faults.base_url, timeout=timeout) as client:

        def call(uses: int) -> None:
            try:
                outcomes[uses] = client.create(uses=uses)
            except BaseException as exc:  # recorded, then judged by check_accounting
                outcomes[uses] = exc

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(call, range(calls)))
        elapsed = time.monotonic() - started

    assert len(outcomes) == calls
    check_accounting(faults, outcomes, max_attempts=3)
    tokens = [o for o in outcomes.values() if isinstance(o, EphemeralToken)]
    assert len({t.name for t in tokens}) == len(tokens)
    assert tokens, "with a third of answers good, some calls must succeed"
    # Each thread's 4 calls run one after another; one loop serves them all.
    assert elapsed <= 4 * (3 * timeout.total) + 10 * SLACK


# -- a burst through one AsyncClient ---------------------------------------------------------------


@pytest.mark.usefixtures("no_stray_tasks")
async def test_burst_of_500_with_30_percent_failures(faults: FaultServer) -> None:
    rng = random.Random(500)
    failures: list[Action] = [
        rpc_status(503),
        rpc_status(500),
        raw(502, b"<html>bad gateway</html>", content_type="text/html"),
        close_before_response(),
        ALL_FAULTS["close-mid-body"](),
    ]
    good = token()

    def choose(request: Received) -> Action:
        # Runs on the server's single loop thread: no lock needed.
        return rng.choice(failures) if rng.random() < 0.3 else good

    faults.handler = choose
    calls = 500
    timeout = Timeout(connect=20.0, total=20.0)  # 400 calls wait for one of 100 connections
    async with AsyncClient(
        API_KEY, base_url=faults.base_url, retry=POLICY, timeout=timeout
    ) as client:
        started = time.monotonic()
        burst = asyncio.gather(
            *(client.create(uses=uses) for uses in range(calls)), return_exceptions=True
        )
        results = await asyncio.wait_for(burst, 60)  # a guard: fail, never hang
        elapsed = time.monotonic() - started
    outcomes = dict(enumerate(results))
    assert len(outcomes) == calls
    check_accounting(faults, outcomes, max_attempts=3)
    tokens = [o for o in results if isinstance(o, EphemeralToken)]
    errors = [o for o in results if not isinstance(o, EphemeralToken)]
    assert len({t.name for t in tokens}) == len(tokens)
    # With 30% failures and 3 attempts, about 0.3**3 = 2.7% of calls fail for good.
    assert len(errors) < 0.1 * calls
    assert faults.attempts > calls  # failures were retried
    assert elapsed < 20.0
    assert faults.max_connections_open <= 100  # the pool's limit held
    print(  # shown with -s: what the burst did
        f"{calls} calls, {faults.attempts} attempts, {len(errors)} errors, "
        f"{faults.connections_opened} connections, {elapsed:.2f}s"
    )
