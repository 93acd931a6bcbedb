"""The retry policy: which failures are retried, how long to wait, and when to give up.

One coroutine, `call_with_retries`, wraps an attempt. Attempts that fail with a retryable
error are repeated with exponential backoff and full jitter, honouring the service's own
hint (``Retry-After`` or ``RetryInfo``) when it gives one, within an optional overall deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs

from gemini_tokens._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
)

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "call_with_retries", "is_retryable", "set_testing"]

logger = logging.getLogger("gemini_tokens")

T = TypeVar("T")

#: Statuses worth another attempt; every other 4xx is the caller's mistake.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_testing = False


def set_testing(enabled: bool) -> None:
    """Make backoff sleeps instant (attempt counts are unchanged). For test suites.

    A server's ``Retry-After`` hint is still honoured against ``max_retry_wait``, so the
    "raise at once with ``retry_after``" behaviour stays testable.
    """
    global _testing
    _testing = bool(enabled)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How failed attempts are retried.

    Attributes:
        max_retries: Retries after the first attempt (so ``2`` means up to 3 attempts).
        initial_backoff: The first backoff ceiling, in seconds.
        backoff_factor: Each later ceiling is this many times the previous one.
        max_backoff: No backoff ceiling exceeds this many seconds.
        max_retry_wait: A server hint longer than this is not slept: the error is raised at
            once with ``retry_after`` set, so a web handler can answer its own client quickly.
    """

    max_retries: int = attrs.field(default=2)
    initial_backoff: float = 0.5
    backoff_factor: float = 2.0
    max_backoff: float = 8.0
    max_retry_wait: float = 20.0

    @max_retries.validator
    def _check(self, _: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("max_retries must be an integer >= 0")

    def backoff(self, retry_number: int) -> float:
        """Seconds to sleep before retry ``retry_number`` (1-based): full jitter."""
        growth = self.backoff_factor ** (retry_number - 1)
        ceiling = min(self.max_backoff, self.initial_backoff * growth)
        return random.uniform(0, ceiling)


def is_retryable(exc: BaseException) -> bool:
    """Whether an error from one attempt is worth another."""
    if isinstance(exc, APIStatusError):
        return exc.status_code in RETRYABLE_STATUSES
    return isinstance(exc, APIConnectionError)


def _describe(exc: APIError) -> str:
    if isinstance(exc, APIStatusError):
        return f"status {exc.status_code}"
    if isinstance(exc, APITimeoutError):
        return "timeout"
    return "connection error"


async def call_with_retries(
    attempt: Callable[[float | None], Awaitable[T]],
    policy: RetryPolicy,
    *,
    deadline: float | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or time runs out.

    Args:
        attempt: Called with the seconds left before the deadline (or None), it makes one
            HTTP attempt and raises an `APIError` on failure.
        policy: The retry policy.
        deadline: Seconds that all attempts and sleeps together may take.

    Raises:
        APIError: the last attempt's error, with ``attempts`` set.
    """
    loop = asyncio.get_running_loop()
    stop_at = None if deadline is None else loop.time() + deadline
    attempts = 0
    while True:
        attempts += 1
        remaining = None if stop_at is None else stop_at - loop.time()
        if remaining is not None and remaining <= 0:
            raise APITimeoutError(
                f"the deadline of {deadline:g}s expired before attempt {attempts}",
                attempts=attempts - 1,
            )
        try:
            return await attempt(remaining)
        except APIError as exc:
            exc.attempts = attempts
            if not is_retryable(exc) or attempts > policy.max_retries:
                raise
            hint = exc.retry_after if isinstance(exc, APIStatusError) else None
            if hint is not None and hint > policy.max_retry_wait:
                raise  # a long wait is the caller's decision, not ours
            delay = hint if hint is not None else policy.backoff(attempts)
            if _testing:
                delay = 0.0
            if stop_at is not None and loop.time() + delay >= stop_at:
                raise
            logger.info(
                "gemini_tokens: attempt %d of %d failed (%s); retrying in %.2fs",
                attempts,
                policy.max_retries + 1,
                _describe(exc),
                delay,
            )
            await asyncio.sleep(delay)
