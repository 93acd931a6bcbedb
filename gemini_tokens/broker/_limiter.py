"""Rate limits with the `limits` library: per caller and global, memory or Redis.

A request is counted once it passed validation: first against the caller's limits (all of
them at once), then, if the caller is within them, against the global ones, so that a
limited caller cannot spend the budget that protects the API key for everyone else.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from gemini_tokens._errors import ConfigurationError

__all__ = ["Limited", "Limiter", "LimiterUnavailable", "parse_limits", "storage_uri_for"]

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
        ConfigurationError: naming the setting and the unparsable entry.
    """
    limits = _import_limits()
    if value is None:
        return []
    entries = [value] if isinstance(value, str) else list(value)
    items: list[Any] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ConfigurationError(
                f"{name}: {entry!r} is not a rate limit string such as '5/minute'"
            )
        try:
            items.extend(limits.parse_many(entry))
        except ValueError:
            raise ConfigurationError(
                f"{name}: cannot parse {entry!r}; write limits such as '5/minute', "
                "'100/day' or '10 per hour'"
            ) from None
    return items


def storage_uri_for(uri: str) -> tuple[str, dict[str, Any]]:
    """The `limits` async storage URI and options for a ``memory://`` or ``redis://`` URI.

    Raises:
        ConfigurationError: an unknown scheme.
    """
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigurationError(
            f"storage_uri: {uri!r} is not a URI such as 'memory://' or 'redis://host:6379/0'"
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
    raise ConfigurationError(
        f"storage_uri: unknown scheme {scheme!r}; use 'memory://' (one process) or "
        "'redis://host:port/db' (many processes)"
    )


def _blocking_pool(scheme: str, rest: str) -> Any:
    """A pool that waits for a free connection, rather than redis-py's default one, which
    fails ("Too many connections") once more requests are in flight than it has."""
    try:
        from redis.asyncio import BlockingConnectionPool
    except ImportError:
        raise ConfigurationError(
            "storage_uri: Redis needs the `redis` package: pip install 'gemini-tokens[broker]'"
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
        raise ConfigurationError(f"storage_uri: {exc}") from None


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
            # every key, one thread hop per key, on almost every hit: 200 us a request at
            # 64 callers, growing with the number of callers.)
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

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return bool(self.caller_limits or self.global_limits)

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

    async def hit(self, caller_id: str) -> Limited | None:
        """Count one request for ``caller_id``; the limit hit, or None if within all.

        Raises:
            LimiterUnavailable: the storage failed (unreachable, timed out).
        """
        try:
            limited = await self._hit_all(self.caller_limits, ("caller", caller_id), "caller")
            if limited is None:
                limited = await self._hit_all(self.global_limits, ("global",), "global")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise LimiterUnavailable(type(exc).__name__) from None
        return limited

    async def _hit_all(
        self, items: Sequence[Any], identifiers: tuple[str, ...], scope: str
    ) -> Limited | None:
        if not items:
            return None
        ids = (_NAMESPACE, *identifiers)
        if self.kind == "memory":
            sync = self.sync_strategy
            results = [sync.hit(item, *ids) for item in items]
        elif len(items) == 1:
            results = [await self.strategy.hit(items[0], *ids)]
        else:  # all of them in one round trip
            results = await asyncio.gather(*(self.strategy.hit(item, *ids) for item in items))
        for item, ok in zip(items, results, strict=False):
            if not ok:
                if self.kind == "memory":
                    reset = self.sync_strategy.get_window_stats(item, *ids).reset_time
                else:
                    reset = (await self.strategy.get_window_stats(item, *ids)).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                return Limited(scope=scope, retry_after=wait, limit=str(item))
        return None
