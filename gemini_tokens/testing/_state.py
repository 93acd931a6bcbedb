"""What the emulator's HTTP side and its Live sockets share.

`Emulator` (the public face) owns one `EmulatorState`; the Live API socket code (`_live`)
is handed it and knows nothing of `Emulator`, so imports run one way only:
``_emulator -> _live -> _state``.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import threading
from typing import Protocol

import attrs

from gemini_tokens.testing._clock import Clock
from gemini_tokens.testing._records import IssuedToken, LiveSession

__all__ = ["Conversation", "EmulatorState", "GoAwayPlan", "LiveSocket"]


@attrs.frozen
class GoAwayPlan:
    """When a session is told to go away: ``after`` seconds open, then ``time_left`` to close."""

    after: float
    time_left: float


@attrs.define(eq=False)
class Conversation:
    """One conversation, carried across the sessions that resume it.

    Attributes:
        turns: What the user said in each answered turn, oldest first.
        open: Whether a socket serving it is open (a resume is refused meanwhile).
        released: Set while no socket serves it.
    """

    turns: list[str] = attrs.field(factory=list)
    open: bool = False
    released: asyncio.Event = attrs.field(factory=asyncio.Event)

    def __attrs_post_init__(self) -> None:
        self.released.set()


class LiveSocket(Protocol):
    """What `EmulatorState` needs of a served Live socket."""

    @property
    def record(self) -> LiveSession:
        """The session's record."""

    @property
    def closed(self) -> bool:
        """Whether the socket is closed."""

    def go_away(self, time_left: float, after: float = 0.0) -> None:
        """Send ``goAway`` ``after`` seconds from now; close the socket ``time_left`` later."""

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with a code and reason."""


@attrs.define(kw_only=True, eq=False)
class EmulatorState:
    """The emulator's records and settings, shared with the Live socket code.

    Attributes:
        api_key: The key the emulator accepts.
        clock: The clock token times are checked against.
        count_resumption_as_use: Whether resuming a session counts as a use of its token.
        go_away: The goAway plan for every session, or None.
        go_away_time_left: The ``timeLeft`` a control request's ``goAway`` announces when it
            names none (the emulator's ``go_away_time_left``).
    """

    api_key: str
    clock: Clock
    count_resumption_as_use: bool = False
    go_away: GoAwayPlan | None = None
    go_away_time_left: float = 5.0
    tokens: dict[str, IssuedToken] = attrs.field(factory=dict)
    sessions: list[LiveSession] = attrs.field(factory=list)
    sockets: set[LiveSocket] = attrs.field(factory=set)
    planned: collections.deque[GoAwayPlan] = attrs.field(factory=collections.deque)
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    _handles: dict[str, tuple[Conversation, int]] = attrs.field(factory=dict)

    def new_handle(self, conversation: Conversation) -> str:
        """A resumption handle for the conversation as it stands now."""
        handle = "emulator-handle-" + secrets.token_urlsafe(16)
        self._handles[handle] = (conversation, len(conversation.turns))
        return handle

    def resume(self, handle: str) -> tuple[Conversation, int] | None:
        """The conversation a handle resumes and its length then, or None if unknown."""
        return self._handles.get(handle)

    def plan_for_new_session(self) -> GoAwayPlan | None:
        """The goAway plan of the session being opened: a planned one first, else the default."""
        with self.lock:
            if self.planned:
                return self.planned.popleft()
        return self.go_away

    def plan_go_away(self, plan: GoAwayPlan, times: int) -> None:
        """Plan ``plan`` for each of the next ``times`` sessions to open, after those planned."""
        with self.lock:
            self.planned.extend([plan] * times)

    def open_sockets(self, session: LiveSession | None = None) -> list[LiveSocket]:
        """The accepted sockets still open (only ``session``'s when given)."""
        with self.lock:
            sockets = list(self.sockets)
        return [
            sock
            for sock in sockets
            if sock.record.accepted
            and not sock.closed
            and (session is None or sock.record is session)
        ]
