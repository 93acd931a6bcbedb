"""The retry policy on its own: backoff, hints, what is retried, the deadline, the logs.

No network here: `call_with_retries` drives fake attempts. Randomness is pinned (seeded or
patched) wherever a test compares numbers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import random
import time
import types
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gemini_tokens
from gemini_tokens import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    CertificateVerificationError,
    InvalidResponseError,
    ProxyAuthenticationError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ValidationError,
    _retry,
)
from gemini_tokens._errors import error_from_response
from gemini_tokens._retry import (
    RETRYABLE_STATUSES,
    call_with_retries,
    is_retryable,
    parse_retry_after,
)

from .fault_server import SLACK

# -- the policy's numbers --------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == 2
    assert policy.initial_backoff == 0.5
    assert policy.backoff_factor == 2.0
    assert policy.max_backoff == 8.0
    assert policy.max_retry_wait == 20.0


def test_ceilings_grow_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy()
    ceilings = [policy.backoff_ceiling(n) for n in range(1, 9)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]


def test_a_huge_retry_number_does_not_overflow() -> None:
    started = time.monotonic()
    assert RetryPolicy().backoff_ceiling(10**9) == 8.0
    assert RetryPolicy(backoff_factor=1.0, max_backoff=1.0).backoff_ceiling(10**6) == 0.5
    assert time.monotonic() - started < 1.0


def test_full_jitter_draws_between_zero_and_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        calls.append((low, high))
        return high / 3

    monkeypatch.setattr(random, "uniform", uniform)
    policy = RetryPolicy(initial_backoff=0.25, backoff_factor=3.0, max_backoff=1.0)
    assert [policy.backoff(n) for n in (1, 2, 3)] == [0.25 / 3, 0.75 / 3, 1.0 / 3]
    assert calls == [(0.0, 0.25), (0.0, 0.75), (0.0, 1.0)]


def test_full_jitter_spreads_over_the_whole_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full jitter, not "equal jitter": draws reach near zero and near the ceiling."""
    monkeypatch.setattr(random, "uniform", random.Random(1234).uniform)  # seeded, not global
    draws = [RetryPolicy().backoff(3) for _ in range(2000)]  # ceiling 2.0
    assert all(0.0 <= d <= 2.0 for d in draws)
    assert min(draws) < 0.05
    assert max(draws) > 1.95
    assert 0.9 < sum(draws) / len(draws) < 1.1


@pytest.mark.parametrize(
    "settings",
    [
        {"max_retries": -1},
        {"max_retries": 1.0},
        {"max_retries": True},
        {"initial_backoff": -0.1},
        {"initial_backoff": math.nan},
        {"backoff_factor": 0.5},
        {"backoff_factor": math.inf},
        {"max_backoff": -1},
        {"max_retry_wait": math.inf},
        {"max_retry_wait": "20"},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**settings)


def test_policy_is_a_frozen_value() -> None:
    policy = RetryPolicy(max_retries=4)
    assert policy == RetryPolicy(max_retries=4)
    assert hash(policy) == hash(RetryPolicy(max_retries=4))
    with pytest.raises(AttributeError):
        policy.max_retries = 1  # type: ignore[misc]


# -- what is retried -------------------------------------------------------------------------------


def status_error(code: int, retry_after: float | None = None) -> APIStatusError:
    return error_from_response(code, b"", retry_after_header=retry_after)


def test_exactly_the_documented_statuses_are_retried() -> None:
    retried = {code for code in range(100, 600) if is_retryable(status_error(code))}
    assert retried == {408, 429, 500, 502, 503, 504} == RETRYABLE_STATUSES


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (APIConnectionError("reset"), True),
        (APITimeoutError("slow"), True),
        (CertificateVerificationError("untrusted CA"), False),  # it never heals
        (ProxyAuthenticationError("407 from the proxy"), False),  # wrong stays wrong
        (InvalidResponseError("no name"), False),
        (BadRequestError("bad", status_code=400), False),
        (ValidationError("uses", "bad"), False),
        (RuntimeError("bug"), False),
    ],
)
def test_errors_other_than_statuses(exc: BaseException, retried: bool) -> None:
    assert is_retryable(exc) is retried


# -- server hints ----------------------------------------------------------------------------------

NOW = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("Tue, 06 May 2031 07:08:39 GMT", 30.0),
        ("Tuesday, 06-May-31 07:09:09 GMT", 60.0),  # RFC 850, still accepted by HTTP
        ("Tue, 06 May 2031 07:00:00 GMT", 0.0),  # already past
        ("Tue, 06 May 2031 07:08:39 -0000", 30.0),  # "-0000": UTC, as a naive datetime
        ("", None),
        (None, None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("1e999", None),
        ("Tue, 99 Foo 2031 25:61:61 GMT", None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@given(st.text(max_size=40))
def test_retry_after_never_raises(header: str) -> None:
    seconds = parse_retry_after(header)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [("1.5s", 1.5), ("3s", 3.0), ("0.000001s", 0.000001), ("0s", 0.0)]
    + [(bad, None) for bad in ("1.5", "-1s", "infs", "nans", "s", "", None, 5)],
)
def test_retry_info_delay(delay: object, seconds: float | None) -> None:
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "slow down",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}],
        }
    }
    exc = error_from_response(429, json.dumps(body).encode())
    assert isinstance(exc, RateLimitError)
    assert exc.retry_after == seconds


# -- call_with_retries -----------------------------------------------------------------------------


def scripted(*outcomes: BaseException | str) -> tuple[Callable[..., Any], list[float | None]]:
    """An attempt function that fails or succeeds as scripted, recording ``remaining``."""
    seen: list[float | None] = []
    queue = list(outcomes)

    async def attempt(remaining: float | None) -> str:
        seen.append(remaining)
        outcome = queue.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return attempt, seen


FAST = RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.001)


async def test_success_after_retries() -> None:
    attempt, seen = scripted(status_error(503), APIConnectionError("reset"), "token")
    assert await call_with_retries(attempt, FAST) == "token"
    assert seen == [None, None, None]


async def test_the_last_error_is_raised_with_attempts() -> None:
    errors = [status_error(503), status_error(502), status_error(500)]
    attempt, _ = scripted(*errors)
    with pytest.raises(ServerError) as caught:
        await call_with_retries(attempt, FAST)
    assert caught.value is errors[-1]
    assert caught.value.attempts == 3
    assert "after 3 attempts" in str(caught.value)


async def test_a_final_connection_error_says_how_many_attempts() -> None:
    attempt, _ = scripted(*(APIConnectionError("reset") for _ in range(3)))
    with pytest.raises(APIConnectionError) as caught:
        await call_with_retries(attempt, FAST)
    assert caught.value.attempts == 3
    assert str(caught.value) == "reset (after 3 attempts)"


async def test_a_non_retryable_error_stops_at_once() -> None:
    attempt, seen = scripted(status_error(400), "token")
    with pytest.raises(BadRequestError) as caught:
        await call_with_retries(attempt, FAST)
    assert caught.value.attempts == 1
    assert len(seen) == 1


async def test_an_unexpected_exception_is_not_retried_or_wrapped() -> None:
    attempt, seen = scripted(KeyError("bug"), "token")
    with pytest.raises(KeyError):
        await call_with_retries(attempt, FAST)
    assert len(seen) == 1


async def test_zero_retries_means_one_attempt() -> None:
    attempt, seen = scripted(status_error(503), "token")
    with pytest.raises(ServerError):
        await call_with_retries(attempt, RetryPolicy(max_retries=0))
    assert len(seen) == 1


async def test_a_hint_longer_than_max_retry_wait_is_raised_at_once() -> None:
    attempt, seen = scripted(status_error(429, retry_after=20.5), "token")
    started = time.monotonic()
    with pytest.raises(RateLimitError) as caught:
        await asyncio.wait_for(call_with_retries(attempt, RetryPolicy()), 5)  # guard, not hang
    assert time.monotonic() - started < SLACK
    assert caught.value.retry_after == 20.5
    assert caught.value.attempts == 1
    assert len(seen) == 1


async def test_a_hint_up_to_max_retry_wait_is_slept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gemini_tokens")
    attempt, _ = scripted(status_error(429, retry_after=0.2), "token")
    started = time.monotonic()
    assert await call_with_retries(attempt, RetryPolicy(max_retry_wait=0.2)) == "token"
    assert 0.2 <= time.monotonic() - started <= 0.2 + SLACK
    (record,) = caplog.records
    assert record.delay == 0.2  # type: ignore[attr-defined]


async def test_remaining_time_shrinks_and_the_deadline_stops_the_sleeps() -> None:
    errors = [status_error(503, retry_after=0.1) for _ in range(10)]
    attempt, seen = scripted(*errors)
    started = time.monotonic()
    with pytest.raises(ServerError) as caught:
        await call_with_retries(attempt, RetryPolicy(max_retries=9), deadline=0.35)
    elapsed = time.monotonic() - started
    # Attempts at about 0, 0.1, 0.2 and 0.3 s; a fifth would start after the deadline.
    # (Three if a loaded machine oversleeps; never the ten the policy alone allows.)
    assert caught.value.attempts == len(seen)
    assert 3 <= len(seen) <= 4
    assert elapsed < 0.35 + SLACK
    remaining = [r for r in seen if r is not None]
    assert len(remaining) == len(seen)
    assert remaining == sorted(remaining, reverse=True)
    assert 0.3 < remaining[0] <= 0.35


async def test_a_deadline_too_short_for_any_attempt() -> None:
    attempt, seen = scripted("token")
    with pytest.raises(APITimeoutError, match="expired before any attempt") as caught:
        # 1e-12 s vanishes when added to the loop's clock: the deadline is already over.
        await call_with_retries(attempt, FAST, deadline=1e-12)
    assert caught.value.attempts == 0
    assert seen == []


async def test_a_late_wake_up_raises_the_last_real_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a sleep overshoots the deadline, the caller gets the service's error, not ours."""
    real_sleep = asyncio.sleep

    async def oversleep(delay: float) -> None:
        await real_sleep(delay + 0.2)

    # Only the retry module's view of asyncio changes; the event loop is untouched.
    fake = types.SimpleNamespace(sleep=oversleep, get_running_loop=asyncio.get_running_loop)
    monkeypatch.setattr(_retry, "asyncio", fake)
    error = status_error(503, retry_after=0.0)
    attempt, seen = scripted(error, "token")
    with pytest.raises(ServerError) as caught:
        await call_with_retries(attempt, FAST, deadline=0.1)
    assert caught.value is error
    assert caught.value.attempts == 1
    assert len(seen) == 1


async def test_each_retry_is_logged_at_info_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    attempt, _ = scripted(
        status_error(503), APITimeoutError("slow"), APIConnectionError("reset"), "token"
    )
    await call_with_retries(attempt, RetryPolicy(max_retries=3, initial_backoff=0.001))
    records = [r for r in caplog.records if r.name == "gemini_tokens"]
    assert [r.levelno for r in records] == [logging.INFO] * 3
    assert [r.attempt for r in records] == [1, 2, 3]  # type: ignore[attr-defined]
    assert [r.max_attempts for r in records] == [4, 4, 4]  # type: ignore[attr-defined]
    assert [r.status for r in records] == [503, "timeout", "connection error"]  # type: ignore[attr-defined]
    for record in records:
        assert 0 <= record.delay <= 0.004  # type: ignore[attr-defined]
    assert (
        records[0]
        .getMessage()
        .startswith("gemini_tokens: attempt 1 of 4 failed (status 503); retrying in ")
    )


async def test_set_testing_makes_backoff_instant_but_keeps_attempts() -> None:
    slow = RetryPolicy(max_retries=3, initial_backoff=5.0, max_backoff=5.0)
    gemini_tokens.set_testing(True)
    try:
        attempt, seen = scripted(status_error(503), status_error(503), status_error(503), "ok")
        started = time.monotonic()
        assert await call_with_retries(attempt, slow) == "ok"
        assert time.monotonic() - started < SLACK
        assert len(seen) == 4
        # A hint beyond max_retry_wait is still raised, so that path stays testable.
        attempt, _ = scripted(status_error(429, retry_after=60.0))
        with pytest.raises(RateLimitError):
            await call_with_retries(attempt, slow)
    finally:
        gemini_tokens.set_testing(False)


async def test_cancelling_during_the_sleep_stops_everything() -> None:
    attempt, seen = scripted(status_error(503, retry_after=10.0), "token")
    task = asyncio.create_task(call_with_retries(attempt, RetryPolicy()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(seen) == 1


def test_errors_carry_attempts_as_a_plain_attribute() -> None:
    for exc in (
        APIConnectionError("x"),
        InvalidResponseError("x"),
        status_error(500),
    ):
        assert isinstance(exc, APIError)
        assert exc.attempts == 1
        exc.attempts = 2
        assert "after 2 attempts" in str(exc)


def test_default_timeouts_fit_a_sub_second_request() -> None:
    """Separate connect and total timeouts, per attempt; a number sets the total."""
    from gemini_tokens import Timeout
    from gemini_tokens._config import MAX_RESPONSE_BYTES, resolve_timeout

    assert Timeout() == Timeout(connect=10.0, total=30.0)
    assert resolve_timeout(None) == Timeout()
    assert resolve_timeout(5) == Timeout(connect=5.0, total=5.0)
    assert resolve_timeout(60) == Timeout(connect=10.0, total=60.0)
    assert MAX_RESPONSE_BYTES == 1024 * 1024
