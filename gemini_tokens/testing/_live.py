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
first message not ``setup``; a second setup    1007   ...
unknown field, bad value, unknown handle       1007   the proto-JSON parser's message
=============================================  =====  ==========================================

Expiry is refused with 1008 (policy violation), the code ``wire.md`` records for policy
refusals and unknown tokens; only a used-up token is recorded with 1011.

Server messages are sent as binary frames holding JSON, as the service does (a browser
receives them as ``Blob``\\ s).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from gemini_tokens.testing._records import IssuedToken, LiveSession
from gemini_tokens.testing._setup import (
    WireError,
    effective_setup,
    normalise_message,
    parse_setup,
    turn_text,
)

if TYPE_CHECKING:
    from gemini_tokens.testing._emulator import Emulator

__all__ = [
    "CONSTRAINED",
    "EXPIRED",
    "NEW_SESSION_EXPIRED",
    "NOT_FOUND",
    "UNREGISTERED",
    "USED_UP",
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
BAD_JSON = "Invalid JSON payload received."
GOING_AWAY = "The emulator is shutting down."

_MAX_REASON = 123  # bytes in a close frame's reason


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


def _describe(setup: Mapping[str, Any]) -> str:
    generation = setup.get("generationConfig") or {}
    modalities = generation.get("responseModalities")
    temperature = generation.get("temperature")
    return (
        f"model={setup.get('model', 'unset')}, "
        f"modalities={','.join(map(str, modalities)) if modalities else 'unset'}, "
        f"temperature={'unset' if temperature is None else format(temperature, 'g')}"
    )


def reply_text(user_text: str, setup: Mapping[str, Any]) -> str:
    """The emulator's deterministic answer to a user turn."""
    return f'Emulator reply to "{user_text}" with {_describe(setup)}.'


class _Socket:
    """One served WebSocket: receiving, sending, and the session's record."""

    def __init__(self, emu: Emulator, ws: web.WebSocketResponse, record: LiveSession) -> None:
        self.emu = emu
        self.ws = ws
        self.record = record

    async def receive(self) -> tuple[str, Any] | None:
        """The next client message as ``(kind, payload)``; None once the client has gone."""
        while True:
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                data = msg.data
                break
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                if self.record.close_code is None:
                    self.record.close_code = self.ws.close_code
                return None
            if msg.type is WSMsgType.ERROR:
                return None
        try:
            payload = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise _Close(1007, BAD_JSON) from None
        try:
            return normalise_message(payload)
        except WireError as exc:
            raise _Close(1007, exc.message) from None

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.ws.send_bytes(json.dumps(message, separators=(",", ":")).encode())

    async def close(self, code: int, reason: str) -> None:
        data = reason.encode()[:_MAX_REASON]
        self.record.close_code, self.record.close_reason = code, data.decode("utf-8", "ignore")
        await self.ws.close(code=code, message=data)


def _check_token(emu: Emulator, name: str) -> IssuedToken:
    token = emu.token(name)
    if token is None:
        raise _Close(1008, NOT_FOUND)
    if emu.clock.now() >= token.expire_time:
        raise _Close(1008, EXPIRED)
    return token


def _open(
    emu: Emulator, token: IssuedToken | None, client_setup: dict[str, Any], record: LiveSession
) -> dict[str, Any]:
    """Apply the locks, resolve resumption and count the use; returns the effective setup."""
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
    if handle is not None:
        if not emu._has_handle(handle):
            raise _Close(1007, BAD_HANDLE)
        record.resumed = True
        setup.setdefault("sessionResumption", {})["handle"] = handle
    if token is not None:
        new_session = not record.resumed
        if new_session and emu.clock.now() >= token.new_session_expire_time:
            raise _Close(1008, NEW_SESSION_EXPIRED)
        if new_session or emu._count_resumption_as_use:
            if token.uses and token.sessions_opened >= token.uses:
                raise _Close(1011, USED_UP)
            token.sessions_opened += 1
            record.counted_as_use = True
    return setup


async def _converse(sock: _Socket, token: IssuedToken | None, setup: dict[str, Any]) -> None:
    emu, record = sock.emu, sock.record
    resumable = "sessionResumption" in setup

    async def resumption_update() -> None:
        if resumable:
            handle = emu._new_handle(record)
            await sock.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})

    await sock.send({"setupComplete": {"sessionId": record.session_id}})
    await resumption_update()
    pending: list[str] = []
    while True:
        message = await sock.receive()
        if message is None:
            return
        kind, payload = message
        if token is not None and emu.clock.now() >= token.expire_time:
            raise _Close(1008, EXPIRED)
        if kind == "setup":
            raise _Close(1007, SECOND_SETUP)
        record.messages.append({kind: payload})
        text: str | None = None
        if kind == "clientContent" and isinstance(payload, Mapping):
            try:
                said = turn_text(payload.get("turns") or [])
            except WireError as exc:
                raise _Close(1007, exc.message) from None
            if said:
                pending.append(said)
            if payload.get("turnComplete") and pending:
                text, pending = " ".join(pending), []
        elif (
            kind == "realtimeInput"
            and isinstance(payload, Mapping)
            and isinstance(payload.get("text"), str)
            and payload["text"]
        ):
            text = payload["text"]
        if text is not None:
            reply = {"role": "model", "parts": [{"text": reply_text(text, setup)}]}
            await sock.send({"serverContent": {"modelTurn": reply}})
            await sock.send({"serverContent": {"turnComplete": True}})
            await resumption_update()


async def serve_live(
    emu: Emulator, request: web.Request, method: str, api_version: str
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
    emu._sessions.append(record)
    await ws.prepare(request)
    sock = _Socket(emu, ws, record)
    emu._websockets.add(sock)
    try:
        first = await sock.receive()
        if first is None:
            return ws
        token: IssuedToken | None = None
        name = _token_credential(request)
        if method == CONSTRAINED and name is not None:
            record.token_name = name
            token = _check_token(emu, name)
        else:
            # BidiGenerateContent takes only an API key; so may the constrained method.
            key = _api_key(request)
            if name is not None or key is None:
                raise _Close(1008, UNREGISTERED)
            if key != emu.api_key:
                raise _Close(1007, KEY_INVALID)
        kind, payload = first
        if kind != "setup":
            raise _Close(1007, FIRST_NOT_SETUP)
        try:
            client_setup = parse_setup(payload, "setup")
        except WireError as exc:
            raise _Close(1007, exc.message) from None
        record.client_setup = client_setup
        setup = _open(emu, token, client_setup, record)
        record.setup = setup
        record.accepted = True
        record.session_id = secrets.token_hex(8)
        await _converse(sock, token, setup)
    except _Close as close:
        await sock.close(close.code, close.reason)
    except ConnectionResetError:
        pass  # the client went away mid-send
    finally:
        emu._websockets.discard(sock)
    if not ws.closed:
        await ws.close()
    return ws
