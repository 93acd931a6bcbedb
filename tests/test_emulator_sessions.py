"""Sessions that outlast a connection: goAway, resumption handles, history, close codes.

Sessions are opened with aiohttp's WebSocket client against tokens minted with this library.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from gemini_tokens.testing import Emulator

from .conftest import mint

MODEL = "gemini-live-2.5-flash-preview"
RESUMABLE = {"model": MODEL, "config": {"session_resumption": {}}}


def turn(text: str) -> dict[str, Any]:
    return {
        "clientContent": {
            "turns": [{"role": "user", "parts": [{"text": text}]}],
            "turnComplete": True,
        }
    }


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.data, msg.extra)
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def until(ws: aiohttp.ClientWebSocketResponse, key: str) -> list[dict[str, Any]]:
    """Messages up to and including the first whose JSON mentions ``key``."""
    seen: list[dict[str, Any]] = []
    while not seen or key not in json.dumps(seen[-1]):
        seen.append(await next_json(ws))
    return seen


def reply_of(messages: list[dict[str, Any]]) -> str:
    return "".join(
        part.get("text", "")
        for m in messages
        for part in ((m.get("serverContent") or {}).get("modelTurn") or {}).get("parts", [])
    )


def last_handle(messages: list[dict[str, Any]]) -> str:
    handles = [
        m["sessionResumptionUpdate"]["newHandle"]
        for m in messages
        if "sessionResumptionUpdate" in m
    ]
    assert handles
    return handles[-1]


async def open_session(
    http: aiohttp.ClientSession, url: str, handle: str | None = None
) -> tuple[aiohttp.ClientWebSocketResponse, list[dict[str, Any]]]:
    setup: dict[str, Any] = {"model": MODEL}
    if handle is not None:
        setup["sessionResumption"] = {"handle": handle}
    ws = await http.ws_connect(url)
    await ws.send_json({"setup": setup})
    first = await until(ws, "setupComplete")
    return ws, first


async def say(ws: aiohttp.ClientWebSocketResponse, text: str) -> list[dict[str, Any]]:
    await ws.send_json(turn(text))
    answer = await until(ws, "turnComplete")
    answer.append(await next_json(ws))  # the handle issued after the turn
    assert "sessionResumptionUpdate" in answer[-1]
    return answer


# -- goAway ------------------------------------------------------------------------------------


async def test_go_away_on_command_warns_then_closes_with_1011(http: Any) -> None:
    async with Emulator() as emu:
        token = await mint(emu, live_connect_constraints=RESUMABLE)
        ws, _ = await open_session(http, token.live_url())
        assert "sessionResumptionUpdate" in await next_json(ws)
        assert emu.go_away(time_left=0.2) == 1
        assert await next_json(ws) == {"goAway": {"timeLeft": "0.2s"}}
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (ws.close_code, msg.extra) == (
            1011,
            "Deadline expired before operation could complete.",
        )
        (session,) = emu.sessions
        assert (session.go_away, session.close_code) == (0.2, 1011)
        assert emu.go_away() == 0  # nothing open any more


async def test_go_away_targets_one_session_and_a_client_close_cancels_the_deadline(
    http: Any,
) -> None:
    async with Emulator() as emu:
        token = await mint(emu, uses=2)
        first, _ = await open_session(http, token.live_url())
        second, _ = await open_session(http, token.live_url())
        assert emu.go_away(emu.sessions[1], time_left=0.1) == 1
        assert "goAway" in await next_json(second)
        await second.close()  # the client leaves in time: no deadline close is recorded
        await asyncio.sleep(0.3)
        assert emu.sessions[1].close_code == 1000
        await first.send_json(turn("still here"))  # the other session was not touched
        assert reply_of(await until(first, "turnComplete")).startswith('Emulator reply to "still')
        assert emu.sessions[0].go_away is None
        await first.close()


async def test_go_away_after_applies_to_every_session(http: Any) -> None:
    async with Emulator(go_away_after=0.05, go_away_time_left=30) as emu:
        token = await mint(emu, uses=2)
        for _ in range(2):
            ws, _ = await open_session(http, token.live_url())
            assert await next_json(ws) == {"goAway": {"timeLeft": "30s"}}
            await ws.close()


async def test_go_away_next_plans_the_next_sessions_only(http: Any) -> None:
    async with Emulator() as emu:
        token = await mint(emu, uses=0)
        emu.go_away_next(after=0, time_left=0.05)
        ws, _ = await open_session(http, token.live_url())
        assert "goAway" in await next_json(ws)
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        ws, _ = await open_session(http, token.live_url())  # the plan was used up
        await ws.send_json(turn("hi"))
        assert all("goAway" not in m for m in await until(ws, "turnComplete"))
        await ws.close()
        emu.go_away_next(after=0, times=2)
        emu.clear_faults()  # forgets the plans too
        ws, _ = await open_session(http, token.live_url())
        await ws.send_json(turn("hi"))
        assert all("goAway" not in m for m in await until(ws, "turnComplete"))
        await ws.close()


def test_go_away_from_sync_code_with_the_threaded_emulator() -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from gemini_tokens import Client

    with Emulator.running() as emu:
        with Client(emu.api_key, base_url=emu.base_url) as client:
            token = client.create()
        with connect(token.live_url()) as ws:
            ws.send(json.dumps({"setup": {"model": MODEL}}))
            assert "setupComplete" in json.loads(ws.recv(timeout=5))
            assert emu.go_away(time_left=0) == 1
            assert json.loads(ws.recv(timeout=5)) == {"goAway": {"timeLeft": "0s"}}
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1011


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (0.25, "0.25s"), (0, "0s"), (1e-5, "0.00001s")]
)
def test_time_left_is_a_protobuf_duration(seconds: float, text: str) -> None:
    from gemini_tokens.testing._live import duration

    assert duration(seconds) == text


async def test_go_away_arguments_are_checked() -> None:
    emu = Emulator()
    with pytest.raises(Exception, match="running"):
        emu.go_away()
    with pytest.raises(ValueError, match="time_left"):
        emu.go_away(time_left=-1)
    with pytest.raises(ValueError, match="after"):
        emu.go_away_next(after=-1)
    with pytest.raises(ValueError, match="times"):
        emu.go_away_next(after=1, times=0)
    with pytest.raises(ValueError, match="go_away_after"):
        Emulator(go_away_after="soon")  # type: ignore[arg-type]


# -- resumption and history --------------------------------------------------------------------


async def test_a_resumed_session_keeps_the_conversation(http: Any) -> None:
    async with Emulator() as emu:
        token = await mint(emu, uses=1, live_connect_constraints=RESUMABLE)
        ws, first = await open_session(http, token.live_url())
        assert first[-1]["setupComplete"]["sessionId"]
        update = await next_json(ws)
        assert update["sessionResumptionUpdate"]["resumable"] is True
        answer = await say(ws, "My name is Ada.")
        assert "Turn" not in reply_of(answer)  # a first turn reads as before
        handle = last_handle(answer)
        emu.go_away(time_left=0)
        assert "goAway" in await next_json(ws)
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE

        resumed, _ = await open_session(http, token.live_url(), handle)
        assert "sessionResumptionUpdate" in await next_json(resumed)
        answer = await say(resumed, "What is my name?")
        assert reply_of(answer).endswith(
            'Turn 2 of this conversation; earlier turns: "My name is Ada.".'
        )
        await resumed.close()
        session = emu.sessions[-1]
        assert session.resumed
        assert not session.counted_as_use
        assert emu.sessions[-1].close_code == 1000


async def test_an_older_handle_resumes_the_conversation_as_it_was_then(http: Any) -> None:
    async with Emulator() as emu:
        token = await mint(emu, live_connect_constraints=RESUMABLE)
        ws, _ = await open_session(http, token.live_url())
        early = last_handle([await next_json(ws)])  # issued before any turn
        await say(ws, "one")
        await say(ws, "two")
        await ws.close()
        resumed, _ = await open_session(http, token.live_url(), early)
        await next_json(resumed)
        answer = await say(resumed, "three")
        assert reply_of(answer).startswith('Emulator reply to "three"')
        assert "Turn" not in reply_of(answer)  # "one" and "two" came after that handle
        await resumed.close()


async def test_a_resume_while_the_old_socket_is_open_is_refused(http: Any) -> None:
    async with Emulator() as emu:
        token = await mint(emu, uses=1, live_connect_constraints=RESUMABLE)
        old, _ = await open_session(http, token.live_url())
        handle = last_handle([await next_json(old)])
        ws = await http.ws_connect(token.live_url())
        await ws.send_json({"setup": {"model": MODEL, "sessionResumption": {"handle": handle}}})
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1011
        assert "still open" in msg.extra
        assert not emu.sessions[-1].accepted
        await old.send_json(turn("hello"))  # the old one carries on
        assert reply_of(await until(old, "turnComplete"))
        await old.close()
        # Closed now: the same handle resumes.
        resumed, _ = await open_session(http, token.live_url(), handle)
        assert emu.sessions[-1].resumed
        await resumed.close()
        assert emu.token(token.name).sessions_opened == 1  # type: ignore[union-attr]


async def test_no_handles_without_session_resumption(http: Any) -> None:
    async with Emulator() as emu:
        token = await mint(emu)
        ws, first = await open_session(http, token.live_url())
        await ws.send_json(turn("hi"))
        messages = first + await until(ws, "turnComplete")
        assert not any("sessionResumptionUpdate" in m for m in messages)
        await ws.close()


# -- close codes -------------------------------------------------------------------------------


async def test_a_close_without_a_status_code_is_recorded_as_1005() -> None:
    """What @google/genai's session.close() and a browser's ws.close() send: an empty close."""
    from websockets.asyncio.client import connect

    async with Emulator() as emu:
        token = await mint(emu)
        async with connect(token.live_url()) as ws:
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            assert "setupComplete" in json.loads(await ws.recv())
            await ws.close(code=None)  # type: ignore[arg-type]  # a close frame with no code
        await asyncio.sleep(0.1)
        assert emu.sessions[0].close_code == 1005


async def test_a_dropped_connection_is_recorded_as_1006(http: Any) -> None:
    async with Emulator() as emu:
        token = await mint(emu)
        ws, _ = await open_session(http, token.live_url())
        transport = ws._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.abort()  # no close frame at all
        for _ in range(100):
            if emu.sessions[0].close_code is not None:
                break
            await asyncio.sleep(0.02)
        assert emu.sessions[0].close_code == 1006
