"""The official JavaScript SDK, @google/genai from npm, run in Node against the emulator.

``tests/js_sdk/live_roundtrip.mjs`` does what a browser app does with a token from its
server: mint (``authTokens.create`` with the API key and ``httpOptions.baseUrl``), open a
Live session with the token (API version v1alpha), a text turn, reuse refused, an audio
turn and a streamed audio turn whose playback data it decodes. It runs twice: over plain
http/ws and over https/wss with the emulator's CA given to Node as ``NODE_EXTRA_CA_CERTS``.
A third run resumes a conversation after ``goAway`` with the SDK's ``sessionResumption``.
Needs ``node`` and ``npm ci`` (the root package.json pins @google/genai 3.3.0).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
from typing import Any

import pytest

from gemini_tokens.testing import Emulator

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "js_sdk" / "live_roundtrip.mjs"
MODEL = "gemini-live-2.5-flash-preview"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "@google" / "genai").is_dir(),
    reason="needs Node.js and `npm ci` in the checkout (apt-get install nodejs npm; npm ci)",
)


async def _run_node(emu: Emulator, **env: str) -> dict[str, Any]:
    environment = {
        **os.environ,
        "GEMINI_BASE_URL": emu.base_url,
        "GEMINI_API_KEY": emu.api_key,
        "MODEL": MODEL,
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        cwd=ROOT,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 90)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _check(out: dict[str, Any], emu: Emulator) -> None:
    # Minting: the JS SDK's string integers were read as proto JSON, and kept canonical.
    (mint_text, mint_audio) = [r for r in emu.requests if r.path == "/v1alpha/auth_tokens"]
    assert mint_audio.status == 200
    sent = mint_text.body["bidiGenerateContentSetup"]["contextWindowCompression"]
    assert sent == {"triggerTokens": "25600", "slidingWindow": {"targetTokens": "12800"}}
    assert mint_text.status == 200
    text_token, audio_token = emu.tokens
    assert text_token.setup["contextWindowCompression"] == {
        "triggerTokens": 25600,
        "slidingWindow": {"targetTokens": 12800},
    }
    assert out["textToken"] == {"prefix": "auth_tokens", "uses": 1}

    # The text turn: the locked temperature (0.2) beat the client's 0.9.
    assert out["text"]["setupComplete"] is True
    assert out["text"]["reply"] == (
        f'Emulator reply to "Hello from Node" with model=models/{MODEL}, modalities=TEXT, '
        "temperature=0.2."
    )
    first = emu.sessions[0]
    assert first.client_setup is not None
    assert first.client_setup["generationConfig"]["temperature"] == 0.9
    assert first.setup is not None
    assert first.setup["generationConfig"]["temperature"] == 0.2
    assert first.close_code == 1005  # session.close() sends no status code

    # Reuse refused.
    assert out["reuse"]["connected"] is False
    assert "(code 1011): Token has been used too many times" in out["reuse"]["error"]
    assert emu.sessions[1].close_code == 1011
    assert text_token.sessions_opened == 1

    # Audio: playback data (PCM16 at 24 kHz), transcriptions.
    for key in ("audioTurn", "audioStream"):
        audio = out[key]
        assert audio["mimeTypes"] == ["audio/pcm;rate=24000"]
        assert audio["bytes"] > 0
        assert audio["bytes"] % 2 == 0
        assert audio["peak"] > 1000  # a tone, not silence
    assert out["audioTurn"]["transcript"].startswith('Emulator reply to "Say hi"')
    assert out["audioStream"]["heard"] == "[0.50 s of audio]"
    assert out["audioStream"]["transcript"].startswith(
        'Emulator reply to "[0.50 s of audio]" with '
    )
    assert out["audioStream"]["transcript"].endswith('earlier turns: "Say hi".')
    assert audio_token.field_mask is not None
    assert "inputAudioTranscription" in audio_token.field_mask
    assert emu.sessions[2].close_code == 1005


async def test_the_js_sdk_mints_talks_and_hears_over_http() -> None:
    async with Emulator() as emu:
        out = await _run_node(emu)
        _check(out, emu)


async def test_the_js_sdk_over_tls_trusting_the_emulators_ca() -> None:
    async with Emulator(tls=True) as emu:
        assert emu.base_url.startswith("https://")
        out = await _run_node(emu, NODE_EXTRA_CA_CERTS=emu.ca_file)
        _check(out, emu)


async def test_the_js_sdk_resumes_a_conversation_after_go_away() -> None:
    """goAway, the SDK closes the old socket, and resumes with its handle: history kept."""
    async with Emulator(go_away_after=0.3, go_away_time_left=30) as emu:
        out = await _run_node(emu, SCENARIO="resume")
        resume = out["resume"]
        assert resume["timeLeft"] == "30s"
        assert resume["handles"] >= 2
        assert resume["reply"].endswith(
            'Turn 2 of this conversation; earlier turns: "My name is Ada.".'
        )
        first, second = emu.sessions
        assert first.go_away == 30
        assert first.close_code == 1005  # closed by the client, before the deadline
        assert second.resumed
        assert not second.counted_as_use
        assert emu.tokens[0].sessions_opened == 1
