"""Rate limits with the `limits` library: per caller and global, memory or Redis.

A request is counted once it passed validation, against the caller's limits (all of them
at once) and the global ones, so that a limited caller cannot spend the budget that
protects the API key for everyone else:

- Memory (one process): the caller's limits first, then, only if the caller is within
  them, the global ones. No round trips, so nothing to save.
- Redis (many replicas): the caller's and the global limits are hit together, in one round
  trip (`asyncio.gather` of `limits`' moving-window hits, each one script). A refusal then
  asks for the refused window's stats (a second round trip, on refusals only) and each
  process remembers it, in a bounded LRU (`REFUSED_MEMORY` entries), until the reset time
  Redis reported: the caller's further requests are refused locally, with the Retry-After
  Redis gave, counting down, without touching Redis. The trade-off: the one request that
  finds the caller limited has already counted against the global limits (they went out
  together), so a limited caller spends one global slot per replica each time a replica
  finds its window full, that is at most once per replica per slot its own window frees
  (a caller limited to 5/minute: at most 5 + 1 wasted global slots a minute per replica,
  however fast it retries), never one per request.
  A remembered refusal is exact, not an estimate: a moving window that is full cannot
  free a slot before the oldest of its entries expires, whatever the other replicas do,
  so Redis stays the authority for every request that is allowed. Global refusals are
  remembered the same way. Requests already in flight when the refusal comes back still
  reach Redis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from gemini_tokens._errors import ConfigurationError
from gemini_tokens.broker._errors import InvalidSettingError
from gemini_tokens.broker._http import UNAVAILABLE_RETRY_AFTER, Refusal

__all__ = [
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
#: Refusals (per caller, and the global one) each process remembers, least recent dropped.
REFUSED_MEMORY = 4096


@attrs.frozen
class Limited:
    """A limit was hit. ``scope`` is ``"caller"`` or ``"global"``."""

    scope: str
    retry_after: int
    limit: str


@attrs.frozen
class _Refused:
    """A refusal Redis gave, remembered until ``reset`` (a `time.time()`)."""

    scope: str
    reset: float
    limit: str

    def limited(self, now: float) -> Limited:
        return Limited(self.scope, max(1, math.ceil(self.reset - now)), self.limit)


class _RefusalMemory:
    """A bounded LRU of refusals by key, each forgotten at its reset time."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, ...], _Refused] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, ...], now: float) -> _Refused | None:
        refused = self._entries.get(key)
        if refused is None:
            return None
        if refused.reset <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return refused

    def put(self, key: tuple[str, ...], refused: _Refused) -> None:
        self._entries[key] = refused
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


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
        self.refused = _RefusalMemory(REFUSED_MEMORY)
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
        self, caller_id: str, limits: Sequence[Any] | None = None, key: str = "caller"
    ) -> Limited | None:
        """Count one request for ``caller_id``; the limit hit, or None if within all.

        With Redis, one round trip for the caller's and the global limits together, or
        none when this process remembers a refusal (the caller's or the global one) whose
        reset time has not come.

        Args:
            caller_id: Whom to count it for.
            limits: The per-caller limits to count against (default: ``rate_limits``).
            key: The per-caller counters' key (renewals count under ``"renewal"``).

        Raises:
            LimiterUnavailable: the storage failed (unreachable, timed out).
        """
        per_caller = self.caller_limits if limits is None else limits
        try:
            if self.kind == "memory":
                limited = await self._hit_all(per_caller, (key, caller_id), "caller")
                if limited is None:
                    limited = await self._hit_all(self.global_limits, ("global",), "global")
                return limited
            return await self._hit_redis(per_caller, (key, caller_id))
        except asyncio.CancelledError:
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
    ) -> None:
        """`hit`, as the broker answers it: nothing within the limits, else a `Refusal`.

        Args:
            caller_id: Whom to count it for.
            on_limiter_error: ``"allow"`` to let the request through when the storage is
                down (with a warning), ``"deny"`` to refuse it.
            limits: The per-caller limits (default: ``rate_limits``).
            key: The per-caller counters' key; a hit on them is the reason ``<key>_limit``.
            what: What the per-caller limits count, for the caller's message.

        Raises:
            Refusal: 429 (a limit, reason ``<key>_limit`` or ``global_limit``) or 503 (the
                storage down, failing closed).
        """
        per_caller = self.caller_limits if limits is None else limits
        if not per_caller and not self.global_limits:
            return
        try:
            limited = await self.hit(caller_id, per_caller, key)
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
        self, items: Sequence[Any], identifiers: tuple[str, ...], scope: str
    ) -> Limited | None:
        """One group of limits in memory (async, as the Redis path, so tests can stand a
        failing storage in for it)."""
        ids = (_NAMESPACE, *identifiers)
        refused = [item for item in items if not self.sync_strategy.hit(item, *ids)]
        if not refused:
            return None
        reset = self.sync_strategy.get_window_stats(refused[0], *ids).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        return Limited(scope=scope, retry_after=wait, limit=str(refused[0]))

    async def _hit_redis(
        self, per_caller: Sequence[Any], caller: tuple[str, ...]
    ) -> Limited | None:
        """The caller's and the global limits in one round trip; a refusal remembered."""
        now = time.time()
        for remembered in (self.refused.get(caller, now), self.refused.get(("global",), now)):
            if remembered is not None:
                return remembered.limited(now)
        groups = [(per_caller, caller, "caller"), (self.global_limits, ("global",), "global")]
        hits = [
            (item, (_NAMESPACE, *identifiers), identifiers, scope)
            for items, identifiers, scope in groups
            for item in items
        ]
        if not hits:
            return None
        results = await asyncio.gather(*(self.strategy.hit(item, *ids) for item, ids, _, _ in hits))
        for (item, ids, identifiers, scope), ok in zip(hits, results, strict=True):
            if not ok:
                return await self._refused(item, ids, identifiers, scope)
        return None

    async def _refused(
        self, item: Any, ids: tuple[str, ...], identifiers: tuple[str, ...], scope: str
    ) -> Limited:
        """A refusal by ``item``: its reset time from Redis, remembered until then."""
        try:
            stats = await self.strategy.get_window_stats(item, *ids)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the refusal stands; only its reset time is unknown
            logger.warning("token broker: reading a refused window failed: %r", exc)
            return Limited(scope=scope, retry_after=1, limit=str(item))
        now = time.time()
        refused = _Refused(scope, float(stats.reset_time), str(item))
        if stats.remaining <= 0 and refused.reset > now:
            # Full until reset: no replica can be allowed a slot before then.
            self.refused.put(identifiers, refused)
        return refused.limited(now)
