"""The emulator reads the wire as the service does (proto3 JSON), and answers voice sessions.

The JS SDK bodies and messages below are exactly what @google/genai 3.3.0 sent to the
emulator on loopback (recorded with tests/js_sdk/live_roundtrip.mjs), so these tests show
the emulator takes what a real client sends even where Node is not installed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemini_tokens.testing import Emulator
from gemini_tokens.testing._proto_json import WireError
from gemini_tokens.testing._setup import parse_setup

MODEL = "models/gemini-live-2.5-flash-preview"

# What @google/genai 3.3.0 POSTs for authTokens.create (times left out: the tests add them).
JS_MINT_TEXT = {
    "uses": 1,
    "bidiGenerateContentSetup": {
        "model": MODEL,
        "generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.2},
        "sessionResumption": {},
        "contextWindowCompression": {
            "triggerTokens": "25600",
            "slidingWindow": {"targetTokens": "12800"},
        },
    },
    "fieldMask": "model,generationConfig.responseModalities,generationConfig.temperature,"
    "sessionResumption,contextWindowCompression.triggerTokens,"
    "contextWindowCompression.slidingWindow,generationConfig.temperature",
}
JS_MINT_AUDIO = {
    "uses": 1,
    "bidiGenerateContentSetup": {
        "model": MODEL,
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}},
        },
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
    },
    "fieldMask": "model,generationConfig.responseModalities,generationConfig.speechConfig,"
    "inputAudioTranscription,outputAudioTranscription",
}
# And on the Live socket.
JS_SETUP_TEXT = {
    "setup": {
        "model": MODEL,
        "generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.9},
    }
}
JS_SETUP_AUDIO = {"setup": {"model": MODEL, "generationConfig": {"responseModalities": ["AUDIO"]}}}
JS_TURN = {
    "clientContent": {
        "turns": [{"parts": [{"text": "Hello from Node"}], "role": "user"}],
        "turnComplete": True,
    }
}
JS_STREAM_END = {"realtimeInput": {"audioStreamEnd": True}}


def pcm16(seconds: float, rate: int = 16000) -> str:
    count = round(seconds * rate)
    samples = (round(8000 * math.sin(2 * math.pi * 220 * i / rate)) for i in range(count))
    return base64.b64encode(struct.pack(f"<{count}h", *samples)).decode()


def js_audio_chunk(seconds: float) -> dict[str, Any]:
    return {
        "realtimeInput": {"audio": {"data": pcm16(seconds), "mimeType": "audio/pcm;rate=16000"}}
    }


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


async def post(emu: Emulator, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            emu.base_url + "/v1alpha/auth_tokens",
            data=json.dumps(body).encode(),
            headers={"x-goog-api-key": emu.api_key},
        ) as response,
    ):
        return response.status, await response.json()


async def mint(emu: Emulator, body: Mapping[str, Any]) -> str:
    status, answer = await post(emu, body)
    assert status == 200, answer
    name: str = answer["name"]
    return name


async def converse(
    emu: Emulator, token: str | None, *messages: Mapping[str, Any], turns: int = 1
) -> tuple[list[dict[str, Any]], int | None, str]:
    """Send ``messages``; read until ``turns`` turnComplete or the close."""
    url = emu.live_url(token) if token else emu.live_url()
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        for message in messages:
            await ws.send_str(json.dumps(message))
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type is not aiohttp.WSMsgType.BINARY:
                return seen, ws.close_code, str(msg.extra or "")
            seen.append(json.loads(msg.data))
            if sum(bool((m.get("serverContent") or {}).get("turnComplete")) for m in seen) >= turns:
                return seen, None, ""


def parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        part
        for m in messages
        for part in ((m.get("serverContent") or {}).get("modelTurn") or {}).get("parts", [])
    ]


def transcription(messages: list[dict[str, Any]], which: str) -> list[str]:
    return [
        m["serverContent"][which]["text"] for m in messages if which in m.get("serverContent", {})
    ]


def setup_with(**generation: Any) -> dict[str, Any]:
    return {"setup": {"model": MODEL, "generationConfig": generation}}


# -- what the JS SDK sends -------------------------------------------------------------------------


async def test_the_js_sdk_mint_bodies_are_accepted_as_the_service_reads_them(
    emu: Emulator,
) -> None:
    text = await mint(emu, JS_MINT_TEXT)
    audio = await mint(emu, JS_MINT_AUDIO)
    issued = emu.token(text)
    assert issued is not None
    assert issued.setup["contextWindowCompression"] == {
        "triggerTokens": 25600,
        "slidingWindow": {"targetTokens": 12800},
    }
    # The repeated path is a valid mask, kept as sent.
    assert issued.field_mask is not None
    assert issued.field_mask.count("generationConfig.temperature") == 2
    assert emu.token(audio) is not None


async def test_the_js_sdk_text_session_gets_the_locked_temperature(emu: Emulator) -> None:
    token = await mint(emu, JS_MINT_TEXT)
    messages, close, _ = await converse(emu, token, JS_SETUP_TEXT, JS_TURN)
    assert close is None
    assert [p["text"] for p in parts(messages)] == [
        f'Emulator reply to "Hello from Node" with model={MODEL}, modalities=TEXT, temperature=0.2.'
    ]
    assert not any("inlineData" in p for p in parts(messages))  # text sessions stay text


async def test_the_js_sdk_audio_session_is_answered_in_audio(emu: Emulator) -> None:
    token = await mint(emu, JS_MINT_AUDIO)
    messages, close, _ = await converse(
        emu,
        token,
        JS_SETUP_AUDIO,
        JS_TURN,
        js_audio_chunk(0.25),
        js_audio_chunk(0.25),
        JS_STREAM_END,
        turns=2,
    )
    assert close is None
    audio = [p["inlineData"] for p in parts(messages)]
    assert audio
    assert {blob["mimeType"] for blob in audio} == {"audio/pcm;rate=24000"}
    pcm = b"".join(base64.b64decode(blob["data"]) for blob in audio)
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    assert max(map(abs, samples)) > 1000  # a tone, not silence
    assert len(samples) % 2 == 0  # two turns, each a whole tone
    assert not any("text" in p for p in parts(messages))
    assert transcription(messages, "inputTranscription") == ["[0.50 s of audio]"]
    spoken = transcription(messages, "outputTranscription")
    assert spoken[0].startswith('Emulator reply to "Hello from Node"')
    assert spoken[1].startswith('Emulator reply to "[0.50 s of audio]"')
    # The audio turn was answered only after audioStreamEnd.
    order = [next(iter(m["serverContent"])) for m in messages if "serverContent" in m]
    assert order.count("turnComplete") == 2


# -- proto3 JSON at minting and on the socket ----------------------------------------------------

ACCEPTED = [
    # (id, setup fragment as sent, canonical form expected in the token's setup)
    (
        "int-as-string",
        {"generationConfig": {"maxOutputTokens": "100", "seed": "-7"}},
        {"generationConfig": {"maxOutputTokens": 100, "seed": -7}},
    ),
    (
        "int-as-integral-float",
        {"generationConfig": {"maxOutputTokens": 100.0}},
        {"generationConfig": {"maxOutputTokens": 100}},
    ),
    (
        "int64-as-string",
        {"contextWindowCompression": {"triggerTokens": "9223372036854775807"}},
        {"contextWindowCompression": {"triggerTokens": 9223372036854775807}},
    ),
    (
        "float-as-string",
        {"generationConfig": {"temperature": "0.5"}},
        {"generationConfig": {"temperature": 0.5}},
    ),
    (
        "enum-number",
        {"generationConfig": {"responseModalities": [3], "mediaResolution": 1}},
        {
            "generationConfig": {
                "responseModalities": ["AUDIO"],
                "mediaResolution": "MEDIA_RESOLUTION_LOW",
            }
        },
    ),
    (
        "snake-case-all-the-way-down",
        {
            "context_window_compression": {
                "trigger_tokens": "1000",
                "sliding_window": {"target_tokens": 500},
            },
            "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
        },
        {
            "contextWindowCompression": {
                "triggerTokens": 1000,
                "slidingWindow": {"targetTokens": 500},
            },
            "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
        },
    ),
    (
        "null-is-unset",
        {"generationConfig": {"temperature": None, "topP": 0.5}, "tools": None},
        {"generationConfig": {"topP": 0.5}},
    ),
    (
        "labels-are-user-data",
        {"labels": {"my_team": "voice", "costCentre": "42"}},
        {"labels": {"my_team": "voice", "costCentre": "42"}},
    ),
]

REFUSED = [
    # (id, setup fragment, proto path, message fragment)
    (
        "int-fraction",
        {"generationConfig": {"maxOutputTokens": 1.5}},
        "generation_config.max_output_tokens",
        "(TYPE_INT32), 1.5: expected an integer",
    ),
    (
        "int-fraction-string",
        {"generationConfig": {"maxOutputTokens": "1.5"}},
        "generation_config.max_output_tokens",
        "expected an integer",
    ),
    (
        "int-bool",
        {"generationConfig": {"seed": True}},
        "generation_config.seed",
        "expected an integer",
    ),
    (
        "int32-overflow",
        {"generationConfig": {"maxOutputTokens": "2147483648"}},
        "generation_config.max_output_tokens",
        "out of range for int32",
    ),
    (
        "int64-overflow",
        {"contextWindowCompression": {"triggerTokens": "9223372036854775808"}},
        "context_window_compression.trigger_tokens",
        "out of range for int64",
    ),
    (
        "float-word",
        {"generationConfig": {"temperature": "hot"}},
        "generation_config.temperature",
        "expected a number",
    ),
    (
        "float-nan",
        {"generationConfig": {"temperature": "NaN"}},
        "generation_config.temperature",
        "finite",
    ),
    (
        "enum-lower-case",
        {"generationConfig": {"responseModalities": ["audio"]}},
        "generation_config.response_modalities[0]",
        "expected one of TEXT, AUDIO, IMAGE, VIDEO",
    ),
    (
        "enum-unknown-number",
        {"generationConfig": {"responseModalities": [42]}},
        "generation_config.response_modalities[0]",
        "expected one of",
    ),
    (
        "bool-as-string",
        {"realtimeInputConfig": {"automaticActivityDetection": {"disabled": "true"}}},
        "realtime_input_config.automatic_activity_detection.disabled",
        "expected true or false",
    ),
    (
        "unknown-nested-field",
        {"contextWindowCompression": {"slidingWindow": {"targetTokenz": 5}}},
        "context_window_compression.sliding_window",
        'Unknown name "targetTokenz"',
    ),
    (
        "pascal-case-name",
        {"generationConfig": {"TopK": 3}},
        "generation_config",
        'Unknown name "TopK"',
    ),
    (
        "camel-and-snake-twice",
        {"generationConfig": {"topK": 3, "top_k": 4}},
        "generation_config.top_k",
        "given twice",
    ),
    (
        "object-expected",
        {"contextWindowCompression": "small"},
        "context_window_compression",
        "expected an object",
    ),
    (
        "list-expected",
        {"generationConfig": {"responseModalities": "AUDIO"}},
        "generation_config.response_modalities",
        "expected a list",
    ),
    (
        "label-not-a-string",
        {"labels": {"team": 7}},
        "labels['team']",
        "expected a string",
    ),
]


@pytest.mark.parametrize(("case", "fragment", "canonical"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
async def test_proto_json_is_read_at_minting_and_on_the_socket(
    emu: Emulator, case: str, fragment: dict[str, Any], canonical: dict[str, Any]
) -> None:
    name = await mint(emu, {"bidiGenerateContentSetup": {"model": MODEL, **fragment}})
    issued = emu.token(name)
    assert issued is not None
    assert issued.setup == {"model": MODEL, **canonical}
    # The same fragment as a client's setup on an unconstrained token.
    token = await mint(emu, {})
    seen, close, _ = await converse(emu, token, {"setup": {"model": MODEL, **fragment}}, JS_TURN)
    assert close is None
    assert "setupComplete" in seen[0]
    session = emu.sessions[-1]
    assert session.accepted
    assert session.client_setup == {"model": MODEL, **canonical}


async def _first_reply_or_close(emu: Emulator, token: str, setup: Any) -> tuple[int | None, str]:
    _, close, reason = await converse(emu, token, {"setup": setup}, JS_TURN)
    return close, reason


@pytest.mark.parametrize(
    ("case", "fragment", "path", "message"), REFUSED, ids=[c[0] for c in REFUSED]
)
async def test_what_the_service_refuses_is_400_at_minting_and_1007_on_the_socket(
    emu: Emulator, case: str, fragment: dict[str, Any], path: str, message: str
) -> None:
    status, answer = await post(emu, {"bidiGenerateContentSetup": {"model": MODEL, **fragment}})
    assert status == 400, answer
    error = answer["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert message in error["message"]
    (violation,) = error["details"][0]["fieldViolations"]
    assert violation["field"] == f"bidi_generate_content_setup.{path}"
    token = await mint(emu, {})
    close, reason = await _first_reply_or_close(emu, token, {"model": MODEL, **fragment})
    assert close == 1007
    assert f"'setup.{path}'" in reason or message in reason
    assert not emu.sessions[-1].accepted
    assert emu.tokens[-1].sessions_opened == 0


async def test_uses_is_read_as_proto_json_too(emu: Emulator) -> None:
    status, answer = await post(emu, {"uses": "3"})
    assert (status, answer["uses"]) == (200, 3)
    status, answer = await post(emu, {"uses": "2147483648"})
    assert status == 400
    assert "out of range for int32" in answer["error"]["message"]


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["TEXT", "AUDIO", "IMAGE", "VIDEO"]).flatmap(
        lambda name: st.tuples(
            st.just(name),
            st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
                lambda upper: "".join(
                    c.upper() if u else c.lower() for c, u in zip(name, upper, strict=True)
                )
            ),
        )
    )
)
def test_enums_are_read_by_their_exact_name(spelling: tuple[str, str]) -> None:
    name, written = spelling
    setup = {"model": MODEL, "generationConfig": {"responseModalities": [written]}}
    if written == name:
        assert parse_setup(setup, "setup")["generationConfig"]["responseModalities"] == [name]
    else:
        with pytest.raises(WireError, match="expected one of TEXT, AUDIO, IMAGE, VIDEO"):
            parse_setup(setup, "setup")


# -- client messages -----------------------------------------------------------------------------

BAD_MESSAGES = [
    ("client-content-unknown", {"clientContent": {"turnz": []}}, 'Unknown name "turnz"'),
    (
        "client-content-bad-type",
        {"clientContent": {"turnComplete": "yes"}},
        "client_content.turn_complete",
    ),
    ("turn-unknown-field", {"clientContent": {"turns": [{"partz": []}]}}, 'Unknown name "partz"'),
    ("realtime-unknown", {"realtimeInput": {"audioz": {}}}, 'Unknown name "audioz"'),
    ("activity-end-not-empty", {"realtimeInput": {"activityEnd": {"x": 1}}}, 'Unknown name "x"'),
    (
        "audio-not-base64",
        {"realtimeInput": {"audio": {"data": "not base64!", "mimeType": "audio/pcm"}}},
        "realtime_input.audio.data",
    ),
    ("tool-response-unknown", {"toolResponse": {"functionResponsez": []}}, "Unknown name"),
]


@pytest.mark.parametrize(
    ("case", "message", "fragment"), BAD_MESSAGES, ids=[c[0] for c in BAD_MESSAGES]
)
async def test_client_messages_are_read_strictly(
    emu: Emulator, case: str, message: dict[str, Any], fragment: str
) -> None:
    token = await mint(emu, {})
    seen, close, reason = await converse(emu, token, setup_with(), message)
    assert "setupComplete" in seen[0]
    assert close == 1007
    assert fragment in reason


async def test_snake_case_client_messages_all_the_way_down(emu: Emulator) -> None:
    token = await mint(emu, {})
    message = {
        "realtime_input": {
            "audio": {"data": pcm16(0.1), "mime_type": "audio/pcm;rate=16000"},
            "audio_stream_end": True,
        }
    }
    seen, close, _ = await converse(emu, token, {"setup": {"model": MODEL}}, message)
    assert close is None
    assert parts(seen)[0]["text"].startswith('Emulator reply to "[0.10 s of audio]"')
    assert emu.sessions[-1].messages == [
        {"realtimeInput": {"audio": message["realtime_input"]["audio"], "audioStreamEnd": True}}
    ]


# -- voice sessions ----------------------------------------------------------------------------


async def test_audio_needs_audio_stream_end_under_automatic_activity_detection(
    emu: Emulator,
) -> None:
    token = await mint(emu, {})
    setup = {
        "setup": {
            "model": MODEL,
            "generationConfig": {"responseModalities": ["AUDIO"]},
            "inputAudioTranscription": {},
        }
    }
    async with aiohttp.ClientSession() as http, http.ws_connect(emu.live_url(token)) as ws:
        await ws.send_json(setup)
        assert "setupComplete" in json.loads((await ws.receive(timeout=5)).data)
        await ws.send_json(js_audio_chunk(0.2))
        await ws.send_json({"realtimeInput": {"activityEnd": {}}})  # not the signal here
        await ws.send_json({"clientContent": {"turns": [], "turnComplete": False}})  # a marker
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.3)
        await ws.send_json(JS_STREAM_END)
        first = json.loads((await ws.receive(timeout=5)).data)
        assert first == {"serverContent": {"inputTranscription": {"text": "[0.20 s of audio]"}}}


async def test_activity_end_answers_when_automatic_activity_detection_is_disabled(
    emu: Emulator,
) -> None:
    token = await mint(emu, {})
    setup = {
        "setup": {
            "model": MODEL,
            "generationConfig": {"responseModalities": ["AUDIO"]},
            "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
            "outputAudioTranscription": {},
        }
    }
    seen, close, _ = await converse(
        emu,
        token,
        setup,
        {"realtimeInput": {"activityStart": {}}},
        js_audio_chunk(0.3),
        JS_STREAM_END,  # ignored: activity is the client's to mark
        {"realtimeInput": {"activityEnd": {}}},
    )
    assert close is None
    assert transcription(seen, "inputTranscription") == []  # not asked for
    (spoken,) = transcription(seen, "outputTranscription")
    assert spoken.startswith('Emulator reply to "[0.30 s of audio]"')
    assert parts(seen)
    assert all(p["inlineData"]["mimeType"] == "audio/pcm;rate=24000" for p in parts(seen))


async def test_a_text_session_answers_audio_input_in_text(emu: Emulator) -> None:
    token = await mint(emu, {})
    seen, close, _ = await converse(
        emu,
        token,
        {"setup": {"model": MODEL, "inputAudioTranscription": {}}},
        js_audio_chunk(0.5),
        JS_STREAM_END,
    )
    assert close is None
    assert transcription(seen, "inputTranscription") == ["[0.50 s of audio]"]
    assert [p["text"] for p in parts(seen)] == [
        f'Emulator reply to "[0.50 s of audio]" with model={MODEL}, modalities=unset, '
        "temperature=unset."
    ]


async def test_no_transcriptions_unless_asked(emu: Emulator) -> None:
    token = await mint(emu, {})
    seen, _, _ = await converse(emu, token, setup_with(responseModalities=["AUDIO"]), JS_TURN)
    assert parts(seen)
    assert transcription(seen, "outputTranscription") == []
    assert transcription(seen, "inputTranscription") == []


async def test_token_fields_are_read_in_camel_or_snake_case_only(emu: Emulator) -> None:
    status, answer = await post(emu, {"uses": 2, "field_mask": None})
    assert (status, answer["uses"]) == (200, 2)
    for odd in ("Uses", "expire_Time", "FieldMask"):
        status, answer = await post(emu, {odd: 1})
        assert status == 400
        assert f'Unknown name "{odd}"' in answer["error"]["message"]
    status, answer = await post(emu, {"uses": 1, "use_s": 1})
    assert status == 400
    status, answer = await post(emu, {"fieldMask": "model", "field_mask": "model"})
    assert status == 400
    assert "given twice" in answer["error"]["message"]


async def test_tool_responses_as_the_sdks_send_them_are_recorded(emu: Emulator) -> None:
    token = await mint(emu, {})
    js = {"toolResponse": {"functionResponses": [{"id": "c1", "name": "f", "response": {}}]}}
    python = {"tool_response": {"function_responses": [{"id": "c2", "response": {"ok": 1}}]}}
    seen, close, _ = await converse(emu, token, setup_with(), js, python, JS_TURN)
    assert close is None
    assert parts(seen)  # the session carried on
    recorded = [
        m["toolResponse"]["functionResponses"][0]["id"] for m in emu.sessions[-1].messages[:2]
    ]
    assert recorded == ["c1", "c2"]
