"""The emulator's clock: real time plus an offset a test can move forward."""

from __future__ import annotations

import datetime as dt
import threading

__all__ = ["Clock"]


class Clock:
    """A clock the emulator checks token times against.

    By default it follows real time; `advance` moves it forward, so a test can let a token
    expire without sleeping. Given ``start``, it is frozen at that instant and moves only when
    advanced (handy for fully deterministic tests). Safe to use from any thread.

    Args:
        start: A timezone-aware instant to freeze the clock at, or None to follow real time.

    Raises:
        ValueError: ``start`` is naive.
    """

    def __init__(self, start: dt.datetime | None = None) -> None:
        if start is not None and start.utcoffset() is None:
            raise ValueError("Clock(start=...) must be timezone-aware")
        self._frozen = start.astimezone(dt.timezone.utc) if start is not None else None
        self._offset = dt.timedelta(0)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        mode = "frozen" if self._frozen is not None else "real time"
        return f"Clock({mode}, offset={self._offset})"

    @property
    def offset(self) -> dt.timedelta:
        """How far the clock has been advanced."""
        return self._offset

    def now(self) -> dt.datetime:
        """The current instant (aware, UTC)."""
        with self._lock:
            base = self._frozen or dt.datetime.now(dt.timezone.utc)
            return base + self._offset

    def advance(self, *, hours: float = 0, minutes: float = 0, seconds: float = 0) -> dt.datetime:
        """Move the clock forward; returns the new now.

        Raises:
            ValueError: a negative total (the clock never goes back).
        """
        step = dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
        if step < dt.timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += step
        return self.now()
