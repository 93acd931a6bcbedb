"""The retry policy: which failures are retried, how long to wait, and when to give up.

One coroutine, `call_with_retries`, wraps an attempt. Attempts that fail with a retryable
error are repeated with exponential backoff and full jitter, honouring the service's own
hint (``Retry-After`` or ``RetryInfo``) when it gives one, within an optional overall deadline.

Minting is not idempotent: an attempt that timed out may still have minted a token, so a
retry can mint a second one. That is harmless (an unused token simply expires), and it is
why a 2xx answer that cannot be read is never retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs

from gemini_tokens._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    CertificateVerificationError,
    ProxyAuthenticationError,
)

__all__ = [
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "call_with_retries",
    "is_retryable",
    "parse_retry_after",
    "set_testing",
]

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


def _seconds(name: str, *, minimum: float = 0.0) -> Callable[[object, object, object], None]:
    def check(_: object, __: object, value: object) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < minimum
        ):
            raise ValueError(f"{name} must be a finite number >= {minimum:g}")

    return check


def _retries(_: object, __: object, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("max_retries must be an integer >= 0")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How failed attempts are retried.

    The defaults suit a request that normally takes well under a second: up to 3 attempts,
    backoff ceilings of 0.5 s then 1 s (growing to at most 8 s with more retries).

    Attributes:
        max_retries: Retries after the first attempt (so ``2`` means up to 3 attempts).
        initial_backoff: The first backoff ceiling, in seconds.
        backoff_factor: Each later ceiling is this many times the previous one (>= 1).
        max_backoff: No backoff ceiling exceeds this many seconds.
        max_retry_wait: A server hint longer than this is not slept: the error is raised at
            once with ``retry_after`` set, so a web handler can answer its own client quickly.

    Raises:
        ValueError: a negative, non-finite or non-numeric setting.
    """

    max_retries: int = attrs.field(default=2, validator=_retries)
    initial_backoff: float = attrs.field(default=0.5, validator=_seconds("initial_backoff"))
    backoff_factor: float = attrs.field(
        default=2.0, validator=_seconds("backoff_factor", minimum=1.0)
    )
    max_backoff: float = attrs.field(default=8.0, validator=_seconds("max_backoff"))
    max_retry_wait: float = attrs.field(default=20.0, validator=_seconds("max_retry_wait"))

    def backoff_ceiling(self, retry_number: int) -> float:
        """The most `backoff` may return before retry ``retry_number`` (1-based)."""
        if self.initial_backoff <= 0 or self.max_backoff <= 0:
            return 0.0
        if self.initial_backoff >= self.max_backoff:
            return float(self.max_backoff)
        exponent = max(0, retry_number - 1)
        # Compared in log space first: a huge retry number must not overflow a float power.
        # (The ratio is > 1 here, and may be inf: both are fine for log.)
        if exponent * math.log(self.backoff_factor) >= math.log(
            self.max_backoff / self.initial_backoff
        ):
            return float(self.max_backoff)
        try:
            return float(
                min(self.max_backoff, self.initial_backoff * self.backoff_factor**exponent)
            )
        except OverflowError:  # only with a denormal initial_backoff
            return float(self.max_backoff)

    def backoff(self, retry_number: int) -> float:
        """Seconds to sleep before retry ``retry_number`` (1-based): full jitter."""
        return random.uniform(0.0, self.backoff_ceiling(retry_number))


def is_retryable(exc: BaseException) -> bool:
    """Whether an error from one attempt is worth another.

    Retried: 408, 429, 500, 502, 503, 504, and every `APIConnectionError` (refused, reset,
    server disconnects, timeouts, a proxy that answers its CONNECT with 502 or 503) but a
    `CertificateVerificationError` (a certificate that could not be verified stays so)
    and a `ProxyAuthenticationError` (credentials the proxy refused stay wrong, and each
    retry would send them again). Not retried: other statuses, and
    `InvalidResponseError` (a 2xx answer may have minted a token).
    """
    if isinstance(exc, APIStatusError):
        return exc.status_code in RETRYABLE_STATUSES
    return isinstance(exc, APIConnectionError) and not isinstance(
        exc, (CertificateVerificationError, ProxyAuthenticationError)
    )


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns None for an absent or unreadable value; a date in the past is 0.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        from email.utils import parsedate_to_datetime  # rare: an HTTP-date hint

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _describe(exc: APIError) -> str | int:
    if isinstance(exc, APIStatusError):
        return exc.status_code
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

    Each retry is logged at INFO on the ``gemini_tokens`` logger, with ``attempt``,
    ``max_attempts``, ``status`` and ``delay`` also set on the record (never a secret).

    Args:
        attempt: Called with the seconds left before the deadline (or None), it makes one
            HTTP attempt and raises an `APIError` on failure.
        policy: The retry policy.
        deadline: Seconds that all attempts and sleeps together may take.

    Raises:
        APIError: the last attempt's error, with ``attempts`` set. It is raised without a
            further sleep when the server's hint exceeds ``policy.max_retry_wait`` or when
            the next sleep would end past the deadline.
    """
    # The clock is read only when needed: a first attempt without a deadline never does.
    # (get_running_loop() costs a system call on Python < 3.12.)
    loop = None if deadline is None else asyncio.get_running_loop()
    stop_at = None if loop is None or deadline is None else loop.time() + deadline
    attempts = 0
    last: APIError | None = None
    try:
        while True:
            remaining = None if loop is None or stop_at is None else stop_at - loop.time()
            if remaining is not None and remaining <= 0:
                # A late wake-up: the last real failure says more than "out of time".
                if last is not None:
                    raise last
                raise APITimeoutError(
                    f"the deadline of {deadline:g}s expired before any attempt", attempts=0
                )
            attempts += 1
            try:
                return await attempt(remaining)
            except APIError as exc:
                exc.attempts = attempts
                last = exc
                loop = loop or asyncio.get_running_loop()
                delay = _delay_or_raise(exc, policy, attempts, loop.time(), stop_at)
            # Sleep outside the except block: a cancellation here is not "during" the error.
            await asyncio.sleep(delay)
    finally:
        last = None  # break the exception -> traceback -> frame -> exception cycle


def _delay_or_raise(
    exc: APIError, policy: RetryPolicy, attempts: int, now: float, stop_at: float | None
) -> float:
    """The sleep before the next attempt, or re-raise ``exc`` when there is none."""
    if not is_retryable(exc) or attempts > policy.max_retries:
        raise exc
    hint = exc.retry_after if isinstance(exc, APIStatusError) else None
    if hint is not None and hint > policy.max_retry_wait:
        raise exc  # a long wait is the caller's decision, not ours
    delay = hint if hint is not None else policy.backoff(attempts)
    if _testing:
        delay = 0.0
    if stop_at is not None and now + delay >= stop_at:
        raise exc  # sleeping would outlast the deadline: fail now, not later
    status = _describe(exc)
    logger.info(
        "gemini_tokens: attempt %d of %d failed (%s); retrying in %.2fs",
        attempts,
        policy.max_retries + 1,
        f"status {status}" if isinstance(status, int) else status,
        delay,
        extra={
            "attempt": attempts,
            "max_attempts": policy.max_retries + 1,
            "status": status,
            "delay": delay,
        },
    )
    return delay
