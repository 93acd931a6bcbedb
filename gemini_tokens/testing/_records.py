"""What the emulator saw and issued: records a test can assert on.

Reprs never show secrets (the API key, token names, resumption handles), so a failing
assertion does not print them; the attributes themselves hold the real values, because they
are the test's own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from gemini_tokens.testing._core import format_time, redact_name

__all__ = ["IssuedToken", "LiveSession", "RecordedRequest"]


def _redact_optional(name: str | None) -> str:
    return "None" if name is None else repr(redact_name(name))


@attrs.define(kw_only=True)
class IssuedToken:
    """A token the emulator minted, with its state.

    Attributes:
        name: ``auth_tokens/<random>``: the secret a client opens sessions with.
        uses: Sessions it may open; 0 means no limit.
        expire_time: After it, the token is refused and its sessions are closed.
        new_session_expire_time: After it, no new session can be opened with it.
        setup: The ``bidiGenerateContentSetup`` it is constrained to, in canonical wire form
            (camelCase); empty when none was given.
        field_mask: The ``fieldMask`` paths, or None when no mask was given (then a
            non-empty ``setup`` is locked whole).
        created_at: When it was minted, by the emulator's clock.
        sessions_opened: Sessions opened with it so far (each counted a use).
    """

    name: str = attrs.field(repr=redact_name)
    uses: int
    expire_time: dt.datetime
    new_session_expire_time: dt.datetime
    setup: dict[str, Any] = attrs.field(factory=dict)
    field_mask: tuple[str, ...] | None = None
    created_at: dt.datetime
    sessions_opened: int = 0

    @property
    def remaining_uses(self) -> int | None:
        """Sessions it may still open, or None when unlimited."""
        return None if self.uses == 0 else max(0, self.uses - self.sessions_opened)

    def to_wire(self) -> dict[str, Any]:
        """The AuthToken resource, as the emulator answered it."""
        out: dict[str, Any] = {
            "name": self.name,
            "uses": self.uses,
            "expireTime": format_time(self.expire_time),
            "newSessionExpireTime": format_time(self.new_session_expire_time),
        }
        if self.setup:
            out["bidiGenerateContentSetup"] = self.setup
        if self.field_mask is not None:
            out["fieldMask"] = ",".join(self.field_mask)
        return out


@attrs.define(kw_only=True)
class RecordedRequest:
    """One HTTP request the emulator received (a token request or a Live handshake).

    Attributes:
        method: ``POST``, ``GET`` ...
        path: The path with doubled slashes merged (``/v1alpha/auth_tokens``).
        query: The query parameters (may hold ``key`` or ``access_token``).
        headers: The request headers (may hold ``x-goog-api-key``).
        raw: The body's bytes (empty for a Live handshake).
        body: The body parsed as JSON, or None when it was empty or not JSON.
        status: The HTTP status answered (101 for an accepted WebSocket), or None when the
            connection was dropped or the answer is not sent yet.
        fault: The injected fault that answered it (``"fail"``, ``"drop"``), if any.
    """

    method: str
    path: str
    query: Mapping[str, str] = attrs.field(repr=False)
    headers: Mapping[str, str] = attrs.field(repr=False)
    raw: bytes = attrs.field(default=b"", repr=False)
    body: Any = attrs.field(default=None, repr=False)
    status: int | None = None
    fault: str | None = None


@attrs.define(kw_only=True)
class LiveSession:
    """One Live API WebSocket the emulator served (accepted or refused).

    Attributes:
        method: ``BidiGenerateContentConstrained`` or ``BidiGenerateContent``.
        api_version: ``v1alpha`` or ``v1beta``.
        token_name: The token it was opened with, or None (API key or no credential).
        accepted: Whether ``setupComplete`` was sent.
        session_id: The ``setupComplete.sessionId``, once accepted.
        client_setup: The client's ``setup`` message, in canonical wire form.
        setup: The effective setup after the token's locks, once accepted.
        resumed: Whether it resumed an earlier session with a handle.
        counted_as_use: Whether opening it used up one of the token's uses.
        messages: The client messages received after ``setup``, keys normalised to camelCase.
        go_away: The ``timeLeft`` (seconds) of the ``goAway`` sent to it, if any.
        close_code: The close code, once closed (by either side): 1005 when the client
            closed without a status code, 1006 when the connection dropped without a close.
        close_reason: The close reason the emulator sent, if it closed the socket.
    """

    method: str
    api_version: str
    token_name: str | None = attrs.field(default=None, repr=_redact_optional)
    accepted: bool = False
    session_id: str | None = None
    client_setup: dict[str, Any] | None = attrs.field(default=None, repr=False)
    setup: dict[str, Any] | None = None
    resumed: bool = False
    counted_as_use: bool = False
    messages: list[dict[str, Any]] = attrs.field(factory=list, repr=False)
    go_away: float | None = None
    close_code: int | None = None
    close_reason: str | None = None
