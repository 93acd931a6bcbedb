"""The emulator's Live API WebSocket: token enforcement, locking, resumption, messages.

Sessions are opened with aiohttp's WebSocket client, as a browser would, against tokens
minted with this library's `AsyncClient`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import attrs
import pytest

from gemini_tokens import EphemeralToken
from gemini_tokens.testing import Emulator

from .conftest import mint

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
OTHER = "models/gemini-2.0-flash-live-001"
TURN = {"turns": [{"role": "user", "parts": [{"text": "Hello"}]}], "turnComplete": True}


@attrs.frozen
class Result:
    """What a client saw: the messages before the end, and how the socket ended."""

    messages: list[dict[str, Any]]
    close_code: int | None
    close_reason: str

    @property
    def accepted(self) -> bool:
        return bool(self.messages) and "setupComplete" in self.messages[0]

    @property
    def parts(self) -> list[dict[str, Any]]:
        return [
            part
            for m in self.messages
            for part in ((m.get("serverContent") or {}).get("modelTurn") or {}).get("parts", [])
        ]

    @property
    def reply(self) -> str:
        return "".join(part.get("text", "") for part in self.parts)

    def transcription(self, which: str = "outputTranscription") -> str:
        return "".join(
            (m.get("serverContent") or {}).get(which, {}).get("text", "") for m in self.messages
        )


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


async def converse(
    http: aiohttp.ClientSession,
    url: str,
    *messages: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    until: str = "turnComplete",
    count: int = 1,
) -> Result:
    """Send ``messages``; read until the socket closes or ``count`` messages contain ``until``."""
    seen: list[dict[str, Any]] = []
    async with http.ws_connect(url, headers=headers) as ws:
        for message in messages:
            await ws.send_str(json.dumps(message))
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type is not aiohttp.WSMsgType.BINARY:
                return Result(seen, ws.close_code, str(msg.extra or ""))
            seen.append(json.loads(msg.data))
            if sum(until in json.dumps(m) for m in seen) >= count:
                return Result(seen, None, "")


def setup(model: str = OTHER, **generation: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if generation:
        body["generationConfig"] = generation
    return {"setup": body}


# -- locking -----------------------------------------------------------------------------------


async def test_no_mask_locks_the_tokens_setup_whole(emu: Emulator, http: Any) -> None:
    token = await mint(
        emu,
        live_connect_constraints={
            "model": MODEL,
            "config": {"response_modalities": ["AUDIO"], "output_audio_transcription": {}},
        },
    )
    result = await converse(
        http,
        token.live_url(),
        setup(responseModalities=["TEXT"], temperature=1.5),
        {"clientContent": TURN},
    )
    assert result.accepted
    assert result.messages[0]["setupComplete"]["sessionId"]
    # The token's AUDIO won over the client's TEXT: the answer is audio, its words transcribed.
    assert result.reply == ""
    assert {part["inlineData"]["mimeType"] for part in result.parts} == {"audio/pcm;rate=24000"}
    assert result.transcription() == (
        f'Emulator reply to "Hello" with model=models/{MODEL}, modalities=AUDIO, temperature=unset.'
    )
    assert result.messages[-1] == {"serverContent": {"turnComplete": True}}
    (session,) = emu.sessions
    assert session.setup == {
        "model": f"models/{MODEL}",
        "generationConfig": {"responseModalities": ["AUDIO"]},
        "outputAudioTranscription": {},
    }
    assert session.client_setup == {
        "model": OTHER,
        "generationConfig": {"responseModalities": ["TEXT"], "temperature": 1.5},
    }
    assert session.token_name == token.name
    assert session.counted_as_use
    assert not session.resumed
    assert session.messages == [{"clientContent": TURN}]


async def test_a_mask_takes_locked_paths_from_the_token_and_the_rest_from_the_client(
    emu: Emulator, http: Any
) -> None:
    token = await mint(
        emu,
        live_connect_constraints={"model": MODEL, "config": {"temperature": 0.2}},
        lock_additional_fields=["system_instruction"],
    )
    assert token.locked_fields == ("model", "generationConfig.temperature", "systemInstruction")
    client_setup = {
        "model": OTHER,
        "generationConfig": {"temperature": 0.9, "topK": 5, "responseModalities": ["TEXT"]},
        "systemInstruction": {"parts": [{"text": "Shout."}]},
    }
    result = await converse(
        http, token.live_url(), {"setup": client_setup}, {"clientContent": TURN}
    )
    assert result.accepted
    assert emu.sessions[0].setup == {
        "model": f"models/{MODEL}",
        "generationConfig": {"temperature": 0.2, "topK": 5, "responseModalities": ["TEXT"]},
    }
    assert "modalities=TEXT, temperature=0.2" in result.reply


async def test_no_mask_and_no_setup_uses_the_clients(emu: Emulator, http: Any) -> None:
    token = await mint(emu)
    result = await converse(
        http,
        token.live_url(),
        setup(responseModalities=["TEXT"], temperature=0.5),
        {"clientContent": TURN},
    )
    assert result.accepted
    assert f"model={OTHER}, modalities=TEXT, temperature=0.5" in result.reply


async def test_a_session_needs_a_model(emu: Emulator, http: Any) -> None:
    token = await mint(emu)
    result = await converse(http, token.live_url(), {"setup": {}})
    assert (result.close_code, result.close_reason) == (
        1007,
        "Invalid argument: setup.model is required.",
    )


# -- token enforcement -------------------------------------------------------------------------


async def test_uses_count_sessions(emu: Emulator, http: Any) -> None:
    token = await mint(emu, uses=2)
    for _ in range(2):
        assert (await converse(http, token.live_url(), setup(), until="setupComplete")).accepted
    refused = await converse(http, token.live_url(), setup())
    assert (refused.close_code, refused.close_reason) == (
        1011,
        "Token has been used too many times",
    )
    issued = emu.token(token.name)
    assert issued is not None
    assert issued.sessions_opened == 2
    assert issued.remaining_uses == 0
    assert [s.accepted for s in emu.sessions] == [True, True, False]
    assert emu.sessions[-1].close_code == 1011


async def test_uses_zero_means_no_limit(emu: Emulator, http: Any) -> None:
    token = await mint(emu, uses=0)
    for _ in range(4):
        assert (await converse(http, token.live_url(), setup(), until="setupComplete")).accepted
    assert emu.token(token.name).remaining_uses is None  # type: ignore[union-attr]


async def test_unknown_token_and_no_credential_are_1008(emu: Emulator, http: Any) -> None:
    result = await converse(http, emu.live_url("auth_tokens/made-up"), setup())
    assert (result.close_code, result.close_reason) == (1008, "Auth token not found.")
    bare = emu.live_url("x").split("?")[0]
    result = await converse(http, bare, setup())
    assert result.close_code == 1008
    assert result.close_reason.startswith("Method doesn't allow unregistered callers")


async def test_an_expired_token_is_refused(emu: Emulator, http: Any) -> None:
    token = await mint(emu, uses=0, new_session_expire_minutes=30, expire_minutes=30)
    emu.advance(minutes=31)
    result = await converse(http, token.live_url(), setup())
    assert (result.close_code, result.close_reason) == (1008, "Auth token has expired.")


async def test_past_the_new_session_deadline_no_new_session(emu: Emulator, http: Any) -> None:
    token = await mint(emu, uses=0)  # new sessions for 1 minute, expiry in 30
    assert (await converse(http, token.live_url(), setup(), until="setupComplete")).accepted
    emu.advance(minutes=2)
    result = await converse(http, token.live_url(), setup())
    assert result.close_code == 1008
    assert "newSessionExpireTime" in result.close_reason


async def test_sessions_are_closed_once_the_token_expires(emu: Emulator, http: Any) -> None:
    token = await mint(emu)
    async with http.ws_connect(token.live_url()) as ws:
        await ws.send_json(setup())
        assert "setupComplete" in json.loads((await ws.receive(timeout=5)).data)
        await ws.send_json({"clientContent": TURN})
        assert "modelTurn" in json.loads((await ws.receive(timeout=5)).data)["serverContent"]
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.BINARY  # turnComplete
        emu.advance(minutes=31)
        await ws.send_json({"clientContent": TURN})
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (ws.close_code, msg.extra) == (1008, "Auth token has expired.")


async def test_the_token_may_come_in_an_authorization_header(emu: Emulator, http: Any) -> None:
    """What the official Python SDK sends (and a doubled slash, as it builds from "…/")."""
    token = await mint(emu)
    url = token.live_url().split("?")[0].replace("/ws/", "//ws/")
    result = await converse(
        http,
        url,
        setup(),
        {"clientContent": TURN},
        headers={"Authorization": f"Token {token.name}"},
    )
    assert result.accepted
    assert emu.sessions[0].token_name == token.name


# -- messages ----------------------------------------------------------------------------------


async def test_snake_case_messages_are_read_as_proto_json(emu: Emulator, http: Any) -> None:
    token = await mint(emu)
    result = await converse(
        http,
        token.live_url(),
        {"setup": {"model": OTHER, "generation_config": {"response_modalities": ["TEXT"]}}},
        {
            "client_content": {
                "turns": [{"role": "user", "parts": [{"text": "hi"}]}],
                "turn_complete": True,
            }
        },
    )
    assert result.accepted
    assert (
        result.reply
        == f'Emulator reply to "hi" with model={OTHER}, modalities=TEXT, temperature=unset.'
    )
    assert emu.sessions[0].messages[0]["clientContent"]["turnComplete"] is True


async def test_turns_wait_for_turn_complete_and_realtime_text_is_answered(
    emu: Emulator, http: Any
) -> None:
    token = await mint(emu)
    part = {"turns": [{"role": "user", "parts": [{"text": "one"}]}], "turnComplete": False}
    result = await converse(
        http,
        token.live_url(),
        setup(),
        {"clientContent": part},
        {
            "clientContent": {
                "turns": [{"role": "user", "parts": [{"text": "two"}]}],
                "turnComplete": True,
            }
        },
    )
    assert result.reply.startswith('Emulator reply to "one two"')
    token = await mint(emu)
    result = await converse(http, token.live_url(), setup(), {"realtimeInput": {"text": "live"}})
    assert result.reply.startswith('Emulator reply to "live"')


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([{"clientContent": TURN}], "Invalid argument: the first message must be setup."),
        (
            [setup(), setup()],
            "Invalid argument: setup may only be sent once, as the first message.",
        ),
        ([{"setup": {"model": OTHER, "voice": "Kore"}}], "Unknown name \"voice\" at 'setup'"),
        ([{"setupp": {}}], 'Unknown name "setupp": Cannot find field.'),
        ([{"setup": {"model": OTHER}, "clientContent": TURN}], "exactly one of"),
        (
            [{"setup": {"model": OTHER, "generationConfig": {"temperature": "hot"}}}],
            "Invalid value at 'setup.generation_config.temperature'",
        ),
    ],
    ids=[
        "first-not-setup",
        "second-setup",
        "unknown-field",
        "unknown-message",
        "two-kinds",
        "bad-value",
    ],
)
async def test_invalid_messages_are_1007(
    emu: Emulator, http: Any, messages: list[dict[str, Any]], reason: str
) -> None:
    token = await mint(emu)
    result = await converse(http, token.live_url(), *messages)
    assert result.close_code == 1007
    assert reason in result.close_reason


async def test_text_that_is_not_json_is_1007(emu: Emulator, http: Any) -> None:
    token = await mint(emu)
    async with http.ws_connect(token.live_url()) as ws:
        await ws.send_str("{nope")
        msg = await ws.receive(timeout=5)
    assert (ws.close_code, msg.extra) == (1007, "Invalid JSON payload received.")


# -- the API key method ------------------------------------------------------------------------


async def test_bidi_generate_content_takes_the_api_key(emu: Emulator, http: Any) -> None:
    result = await converse(http, emu.live_url(), setup(temperature=0.3), {"clientContent": TURN})
    assert result.accepted
    assert "temperature=0.3" in result.reply
    header = emu.live_url().split("?")[0].replace("v1alpha", "v1beta")
    result = await converse(
        http, header, setup(), {"clientContent": TURN}, headers={"x-goog-api-key": emu.api_key}
    )
    assert result.accepted
    assert [s.api_version for s in emu.sessions] == ["v1alpha", "v1beta"]
    assert emu.sessions[0].token_name is None
    assert not emu.sessions[0].counted_as_use


async def test_bidi_generate_content_refuses_tokens_and_wrong_keys(
    emu: Emulator, http: Any
) -> None:
    token = await mint(emu)
    plain = emu.live_url().split("?")[0]
    result = await converse(http, f"{plain}?access_token={token.name}", setup())
    assert result.close_code == 1008
    assert result.close_reason.startswith("Method doesn't allow unregistered callers")
    result = await converse(http, f"{plain}?key=wrong", setup())
    assert (result.close_code, result.close_reason) == (
        1007,
        "API key not valid. Please pass a valid API key.",
    )
    assert emu.token(token.name).sessions_opened == 0  # type: ignore[union-attr]


# -- resumption --------------------------------------------------------------------------------


async def _first_session_handle(emu: Emulator, http: Any, token: EphemeralToken) -> str:
    result = await converse(
        http, token.live_url(), setup(), {"clientContent": TURN}, until="newHandle", count=2
    )
    assert result.reply
    updates = [
        m["sessionResumptionUpdate"] for m in result.messages if "sessionResumptionUpdate" in m
    ]
    assert len(updates) == 2  # after setupComplete and after the turn
    assert all(u["resumable"] for u in updates)
    handle: str = updates[-1]["newHandle"]
    return handle


async def test_resuming_with_a_handle_is_not_a_use(emu: Emulator, http: Any) -> None:
    token = await mint(
        emu, uses=1, live_connect_constraints={"model": MODEL, "config": {"session_resumption": {}}}
    )
    handle = await _first_session_handle(emu, http, token)
    emu.advance(minutes=5)  # past the new-session window: resuming is not a new session
    resumed = await converse(
        http,
        token.live_url(),
        {"setup": {"model": OTHER, "sessionResumption": {"handle": handle}}},
        {"clientContent": TURN},
    )
    assert resumed.accepted
    session = emu.sessions[-1]
    assert session.resumed
    assert not session.counted_as_use
    assert emu.token(token.name).sessions_opened == 1  # type: ignore[union-attr]
    # A fresh session is still refused: the use is spent.
    refused = await converse(http, token.live_url(), setup())
    assert refused.close_code == 1008  # (and past the new-session window)


async def test_count_resumption_as_use_reproduces_user_reports(http: Any) -> None:
    async with Emulator(count_resumption_as_use=True) as emu:
        token = await mint(
            emu,
            uses=1,
            live_connect_constraints={"model": MODEL, "config": {"session_resumption": {}}},
        )
        handle = await _first_session_handle(emu, http, token)
        again = {"setup": {"model": OTHER, "sessionResumption": {"handle": handle}}}
        refused = await converse(http, token.live_url(), again)
        assert (refused.close_code, refused.close_reason) == (
            1011,
            "Token has been used too many times",
        )
        token = await mint(
            emu,
            uses=2,
            live_connect_constraints={"model": MODEL, "config": {"session_resumption": {}}},
        )
        handle = await _first_session_handle(emu, http, token)
        again = {"setup": {"model": OTHER, "sessionResumption": {"handle": handle}}}
        assert (await converse(http, token.live_url(), again, until="setupComplete")).accepted
        assert emu.sessions[-1].counted_as_use


async def test_an_unknown_handle_is_1007(emu: Emulator, http: Any) -> None:
    token = await mint(emu)
    result = await converse(
        http, token.live_url(), {"setup": {"model": OTHER, "sessionResumption": {"handle": "nope"}}}
    )
    assert result.close_code == 1007
    assert "handle" in result.close_reason


# -- frames, faults, shutdown ------------------------------------------------------------------


async def test_server_messages_are_binary_json(emu: Emulator, http: Any) -> None:
    token = await mint(emu)
    async with http.ws_connect(token.live_url()) as ws:
        await ws.send_bytes(json.dumps(setup()).encode())  # binary frames are read too
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.BINARY
        assert list(json.loads(msg.data)) == ["setupComplete"]


async def test_faults_apply_to_the_handshake(emu: Emulator, http: Any) -> None:
    token = await mint(emu)
    emu.fail_next(503)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(token.live_url())
    assert info.value.status == 503
    emu.drop_next(times=2)  # aiohttp retries a GET once when the server disconnects
    with pytest.raises(aiohttp.ClientError):
        await http.ws_connect(token.live_url())
    assert [r.fault for r in emu.requests[-2:]] == ["drop", "drop"]
    assert (await converse(http, token.live_url(), setup(), until="setupComplete")).accepted
    assert emu.requests[-1].status == 101


async def test_stopping_closes_open_sessions_with_1001(http: Any) -> None:
    async with Emulator() as emu:
        token = await mint(emu)
        ws = await http.ws_connect(token.live_url())
        await ws.send_json(setup())
        await ws.receive(timeout=5)
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1001
    await ws.close()
    assert emu.sessions[0].close_code == 1001


async def test_a_plain_get_on_the_socket_path_is_400(emu: Emulator, http: Any) -> None:
    async with http.get(emu.live_url().replace("ws://", "http://")) as response:
        assert response.status == 400


def test_sync_end_to_end_with_another_websocket_client() -> None:
    """Sync code: the blocking `Client` mints, the ``websockets`` sync client opens the session."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from gemini_tokens import Client

    with Emulator.running() as emu:
        with Client(emu.api_key, base_url=emu.base_url) as client:
            token = client.create(
                live_connect_constraints={"model": MODEL, "config": {"temperature": 0.1}}
            )
        with connect(token.live_url()) as ws:
            ws.send(json.dumps(setup(temperature=1.0)))
            assert "setupComplete" in json.loads(ws.recv(timeout=5))
            ws.send(json.dumps({"client_content": TURN}))
            reply = json.loads(ws.recv(timeout=5))
            assert json.loads(ws.recv(timeout=5)) == {"serverContent": {"turnComplete": True}}
        text = reply["serverContent"]["modelTurn"]["parts"][0]["text"]
        assert text.endswith(f"model=models/{MODEL}, modalities=unset, temperature=0.1.")
        with connect(token.live_url()) as ws:
            ws.send(json.dumps(setup()))
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (
            1011,
            "Token has been used too many times",
        )


async def test_stopping_leaves_no_task_behind(http: Any) -> None:
    async def post_status() -> int | None:
        try:
            async with http.post(emulator.base_url + "/v1alpha/auth_tokens") as response:
                status: int = response.status
                return status
        except aiohttp.ClientError:
            return None

    async with Emulator() as emulator:
        token = await mint(emulator)
        emulator.delay_next(30)  # a stalled request in flight when the emulator stops
        stalled = asyncio.ensure_future(post_status())
        while len(emulator.requests) < 2:  # noqa: ASYNC110  (the record is the only signal)
            await asyncio.sleep(0.01)
        ws = await http.ws_connect(token.live_url())  # an open session too
        await ws.send_json(setup())
        await ws.receive(timeout=5)
        started = time.monotonic()
    assert time.monotonic() - started < 3
    assert await asyncio.wait_for(stalled, 3) in (403, None)  # answered or cut, promptly
    assert ws.closed or (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
    await ws.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}
