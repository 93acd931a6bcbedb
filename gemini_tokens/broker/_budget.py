"""Live-minute budgets and cut-offs per caller, on the rate limits' storage.

A budget (``live_minutes=["60/day"]`` per caller, ``global_live_minutes=["20000/day"]`` for
everyone) is a `limits` sliding-window counter counted in minutes: every token is charged
the minutes of its window (from now to its ``expireTime``, rounded up) with
``SlidingWindowCounterRateLimiter.hit(item, *ids, cost=minutes)``. What is counted is the
minutes *granted*, not the minutes used: the service reports no usage to the broker.

A counter per window, not an entry per minute (a moving window's): a budget costs the same
whatever it holds. A window starts with its first charge; what is left is the budget less
the current window's minutes and the previous window's, weighed by how much of the current
window is still to run (`limits`' approximation). With Redis these are `limits`' scripts,
which check and add atomically and refuse without counting; in memory, `_Counters` does the
same, window for window (`limits`' own memory windows start on the epoch's multiples, so a
day's budget would come back at midnight UTC in one process and a day after its first use
with Redis).

A request's budget work rides in the limiter's two round trips (`Limiter.hit`'s ``along``):

1. with the caller's rate-limit hits: the suspension, and every budget's window stats;
   a suspended caller is refused (403 ``suspended``), a budget under one minute too (429
   ``budget_exhausted``, ``Retry-After`` when a minute comes back); else the cost is the
   token's minutes, cut to the tightest budget's remaining minutes;
2. with the global limits: a hit of ``cost`` on every budget, with their stats read along.

The hits are atomic and refuse a cost a window cannot take, so concurrent requests never
overspend. A request that lost a race (a hit refused) retries once, with the minutes its
stats say are left, on the budgets that refused (a third round trip, only then; a fourth
when the stats read along predate the winning hit), or is refused. A budget that took the
larger cost before another refused keeps it: `limits` cannot take a hit back (nor the
charge of a token the global limits or the service then refuse).

A suspension is one key in the same storage: a JSON value with its reason and end (a Redis
``SET``, with ``EX`` for a duration, through the storage's own redis-py client: a string
value is the one thing `limits` has no API for); in memory, a dict of this process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import attrs

from gemini_tokens.broker._audit import iso_millis
from gemini_tokens.broker._http import Refusal
from gemini_tokens.broker._limiter import Limiter, parse_limits

__all__ = ["Budget", "BudgetUsage", "Reservation", "Suspension", "Usage", "minutes_between"]

_NAMESPACE = "gemini_tokens"
_SUSPENDED = "gemini_tokens/suspended/"
#: The longest reason text kept (it is shown to the page, and stored on every replica's path).
MAX_REASON_CHARS = 500
_WHEN = {"day": "today", "month": "this month", "hour": "this hour", "year": "this year"}


def minutes_between(start: dt.datetime, end: dt.datetime) -> int:
    """Whole minutes from ``start`` to ``end``, rounded up (what a token is charged)."""
    return max(0, math.ceil((end - start).total_seconds() / 60 - 1e-9))


@attrs.frozen(kw_only=True)
class Suspension:
    """A caller's cut-off, as `TokenBroker.suspend` stored it.

    Attributes:
        reason: The text shown to the caller's page.
        until: When it ends by itself (UTC), or None (until `TokenBroker.reinstate`).
    """

    reason: str
    until: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"reason": ..., "until": RFC 3339 or None}``."""
        return {
            "reason": self.reason,
            "until": None if self.until is None else iso_millis(self.until),
        }


@attrs.frozen(kw_only=True)
class BudgetUsage:
    """One budget's state for one caller.

    Attributes:
        limit: The budget, as `limits` writes it (``60 per 1 day``).
        scope: ``caller`` (``live_minutes``) or ``global`` (``global_live_minutes``).
        remaining_minutes: Minutes left in its window now.
        resets_at: When a minute next comes back (UTC; now when nothing is charged).
    """

    limit: str
    scope: str
    remaining_minutes: int
    resets_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: ``limit``, ``scope``, ``remainingMinutes``, ``resetsAt``."""
        return {
            "limit": self.limit,
            "scope": self.scope,
            "remainingMinutes": self.remaining_minutes,
            "resetsAt": iso_millis(self.resets_at),
        }


@attrs.frozen(kw_only=True)
class Usage:
    """What `TokenBroker.usage` reports for a caller.

    Attributes:
        budgets: Every budget (the caller's, then the global ones).
        suspension: The caller's suspension, or None.
    """

    budgets: tuple[BudgetUsage, ...] = ()
    suspension: Suspension | None = None

    @property
    def tightest(self) -> BudgetUsage | None:
        """The budget with the fewest minutes left (None without budgets)."""
        return min(self.budgets, key=lambda b: b.remaining_minutes, default=None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer of ``GET <token path>/usage``: ``remainingMinutes`` and
        ``resetsAt`` of the tightest budget, every budget, and ``suspended``."""
        tight = self.tightest
        return {
            "remainingMinutes": None if tight is None else tight.remaining_minutes,
            "resetsAt": None if tight is None else iso_millis(tight.resets_at),
            "budgets": [b.to_dict() for b in self.budgets],
            "suspended": None if self.suspension is None else self.suspension.to_dict(),
        }


class _Window(NamedTuple):
    """One budget of one caller: its `limits` item, identifiers, scope, and its storage key
    and expiry (made once: they are on every request's path)."""

    item: Any
    ids: tuple[str, ...]
    scope: str
    key: str
    expiry: int


def _window(item: Any, ids: tuple[str, ...], scope: str) -> _Window:
    return _Window(item, ids, scope, item.key_for(*ids), item.get_expiry())


class _Stats(NamedTuple):
    """A window's state, as `limits`' ``WindowStats`` (``reset_time``: when a minute next
    comes back, now when nothing is charged; ``remaining``: the minutes left), and
    ``charged_reset``: the reset time once a charge is in its current window."""

    reset_time: float
    remaining: int
    charged_reset: float


def _stats(
    item: Any, previous: int, previous_ttl: float, current: int, left: float, now: float
) -> _Stats:
    """A window's `_Stats`, computed as `limits`' ``get_window_stats`` does.

    Args:
        item: The budget (its ``amount`` and expiry).
        previous: The previous window's minutes.
        previous_ttl: Seconds its weight still runs (to the current window's end).
        current: The current window's minutes.
        left: Seconds to the current window's end (a whole window when there is none:
            a charge starts one).
        now: The time of the read.
    """
    expiry = item.get_expiry()
    weighed = math.floor(previous * previous_ttl / expiry) + current
    shed = previous_ttl % (expiry / previous) if previous else math.inf
    reset = min(shed, left if current else math.inf)
    return _Stats(
        now if math.isinf(reset) else now + reset,
        max(0, item.amount - weighed),
        now + min(shed, left),
    )


#: Seconds between two sweeps of the memory counters' expired windows.
_SWEEP_EVERY = 60.0


class _Counters:
    """The budgets' windows in memory: `limits`' Redis sliding-window scripts
    (``acquire_sliding_window.lua``, ``sliding_window.lua``), window for window.

    A key's window starts with its first charge and lasts ``expiry`` seconds; then its
    count becomes the previous window's, and a key untouched for two windows is gone.
    Nothing here awaits, so a check and its charge are atomic in the event loop. Each
    entry is ``[start, previous, current, expiry]``; expired ones are swept on a charge,
    at most once a minute (a pass over the keys: no copy of what they hold).
    """

    def __init__(self) -> None:
        self._windows: dict[str, list[Any]] = {}
        self._swept = time.monotonic()

    def _entry(self, key: str, expiry: int, now: float) -> list[Any] | None:
        entry = self._windows.get(key)
        if entry is None:
            return None
        if now >= entry[0] + 2 * expiry:
            del self._windows[key]
            return None
        if now >= entry[0] + expiry:  # the current window is over: it becomes the previous
            entry[0], entry[1], entry[2] = entry[0] + expiry, entry[2], 0
        return entry

    def stats(self, item: Any, key: str, expiry: int) -> _Stats:
        """The window's `_Stats` (``get_window_stats``)."""
        now = time.time()
        entry = self._entry(key, expiry, now)
        if entry is None:
            return _stats(item, 0, 0.0, 0, expiry, now)
        start, previous, current, _ = entry
        left = start + expiry - now
        return _stats(item, previous, left, current, left, now)

    def acquire(self, key: str, amount: int, expiry: int, cost: int) -> bool:
        """Charge ``cost`` if the window can take it whole, else change nothing."""
        if cost > amount:
            return False
        now = time.time()
        entry = self._entry(key, expiry, now)
        if entry is None:
            self._windows[key] = [now, 0, cost, expiry]
            self._sweep()
            return True
        start, previous, current, _ = entry
        if math.floor(previous * (start + expiry - now) / expiry) + current + cost > amount:
            return False
        entry[2] = current + cost
        return True

    def _sweep(self) -> None:
        if time.monotonic() - self._swept < _SWEEP_EVERY:
            return
        self._swept = time.monotonic()
        now = time.time()
        for key in [k for k, e in self._windows.items() if now >= e[0] + 2 * e[3]]:
            del self._windows[key]


def _caller_id(caller_id: Any) -> str:
    if not isinstance(caller_id, str) or not caller_id:
        raise ValueError("caller_id: must be a non-empty string")
    return caller_id


def _when(item: Any) -> str:
    """``today``, ``this month``...: the budget's period in the caller's words."""
    name = getattr(getattr(item, "GRANULARITY", None), "name", "")
    if getattr(item, "multiples", 1) == 1 and name in _WHEN:
        return _WHEN[name]
    return "for now"


def _wait_text(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes = math.ceil(rest / 60)
    if hours and minutes:
        return f"{hours}h {minutes}min"
    return f"{hours}h" if hours else f"{max(1, minutes)}min"


class Budget:
    """The broker's minute budgets and suspensions (internal to `TokenBroker`).

    Args:
        live_minutes: Per caller, e.g. ``["60/day", "600/month"]`` (counted in minutes).
        global_live_minutes: For all callers together.
        limiter: The broker's limiter: the budgets live on its storage.
        suspensions: Whether requests check suspensions (always with a budget).

    Raises:
        ConfigurationError: an unparsable budget (the argument named).
    """

    def __init__(
        self,
        live_minutes: Iterable[str] | str | None,
        global_live_minutes: Iterable[str] | str | None,
        limiter: Limiter,
        suspensions: bool = False,
    ) -> None:
        self._limiter = limiter
        self.caller_items = parse_limits("live_minutes", live_minutes)
        self.global_items = parse_limits("global_live_minutes", global_live_minutes)
        self.enabled = bool(self.caller_items or self.global_items)
        self.checks_suspensions = suspensions or self.enabled
        ids = (_NAMESPACE, "minutes", "global")
        self._global_windows = [_window(item, ids, "global") for item in self.global_items]
        #: Memory storage: this process's suspensions, by caller id, and budget windows.
        self._suspended: dict[str, Suspension] = {}
        self.counters = _Counters()
        self.strategy: Any = None
        if limiter.kind != "memory":
            import limits.aio.strategies  # (parse_limits checked that it is installed)

            self.strategy = limits.aio.strategies.SlidingWindowCounterRateLimiter(limiter.storage)

    def windows(self, caller_id: str) -> list[_Window]:
        """The budgets a request of ``caller_id`` is charged on."""
        mine = (_NAMESPACE, "minutes", caller_id)
        return [_window(item, mine, "caller") for item in self.caller_items] + self._global_windows

    def reservation(self, caller_id: str, wanted_minutes: int) -> Reservation:
        """The budget work of one request that wants a token of ``wanted_minutes``."""
        return Reservation(self, caller_id, wanted_minutes)

    # --- storage ----------------------------------------------------------------------

    @property
    def _memory(self) -> bool:
        return self._limiter.kind == "memory"

    def _redis(self) -> Any:
        """The storage's own redis-py client (for the suspension's string value only)."""
        return self._limiter.storage.bridge.get_connection()

    def _key(self, caller_id: str) -> str:
        return str(self._limiter.storage.bridge.prefixed_key(_SUSPENDED + caller_id))

    async def stats(self, windows: Sequence[_Window]) -> list[_Stats]:
        """Every window's stats (one round trip with Redis: `limits`' sliding-window
        read, one script per window)."""
        if self._memory:
            return [self.memory_stats(w) for w in windows]
        storage = self._limiter.storage
        raw = await asyncio.gather(*(storage.get_sliding_window(w.key, w.expiry) for w in windows))
        now = time.time()
        return [
            # The current key lives two windows from its window's start (none: a charge
            # starts a window).
            _stats(
                w.item, previous, previous_ttl, current, ttl - w.expiry if ttl else w.expiry, now
            )
            for w, (previous, previous_ttl, current, ttl) in zip(windows, raw, strict=True)
        ]

    def memory_stats(self, window: _Window) -> _Stats:
        """The memory counters' `_Stats` of ``window`` (its key made once per request)."""
        return self.counters.stats(window.item, window.key, window.expiry)

    async def suspension(self, caller_id: str) -> Suspension | None:
        """The caller's suspension, if any (one ``GET`` with Redis)."""
        if self._memory:
            found = self._suspended.get(caller_id)
            if found is not None and found.until is not None and found.until <= _now():
                del self._suspended[caller_id]
                return None
            return found
        raw = await self._redis().get(self._key(caller_id))
        if raw is None:
            return None
        data = json.loads(raw)
        until = data.get("until")
        end = None if until is None else dt.datetime.fromtimestamp(until, dt.timezone.utc)
        if end is not None and end <= _now():  # Redis expires it on the whole second after
            return None
        return Suspension(reason=str(data.get("reason", "")), until=end)

    async def suspend(
        self, caller_id: str, duration: dt.timedelta | float | None, reason: str
    ) -> Suspension:
        """Store a suspension of ``caller_id`` (see `TokenBroker.suspend`)."""
        caller_id = _caller_id(caller_id)
        if isinstance(duration, dt.timedelta):
            seconds: float | None = duration.total_seconds()
        elif duration is None or (
            isinstance(duration, (int, float)) and not isinstance(duration, bool)
        ):
            seconds = duration
        else:
            raise ValueError("duration: must be a timedelta, a number of seconds, or None")
        if seconds is not None and not seconds > 0:
            raise ValueError("duration: must be positive (or None: until reinstate)")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("reason: must be a non-empty text the caller's page can show")
        if len(reason.strip()) > MAX_REASON_CHARS:
            raise ValueError(f"reason: must be at most {MAX_REASON_CHARS} characters")
        until = None if seconds is None else _now() + dt.timedelta(seconds=seconds)
        suspension = Suspension(reason=reason.strip(), until=until)
        if self._memory:
            self._suspended[caller_id] = suspension
            return suspension
        value = json.dumps(
            {"reason": suspension.reason, "until": None if until is None else until.timestamp()}
        )
        expiry = None if seconds is None else max(1, math.ceil(seconds))
        await self._redis().set(self._key(caller_id), value, ex=expiry)
        return suspension

    async def reinstate(self, caller_id: str) -> bool:
        """End ``caller_id``'s suspension; whether there was one."""
        caller_id = _caller_id(caller_id)
        if self._memory:
            return self._suspended.pop(caller_id, None) is not None
        return bool(await self._redis().delete(self._key(caller_id)))

    async def usage(self, caller_id: str) -> Usage:
        """Every budget's remaining minutes for ``caller_id``, and its suspension."""
        caller_id = _caller_id(caller_id)
        windows = self.windows(caller_id)
        stats, suspension = await asyncio.gather(self.stats(windows), self.suspension(caller_id))
        return Usage(
            budgets=tuple(
                BudgetUsage(
                    limit=str(w.item),
                    scope=w.scope,
                    remaining_minutes=max(0, int(s.remaining)),
                    resets_at=dt.datetime.fromtimestamp(s.reset_time, dt.timezone.utc),
                )
                for w, s in zip(windows, stats, strict=True)
            ),
            suspension=suspension,
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _retry_after(stats: Any) -> int:
    return max(1, math.ceil(float(stats.reset_time) - time.time()))


class Reservation:
    """One request's budget work, sent in the limiter's round trips (`Limiter.hit`'s
    ``along``): `first` reads, `then` charges. Afterwards `granted` is the minutes charged
    (None when nothing ran: the limiter's storage down with ``on_limiter_error="allow"``).
    """

    def __init__(self, budget: Budget, caller_id: str, wanted_minutes: int) -> None:
        self._budget = budget
        self._caller_id = caller_id
        self.wanted = wanted_minutes
        self._windows = budget.windows(caller_id) if budget.enabled else []
        self._before: list[_Stats] = []
        self._cost = wanted_minutes
        self.granted: int | None = None
        #: After the charge: the tightest budget's minutes left and reset (UTC).
        self.remaining: tuple[int, dt.datetime] | None = None

    async def first(self) -> None:
        """Round trip 1: the suspension and the budgets' stats.

        Raises:
            Refusal: 403 ``suspended``; 429 ``budget_exhausted``.
        """
        budget = self._budget
        check = budget.checks_suspensions
        suspension: Suspension | None = None
        if budget._memory:  # nothing awaits: no other request runs in between
            if check:
                suspension = await budget.suspension(self._caller_id)
            stats = await budget.stats(self._windows)
        else:
            reads: list[Any] = [budget.stats(self._windows)]
            if check:
                reads.append(budget.suspension(self._caller_id))
            results = await asyncio.gather(*reads)
            stats, suspension = results[0], results[1] if check else None
        if suspension is not None:
            raise Refusal(
                403, "denied", "suspended", f"you may not start Live sessions: {suspension.reason}"
            )
        self._before = stats
        if not self._windows:
            self.granted = self.wanted
            return
        left = min(int(s.remaining) for s in stats)
        if left < 1:
            raise self._exhausted(self._windows, stats)
        self._cost = min(self.wanted, left)

    async def then(self) -> None:
        """Round trip 2: charge the cost on every budget (their stats read along); after
        a lost race, once more with what is left on those that refused.

        Raises:
            Refusal: 429 ``budget_exhausted``.
        """
        windows = self._windows
        if not windows:
            return
        cost = self._cost
        refused = await self._hit(windows, cost)
        if refused:
            left = min(int(s.remaining) for _, s in refused)
            if left < 1:
                raise self._exhausted([w for w, _ in refused], [s for _, s in refused])
            cost = min(cost, left)
            again = await self._hit([w for w, _ in refused], cost)
            if again:
                raise self._exhausted([w for w, _ in again], [s for _, s in again])
        self.granted = cost
        tight = min(
            zip(windows, self._before, strict=True), key=lambda pair: int(pair[1].remaining)
        )[1]
        self.remaining = (
            max(0, int(tight.remaining) - cost),
            dt.datetime.fromtimestamp(tight.charged_reset, dt.timezone.utc),
        )

    async def _hit(self, windows: Sequence[_Window], cost: int) -> list[tuple[_Window, Any]]:
        """Hit ``windows`` with ``cost``; those that refused, with their stats."""
        budget = self._budget
        if budget._memory:
            counters = budget.counters
            oks = [counters.acquire(w.key, w.item.amount, w.expiry, cost) for w in windows]
            return [
                (w, budget.memory_stats(w)) for w, ok in zip(windows, oks, strict=True) if not ok
            ]
        strategy = budget.strategy
        hits = [strategy.hit(w.item, *w.ids, cost=cost) for w in windows]
        results = await asyncio.gather(*hits, budget.stats(windows))
        oks, stats = results[: len(windows)], results[-1]
        refused = [(w, s) for w, ok, s in zip(windows, oks, stats, strict=True) if not ok]
        if any(int(s.remaining) >= cost for _, s in refused):
            # Read before the hit that took the minutes (another connection): read again.
            again = await budget.stats([w for w, _ in refused])
            refused = [(w, s) for (w, _), s in zip(refused, again, strict=True)]
        return refused

    def _exhausted(self, windows: Sequence[_Window], stats: Sequence[Any]) -> Refusal:
        """429 ``budget_exhausted``, ``Retry-After`` when the emptiest budget gets a minute back."""
        pairs = [(w, s) for w, s in zip(windows, stats, strict=True) if int(s.remaining) < 1]
        if not pairs:
            pairs = list(zip(windows, stats, strict=True))
        window, worst = max(pairs, key=lambda pair: pair[1].reset_time)
        wait = _retry_after(worst)
        whose = "everyone's" if window.scope == "global" else "your"
        when = _when(window.item)
        return Refusal(
            429,
            "limited",
            "budget_exhausted",
            f"no Live minutes left {when} ({whose} budget of {window.item.amount} minutes); "
            f"more in {_wait_text(wait)}",
            retry_after=wait,
        )
