"""The Live API WebSocket: ``BidiGenerateContentConstrained`` (tokens) and ``BidiGenerateContent``.

Enforcement follows what ``wire.md`` records of the service. The socket is accepted, the
first message is read, and then the credential is checked, so a client always gets to send
its ``setup`` and then sees a close frame with a code and reason (the official Python SDK
only turns a close into an error while it waits for ``setupComplete``):

=============================================  =====  ==========================================
situation                                      code   reason
=============================================  =====  ==========================================
no credential; a token on BidiGenerateContent  1008   Method doesn't allow unregistered callers...
a wrong API key on BidiGenerateContent         1007   API key not valid. Please pass a valid ...
unknown token                                  1008   Auth token not found.
expired token (also mid-session)               1008   Auth token has expired.
past newSessionExpireTime, new session         1008   Auth token can no longer open new ...
used up                                        1011   Token has been used too many times
resuming while the old socket is open          1011   The session to resume is still open ...
first message not ``setup``; a second setup    1007   ...
unknown field, bad value, unknown handle       1007   the proto-JSON parser's message
after ``goAway``, its ``timeLeft`` passed      1011   Deadline expired before operation ...
=============================================  =====  ==========================================

Expiry is refused with 1008 (policy violation), the code ``wire.md`` records for policy
refusals and unknown tokens; only a used-up token is recorded with 1011.

Server messages are sent as binary frames holding JSON, as the service does (a browser
receives them as ``Blob``\\ s). This module knows the emulator only through the shared
`EmulatorState`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import WSMsgType, web

from gemini_tokens.testing._client_messages import ClientContent, RealtimeInput, read_client_message
from gemini_tokens.testing._model_replies import describe_audio, turn_messages
from gemini_tokens.testing._proto_json import WireError
from gemini_tokens.testing._records import IssuedToken, LiveSession
from gemini_tokens.testing._setup import effective_setup, parse_setup
from gemini_tokens.testing._state import Conversation, EmulatorState, GoAwayPlan

__all__ = [
    "CONSTRAINED",
    "DEADLINE",
    "EXPIRED",
    "GOING_AWAY",
    "NEW_SESSION_EXPIRED",
    "NOT_FOUND",
    "STILL_OPEN",
    "UNREGISTERED",
    "USED_UP",
    "duration",
    "serve_live",
]

CONSTRAINED = "BidiGenerateContentConstrained"

# As a user quoted it (google-gemini/cookbook#821): the service's long 403 message, cut short
# to fit a close frame's reason (123 bytes at most).
UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API."
)
KEY_INVALID = "API key not valid. Please pass a valid API key."
NOT_FOUND = "Auth token not found."
EXPIRED = "Auth token has expired."
NEW_SESSION_EXPIRED = "Auth token can no longer open new sessions (newSessionExpireTime passed)."
USED_UP = "Token has been used too many times"
FIRST_NOT_SETUP = "Invalid argument: the first message must be setup."
SECOND_SETUP = "Invalid argument: setup may only be sent once, as the first message."
NO_MODEL = "Invalid argument: setup.model is required."
BAD_HANDLE = "Invalid argument: session resumption handle not found."
BAD_AUDIO = "Invalid value at 'realtime_input.audio.data' (TYPE_BYTES): not base64."
BAD_JSON = "Invalid JSON payload received."
GOING_AWAY = "The emulator is shutting down."
# What users report the service closes with once a goAway's timeLeft has passed.
DEADLINE = "Deadline expired before operation could complete."
STILL_OPEN = "The session to resume is still open on another connection; close it first."

_MAX_REASON = 123  # bytes in a close frame's reason
# A resume may arrive just before the old socket's close is read: wait this long for it.
_RELEASE_GRACE = 0.25


def duration(seconds: float) -> str:
    """A ``google.protobuf.Duration`` in JSON: ``"30s"``, ``"0.25s"`` (never an exponent)."""
    return (f"{seconds:.9f}".rstrip("0").rstrip(".") or "0") + "s"


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(code, reason)


def _token_credential(request: web.Request) -> str | None:
    """A token, as a browser (``access_token``) or the Python SDK (``Authorization``) sends it."""
    token = request.query.get("access_token")
    if token:
        return token
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "token" and value.strip():
        return value.strip()
    for key in (request.query.get("key"), request.headers.get("x-goog-api-key")):
        if key and key.startswith("auth_tokens/"):
            return key
    return None


def _api_key(request: web.Request) -> str | None:
    return request.query.get("key") or request.headers.get("x-goog-api-key")


class _Socket:
    """One served WebSocket: receiving, sending, going away, and the session's record."""

    def __init__(
        self, state: EmulatorState, ws: web.WebSocketResponse, record: LiveSession
    ) -> None:
        self.state = state
        self.ws = ws
        self._record = record
        self._go_away: asyncio.Task[None] | None = None
        self._deadline_passed = False

    @property
    def record(self) -> LiveSession:
        return self._record

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def receive(self) -> tuple[str, Any, Any] | None:
        """The next client message as ``(kind, as received, parsed)``; None once gone."""
        while True:
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                data = msg.data
                break
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                if self._record.close_code is None:
                    # A close frame without a status code is 1005 (RFC 6455 7.1.5); a
                    # connection lost without any close frame, 1006.
                    code = self.ws.close_code
                    self._record.close_code = code or (
                        1005 if msg.type is WSMsgType.CLOSE else 1006
                    )
                return None
            if msg.type is WSMsgType.ERROR:
                if self._record.close_code is None:
                    self._record.close_code = 1006
                return None
        try:
            payload = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise _Close(1007, BAD_JSON) from None
        try:
            return read_client_message(payload)
        except WireError as exc:
            raise _Close(1007, exc.message) from None

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.ws.send_bytes(json.dumps(message, separators=(",", ":")).encode())

    async def close(self, code: int, reason: str) -> None:
        data = reason.encode()[:_MAX_REASON]
        if self._record.close_code is None:
            self._record.close_code = code
            self._record.close_reason = data.decode("utf-8", "ignore")
        await self.ws.close(code=code, message=data)

    def go_away(self, time_left: float, after: float = 0.0) -> None:
        """Send ``goAway`` (after ``after`` seconds), then close ``time_left`` seconds later."""
        if self._go_away is not None:
            self._go_away.cancel()
        self._go_away = asyncio.ensure_future(self._run_go_away(after, time_left))

    async def _run_go_away(self, after: float, time_left: float) -> None:
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await asyncio.sleep(after)
            if self.closed:
                return
            self._record.go_away = time_left
            await self.send({"goAway": {"timeLeft": duration(time_left)}})
            await asyncio.sleep(time_left)
            if not self.closed:
                self._deadline_passed = True
                await self.close(1011, DEADLINE)

    async def stop_go_away(self) -> None:
        """Cancel a pending ``goAway``, or let its closing finish."""
        task, self._go_away = self._go_away, None
        if task is None:
            return
        if not self._deadline_passed:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await task


def _check_token(state: EmulatorState, name: str) -> IssuedToken:
    token = state.tokens.get(name)
    if token is None:
        raise _Close(1008, NOT_FOUND)
    if state.clock.now() >= token.expire_time:
        raise _Close(1008, EXPIRED)
    return token


async def _resume(state: EmulatorState, handle: Any) -> Conversation:
    found = state.resume(handle) if isinstance(handle, str) else None
    if found is None:
        raise _Close(1007, BAD_HANDLE)
    conversation, length = found
    if conversation.open:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(conversation.released.wait(), _RELEASE_GRACE)
        if conversation.open:
            raise _Close(1011, STILL_OPEN)
    del conversation.turns[length:]  # the state as it was when the handle was issued
    return conversation


async def _open(
    state: EmulatorState,
    token: IssuedToken | None,
    client_setup: dict[str, Any],
    record: LiveSession,
) -> tuple[dict[str, Any], Conversation]:
    """Apply the locks, resolve resumption and count the use; returns setup and conversation."""
    if token is None:
        setup = effective_setup({}, None, client_setup)  # a copy: nothing is locked
    else:
        setup = effective_setup(token.setup, token.field_mask, client_setup)
    if not setup.get("model"):
        raise _Close(1007, NO_MODEL)
    # The handle is the connection's, not configuration: it is read from the client's setup
    # even when the token locks the whole setup (else documented resumption could not work).
    handle = (client_setup.get("sessionResumption") or {}).get("handle") or (
        setup.get("sessionResumption") or {}
    ).get("handle")
    conversation = Conversation()
    if handle is not None:
        conversation = await _resume(state, handle)
        record.resumed = True
        setup.setdefault("sessionResumption", {})["handle"] = handle
    if token is not None:
        new_session = not record.resumed
        if new_session and state.clock.now() >= token.new_session_expire_time:
            raise _Close(1008, NEW_SESSION_EXPIRED)
        if new_session or state.count_resumption_as_use:
            if token.uses and token.sessions_opened >= token.uses:
                raise _Close(1011, USED_UP)
            token.sessions_opened += 1
            record.counted_as_use = True
    return setup, conversation


class _Turns:
    """A session's conversation: collects the user's turns and answers each complete one."""

    def __init__(self, sock: _Socket, setup: dict[str, Any], conversation: Conversation) -> None:
        self.sock = sock
        self.setup = setup
        self.conversation = conversation
        self.resumable = "sessionResumption" in setup
        detection = (setup.get("realtimeInputConfig") or {}).get("automaticActivityDetection")
        self.manual_activity = bool((detection or {}).get("disabled"))
        self.pending_text: list[str] = []
        self.audio = bytearray()
        self.audio_mime = ""

    async def resumption_update(self) -> None:
        if self.resumable:
            handle = self.sock.state.new_handle(self.conversation)
            await self.sock.send(
                {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
            )

    async def answer(self, said: str, *, heard_audio: bool = False) -> None:
        earlier = list(self.conversation.turns)
        for message in turn_messages(said, self.setup, earlier, heard_audio=heard_audio):
            await self.sock.send(message)
        self.conversation.turns.append(said)
        await self.resumption_update()

    async def on_client_content(self, content: ClientContent) -> None:
        said = " ".join(
            part.text
            for turn in content.turns or ()
            if turn.role in (None, "user")
            for part in turn.parts or ()
            if part.text
        )
        if said:
            self.pending_text.append(said)
        if content.turn_complete and self.pending_text:
            text, self.pending_text = " ".join(self.pending_text), []
            await self.answer(text)

    async def on_realtime_input(self, message: RealtimeInput) -> None:
        for blob in (message.audio, *(message.media_chunks or ())):
            if blob is None or not (blob.mime_type or "").startswith("audio/"):
                continue
            try:
                self.audio += base64.b64decode(blob.data or "", validate=True)
            except (binascii.Error, ValueError):
                raise _Close(1007, BAD_AUDIO) from None
            self.audio_mime = blob.mime_type or ""
        if message.text:
            await self.answer(message.text)
        ended = (
            message.activity_end is not None
            if self.manual_activity
            else bool(message.audio_stream_end)
        )
        if ended and self.audio:
            heard = describe_audio(bytes(self.audio), self.audio_mime)
            self.audio.clear()
            await self.answer(heard, heard_audio=True)


async def _converse(
    sock: _Socket,
    token: IssuedToken | None,
    setup: dict[str, Any],
    conversation: Conversation,
    plan: GoAwayPlan | None,
) -> None:
    state, record = sock.state, sock.record
    turns = _Turns(sock, setup, conversation)
    await sock.send({"setupComplete": {"sessionId": record.session_id}})
    await turns.resumption_update()
    if plan is not None:
        sock.go_away(plan.time_left, after=plan.after)
    while True:
        message = await sock.receive()
        if message is None:
            return
        kind, received, parsed = message
        if token is not None and state.clock.now() >= token.expire_time:
            raise _Close(1008, EXPIRED)
        if kind == "setup":
            raise _Close(1007, SECOND_SETUP)
        record.messages.append({kind: received})
        if isinstance(parsed, ClientContent):
            await turns.on_client_content(parsed)
        elif isinstance(parsed, RealtimeInput):
            await turns.on_realtime_input(parsed)


async def _serve(sock: _Socket, request: web.Request, method: str) -> None:
    state, record = sock.state, sock.record
    first = await sock.receive()
    if first is None:
        return
    token: IssuedToken | None = None
    name = _token_credential(request)
    if method == CONSTRAINED and name is not None:
        record.token_name = name
        token = _check_token(state, name)
    else:
        # BidiGenerateContent takes only an API key; so may the constrained method.
        key = _api_key(request)
        if name is not None or key is None:
            raise _Close(1008, UNREGISTERED)
        if key != state.api_key:
            raise _Close(1007, KEY_INVALID)
    kind, _, payload = first
    if kind != "setup":
        raise _Close(1007, FIRST_NOT_SETUP)
    try:
        client_setup = parse_setup(payload, "setup")
    except WireError as exc:
        raise _Close(1007, exc.message) from None
    record.client_setup = client_setup
    setup, conversation = await _open(state, token, client_setup, record)
    record.setup = setup
    record.accepted = True
    record.session_id = secrets.token_hex(8)
    conversation.open = True
    conversation.released.clear()
    try:
        await _converse(sock, token, setup, conversation, state.plan_for_new_session())
    finally:
        conversation.open = False
        conversation.released.set()


async def serve_live(
    state: EmulatorState, request: web.Request, method: str, api_version: str
) -> web.StreamResponse:
    """Serve one Live API WebSocket until either side closes it."""
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
    if not ws.can_prepare(request).ok:
        return web.json_response(
            {
                "error": {
                    "code": 400,
                    "message": "Expected a WebSocket upgrade.",
                    "status": "INVALID_ARGUMENT",
                }
            },
            status=400,
        )
    record = LiveSession(method=method, api_version=api_version)
    state.sessions.append(record)
    await ws.prepare(request)
    sock = _Socket(state, ws, record)
    with state.lock:
        state.sockets.add(sock)
    try:
        await _serve(sock, request, method)
    except _Close as close:
        await sock.close(close.code, close.reason)
    except ConnectionResetError:
        pass  # the client went away mid-send
    finally:
        await sock.stop_go_away()
        with state.lock:
            state.sockets.discard(sock)
    if not ws.closed:
        await ws.close()
    return ws
