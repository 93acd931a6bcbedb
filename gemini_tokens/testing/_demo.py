"""``gemini-tokens demo``: the whole token story, in-process, on the emulator.

Needs no key and no network: the emulator runs on 127.0.0.1 in this process, tokens are
minted with this library's own `AsyncClient`, and Live sessions are opened with aiohttp's
WebSocket client, as a browser would (``access_token`` in the URL).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import aiohttp

__all__ = ["run_demo"]

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
OTHER_MODEL = "models/gemini-2.0-flash-live-001"


@attrs.frozen
class _Outcome:
    accepted: bool
    reply: str = ""
    close_code: int | None = None
    close_reason: str = ""


async def _session(
    http: aiohttp.ClientSession, url: str, setup: Mapping[str, Any], say: str
) -> _Outcome:
    """Open a Live socket, send ``setup`` and one text turn; report what happened."""
    import aiohttp

    async with http.ws_connect(url) as ws:
        await ws.send_json({"setup": setup})
        msg = await ws.receive(timeout=10)
        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return _Outcome(False, close_code=ws.close_code, close_reason=str(msg.extra or ""))
        turn = {"turns": [{"role": "user", "parts": [{"text": say}]}], "turnComplete": True}
        await ws.send_json({"clientContent": turn})
        texts: list[str] = []
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                return _Outcome(False, close_code=ws.close_code, close_reason=str(msg.extra))
            content = json.loads(msg.data).get("serverContent") or {}
            for part in (content.get("modelTurn") or {}).get("parts") or ():
                texts.append(part.get("text") or "")
            texts.append((content.get("outputTranscription") or {}).get("text") or "")  # audio
            if content.get("turnComplete"):
                return _Outcome(True, reply="".join(texts))


async def _demo(say: Callable[[str], None]) -> int:
    import aiohttp

    from gemini_tokens import AsyncClient
    from gemini_tokens.testing._emulator import Emulator

    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)
            say(f"   !! UNEXPECTED: {what}")

    say("gemini-tokens demo: the whole token story on a local emulator (no key, no network).")
    say("")
    async with (
        Emulator() as emu,
        AsyncClient(emu.api_key, base_url=emu.base_url) as client,
        aiohttp.ClientSession() as http,
    ):
        say(f"1. Started the emulator of the token service and the Live API at {emu.base_url}.")

        locked = await client.create(
            uses=1,
            live_connect_constraints={
                "model": MODEL,
                "config": {"response_modalities": ["AUDIO"], "output_audio_transcription": {}},
            },
        )
        now = emu.clock.now()
        lifetime = _minutes(locked.expire_time, now)
        window = _minutes(locked.new_session_expire_time, now)
        say(f"2. Minted a token locked to models/{MODEL} and AUDIO:")
        say(
            f"   uses={locked.uses}, expires in {lifetime} minutes, new sessions for {window} "
            "minute(s), no fieldMask (the whole setup is locked)."
        )
        say("   Its name (auth_tokens/...) is the secret a browser would get.")

        asked = {"model": OTHER_MODEL, "generationConfig": {"responseModalities": ["TEXT"]}}
        say(f"3. Opened a Live session with it, asking for {OTHER_MODEL} and TEXT.")
        first = await _session(http, locked.live_url(), asked, "Hello")
        session = emu.sessions[-1]
        if first.accepted:
            say("   -> accepted (setupComplete).")
            say(f"   -> effective setup: {json.dumps(session.setup)} (the token's locks won)")
            say(f"   -> reply: {first.reply}")
        expect(first.accepted, "the first session was refused")
        expect(
            session.setup is not None
            and session.setup.get("generationConfig", {}).get("responseModalities") == ["AUDIO"],
            "the locked modality was not AUDIO",
        )

        say("4. Tried a second session with the same token.")
        second = await _session(http, locked.live_url(), asked, "Hello again")
        if not second.accepted:
            say(
                f'   -> refused: close {second.close_code} "{second.close_reason}" (uses exhausted)'
            )
        expect(
            not second.accepted and second.close_code == 1011,
            "the second session was not refused with 1011",
        )

        unlocked = await client.create(
            uses=0, live_connect_constraints={"model": MODEL}, lock_additional_fields=[]
        )
        say(
            "5. Minted a token that locks only the model (lock_additional_fields=[] -> "
            f"fieldMask={','.join(unlocked.locked_fields or ())}), uses=0 (no limit)."
        )
        override = {
            "model": OTHER_MODEL,
            "generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.9},
        }
        say(f"   Opened a session asking for {OTHER_MODEL}, TEXT and temperature 0.9.")
        third = await _session(http, unlocked.live_url(), override, "Hi")
        session = emu.sessions[-1]
        if third.accepted:
            say(f"   -> accepted; effective setup: {json.dumps(session.setup)}")
            say("   -> the client's TEXT and temperature took effect; the model stayed locked.")
            say(f"   -> reply: {third.reply}")
        generation = (session.setup or {}).get("generationConfig", {})
        expect(
            third.accepted
            and generation.get("temperature") == 0.9
            and (session.setup or {}).get("model") == f"models/{MODEL}",
            "the client's override did not take effect as the mask says",
        )

        emu.advance(minutes=31)
        say("6. Advanced the emulator's clock 31 minutes, past the token's expiry, and opened")
        say("   a session with the unlimited token.")
        fourth = await _session(http, unlocked.live_url(), override, "Still there?")
        if not fourth.accepted:
            say(f'   -> refused: close {fourth.close_code} "{fourth.close_reason}"')
        expect(
            not fourth.accepted and fourth.close_code == 1008,
            "the expired token was not refused with 1008",
        )
    say("")
    if problems:
        say(f"Demo FAILED: {len(problems)} step(s) did not behave as the service does.")
        return 1
    say("Done: every step behaved as the service does. Next: `gemini-tokens emulator`.")
    return 0


def _minutes(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return "?"
    return format((when - now).total_seconds() / 60, ".0f")


def run_demo() -> int:
    """Run the demo, printing each step to stdout; returns 0 when every step behaved."""
    return asyncio.run(_demo(lambda line: print(line, flush=True)))
