"""Rate limits with the `limits` library: per caller and global, memory or Redis.

A request is counted once it passed validation: first against the caller's limits (all of
them at once), then, only if the caller is within them, against the global ones, so that a
limited caller cannot spend the budget that protects the API key for everyone else.

- Memory (one process): the same order, with no round trips.
- Redis (many replicas): at most two round trips per request, both with `limits`' public
  API (`MovingWindowRateLimiter.hit` and `get_window_stats`, one script each):

  1. the caller's limits, hit together (`asyncio.gather`);
  2. if one refused: its window's stats, for ``Retry-After`` (nothing global is touched);
     else the global limits, hit together with their windows' stats, so that a global
     refusal has its reset time without a third round trip.

  Redis is the authority for every request: nothing is remembered between requests.

Other work on the same storage rides in these round trips (``along``, an `Along`: the
minute budgets' reads go out with the caller's hits, their charge with the global ones), so
that the budgets add commands, not round trips.

A request the global limits refuse keeps the caller's slot it spent: `limits` cannot take
a hit back, and testing the global window first would cost a round trip on every request
to spare a caller one slot in a rare event (the key's own budget spent). The caller's
refusals, the common ones, spend nothing global.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, Protocol

import attrs

from gemini_tokens import ConfigurationError
from gemini_tokens.broker._errors import InvalidSettingError
from gemini_tokens.broker._http import UNAVAILABLE_RETRY_AFTER, Refusal

__all__ = [
    "Along",
    "Limited",
    "Limiter",
    "LimiterUnavailable",
    "parse_limits",
    "redacted_uri",
    "storage_uri_for",
]

logger = logging.getLogger("gemini_tokens.broker")

_NAMESPACE = "gemini_tokens"
#: Seconds a Redis connect or command may take before the limiter counts as down.
REDIS_TIMEOUT = 2.0
_MEMORY = ("memory",)
_REDIS = ("redis", "rediss", "redis+sentinel", "redis+cluster", "redis+unix")
#: Schemes whose connections come from one pool that waits when all are busy.
_POOLED = ("redis", "rediss", "redis+unix")
#: Connections to one Redis per process; a request waits (up to REDIS_TIMEOUT) for one.
REDIS_MAX_CONNECTIONS = 64


@attrs.frozen
class Limited:
    """A limit was hit. ``scope`` is ``"caller"`` or ``"global"``."""

    scope: str
    retry_after: int
    limit: str


class LimiterUnavailable(Exception):
    """The limiter's storage could not be reached."""


class Along(Protocol):
    """Work sent in the limiter's round trips: ``first`` with the caller's hits, ``then``
    (only if the caller is within its limits) with the global ones. Either may raise a
    `Refusal`, which ends the request as it is."""

    def first(self) -> Awaitable[None]: ...

    def then(self) -> Awaitable[None]: ...


def _import_limits() -> Any:
    try:
        import limits
        import limits.aio.strategies
        import limits.storage
        import limits.strategies
    except ImportError:  # pragma: no cover - the broker extra installs it
        raise ConfigurationError(
            "the token broker needs the `limits` package: pip install 'gemini-tokens[broker]'"
        ) from None
    return limits


def parse_limits(name: str, value: Iterable[str] | str | None) -> list[Any]:
    """``["5/minute", "100/day"]`` (or ``"5/minute;100/day"``) as `limits` items.

    Raises:
        InvalidSettingError: ``name`` as the field, the unparsable entry in the rule.
    """
    limits = _import_limits()
    if value is None:
        return []
    entries = [value] if isinstance(value, str) else list(value)
    items: list[Any] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidSettingError(
                name, f"{entry!r} is not a rate limit string such as '5/minute'"
            )
        try:
            items.extend(limits.parse_many(entry))
        except ValueError:
            raise InvalidSettingError(
                name,
                f"cannot parse {entry!r}; write limits such as '5/minute', "
                "'100/day' or '10 per hour'",
            ) from None
    return items


def storage_uri_for(uri: str) -> tuple[str, dict[str, Any]]:
    """The `limits` async storage URI and options for a ``memory://`` or ``redis://`` URI.

    Raises:
        InvalidSettingError: ``storage_uri``: not a URI, an unknown scheme, or a Redis URL
            redis-py cannot read (never with the password).
    """
    if not isinstance(uri, str) or "://" not in uri:
        shown = redacted_uri(uri) if isinstance(uri, str) else uri
        raise InvalidSettingError(
            "storage_uri",
            f"{shown!r} is not a URI such as 'memory://' or 'redis://host:6379/0'",
        )
    scheme = uri.split("://", 1)[0].lower().removeprefix("async+")
    rest = uri.split("://", 1)[1]
    if scheme in _MEMORY:
        return "async+memory://", {}
    if scheme in _REDIS:
        options: dict[str, Any] = {
            "implementation": "redispy",
            "socket_connect_timeout": REDIS_TIMEOUT,
            "socket_timeout": REDIS_TIMEOUT,
        }
        if scheme in _POOLED:
            options["connection_pool"] = _blocking_pool(uri.split("://", 1)[0], rest)
        return f"async+{scheme}://{rest}", options
    raise InvalidSettingError(
        "storage_uri",
        f"unknown scheme {scheme!r}; use 'memory://' (one process) or "
        "'redis://host:port/db' (many processes)",
    )


def redacted_uri(uri: str) -> str:
    """``uri`` with the password of its user part (``redis://:secret@host``) as ``***``.

    A user part without a colon (read as a password by some clients) is hidden whole, and
    so is everything before an ``@`` in a string without ``://`` (a URI mistyped).

    Args:
        uri: A storage URI such as ``redis://:password@redis:6379/0``.

    Returns:
        The URI safe to log or show.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        _, at, tail = uri.rpartition("@")
        return f"***@{tail}" if at else uri
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return uri
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:***" if colon else "***"
    return f"{scheme}://{shown}@{host}{slash}{path}"


def _blocking_pool(scheme: str, rest: str) -> Any:
    """A pool that waits for a free connection, rather than redis-py's default one, which
    fails ("Too many connections") once more requests are in flight than it has."""
    try:
        from redis.asyncio import BlockingConnectionPool
    except ImportError:
        raise InvalidSettingError(
            "storage_uri", "Redis needs the `redis` package: pip install 'gemini-tokens[broker]'"
        ) from None
    scheme = scheme.lower().removeprefix("async+")
    url = f"{'unix' if scheme == 'redis+unix' else scheme}://{rest}"
    try:
        return BlockingConnectionPool.from_url(
            url,
            max_connections=REDIS_MAX_CONNECTIONS,
            timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
        )
    except ValueError as exc:
        raise InvalidSettingError("storage_uri", str(exc)) from None


class Limiter:
    """The broker's rate limits, on one `limits` storage.

    Args:
        rate_limits: Per caller (keyed by `Caller.id`).
        global_rate_limits: For all callers together.
        storage_uri: ``memory://`` or a ``redis://`` URI.

    Raises:
        ConfigurationError: an unparsable limit, an unknown scheme, or `redis` missing.
    """

    def __init__(
        self,
        rate_limits: Iterable[str] | str | None,
        global_rate_limits: Iterable[str] | str | None,
        storage_uri: str,
    ) -> None:
        limits = _import_limits()
        self.strategy: Any = None
        self.sync_strategy: Any = None
        self.caller_limits = parse_limits("rate_limits", rate_limits)
        self.global_limits = parse_limits("global_rate_limits", global_rate_limits)
        uri, options = storage_uri_for(storage_uri)
        self.kind = "memory" if uri.startswith("async+memory") else "redis"
        if self.kind == "memory":
            # limits' sync memory storage: its hits never wait, and it sweeps expired
            # entries in a thread at most every 10 ms. (Its async twin starts a sweep of
            # every key, one thread hop per key, on almost every hit: measured on this
            # limiter's `enforce`, 62 against 16 us of CPU a request at 64 callers, 102
            # against 23 at 512, growing with the number of callers.)
            self.storage = limits.storage.MemoryStorage()
            self.sync_strategy = limits.strategies.MovingWindowRateLimiter(self.storage)
            return
        try:
            # Keep this reference: the strategy holds only a weak one to its storage.
            self.storage = limits.storage.storage_from_string(uri, **options)
        except limits.errors.ConfigurationError as exc:
            raise ConfigurationError(
                f"storage_uri: {exc}; for Redis: pip install 'gemini-tokens[broker]'"
            ) from None
        except ValueError as exc:
            raise ConfigurationError(f"storage_uri: {exc}") from None
        self.strategy = limits.aio.strategies.MovingWindowRateLimiter(self.storage)

    async def check(self) -> bool:
        """Whether the storage answers (memory always does; Redis: a PING)."""
        try:
            if self.kind == "memory":
                return bool(self.storage.check())
            return bool(await asyncio.wait_for(self.storage.check(), REDIS_TIMEOUT))
        except Exception:
            return False

    async def aclose(self) -> None:
        """Close the storage's connections (Redis); later hits reconnect."""
        bridge = getattr(self.storage, "bridge", None)
        if bridge is None:
            return
        try:
            connection = bridge.get_connection()
            await connection.connection_pool.disconnect()
        except Exception as exc:  # closing must not fail a shutdown
            logger.debug("token broker: closing the limiter's storage failed: %r", exc)

    async def hit(
        self,
        caller_id: str,
        limits: Sequence[Any] | None = None,
        key: str = "caller",
        along: Along | None = None,
    ) -> Limited | None:
        """Count one request for ``caller_id``; the limit hit, or None if within all.

        The caller's limits first; the global ones only if the caller is within theirs.
        With Redis, at most two round trips (see the module's docstring).

        Args:
            caller_id: Whom to count it for.
            limits: The per-caller limits to count against (default: ``rate_limits``).
            key: The per-caller counters' key (renewals count under ``"renewal"``).
            along: Work sent in the same round trips (see `Along`).

        Raises:
            LimiterUnavailable: the storage failed (unreachable, timed out).
            Refusal: what ``along`` raised.
        """
        per_caller = self.caller_limits if limits is None else limits
        try:
            limited = await self._hit_all(
                per_caller, (key, caller_id), "caller", False, along and along.first
            )
            if limited is None:
                # The last group: its windows are read along with the hits.
                limited = await self._hit_all(
                    self.global_limits, ("global",), "global", True, along and along.then
                )
            return limited
        except (asyncio.CancelledError, Refusal):
            raise
        except Exception as exc:
            raise LimiterUnavailable(type(exc).__name__) from None

    async def enforce(
        self,
        caller_id: str,
        on_limiter_error: str,
        limits: Sequence[Any] | None = None,
        key: str = "caller",
        what: str = "tokens",
        along: Along | None = None,
    ) -> None:
        """`hit`, as the broker answers it: nothing within the limits, else a `Refusal`.

        Args:
            caller_id: Whom to count it for.
            on_limiter_error: ``"allow"`` to let the request through when the storage is
                down (with a warning), ``"deny"`` to refuse it.
            limits: The per-caller limits (default: ``rate_limits``).
            key: The per-caller counters' key; a hit on them is the reason ``<key>_limit``.
            what: What the per-caller limits count, for the caller's message.
            along: Work sent in the same round trips (see `Along`); it runs, and may
                refuse, even without limits.

        Raises:
            Refusal: 429 (a limit, reason ``<key>_limit`` or ``global_limit``) or 503 (the
                storage down, failing closed), or what ``along`` raised.
        """
        per_caller = self.caller_limits if limits is None else limits
        if not per_caller and not self.global_limits and along is None:
            return
        try:
            limited = await self.hit(caller_id, per_caller, key, along)
        except LimiterUnavailable as exc:
            if on_limiter_error == "allow":
                logger.warning("token broker: rate limit storage unreachable (%s); allowing", exc)
                return
            logger.error("token broker: rate limit storage unreachable (%s); refusing", exc)
            raise Refusal(
                503,
                "limited",
                "limiter_unavailable",
                "the token service is unavailable; try again later",
                retry_after=UNAVAILABLE_RETRY_AFTER,
            ) from None
        if limited is None:
            return
        mine = limited.scope == "caller"
        raise Refusal(
            429,
            "limited",
            f"{key}_limit" if mine else "global_limit",
            f"too many {what if mine else 'tokens'}: {'you have' if mine else 'everyone has'} "
            f"reached {limited.limit}; try again in {limited.retry_after}s",
            retry_after=limited.retry_after,
        )

    async def _hit_all(
        self,
        items: Sequence[Any],
        identifiers: tuple[str, ...],
        scope: str,
        read_along: bool,
        extra: Any = None,
    ) -> Limited | None:
        """Hit every limit of one group; the first refusal, with its window's reset.

        With Redis the hits go out together (one round trip); ``read_along`` sends the
        windows' stats with them, else a refusal reads its window in a second round trip.
        (Async for memory too, so that tests can stand a failing storage in for it.)
        ``extra``: a coroutine function sent with the hits (in memory: before them).
        """
        if not items:
            if extra is not None:
                await extra()
            return None
        ids = (_NAMESPACE, *identifiers)
        if self.kind == "memory":
            if extra is not None:
                await extra()
            hits = [self.sync_strategy.hit(item, *ids) for item in items]
            for item, ok in zip(items, hits, strict=True):
                if not ok:
                    return _limited(scope, item, self.sync_strategy.get_window_stats(item, *ids))
            return None
        strategy = self.strategy
        reads = [strategy.get_window_stats(item, *ids) for item in items] if read_along else []
        extras = [extra()] if extra is not None else []
        results = await asyncio.gather(
            *(strategy.hit(item, *ids) for item in items), *reads, *extras
        )
        hits = results[: len(items)]
        windows = results[len(items) : len(items) + len(reads)]
        for index, (item, ok) in enumerate(zip(items, hits, strict=True)):
            if not ok:
                stats = windows[index] if windows else await strategy.get_window_stats(item, *ids)
                return _limited(scope, item, stats)
        return None


def _limited(scope: str, item: Any, stats: Any) -> Limited:
    """A refusal by ``item``: ``Retry-After`` is its window's reset (`limits`' stats)."""
    return Limited(scope, max(1, math.ceil(stats.reset_time - time.time())), str(item))
