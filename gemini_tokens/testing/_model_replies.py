"""The model's side of a Live API turn: the server messages the emulator sends back.

What the emulator answers to a user turn (read by `_client_messages`): deterministic text,
or a short tone for audio.

A text session's answer is one ``modelTurn`` with a text part stating the effective model,
modalities and temperature. A session whose ``responseModalities`` include ``AUDIO`` is
answered as the service does: ``modelTurn`` parts with ``inlineData`` of
``audio/pcm;rate=24000`` (16-bit little-endian mono PCM, base64; here a short 440 Hz tone),
plus the words as ``outputTranscription`` when the setup asks for output transcription.
Audio the client sent is "heard" as a description of its length (the emulator does not
transcribe), given as ``inputTranscription`` when the setup asks for input transcription.
From the second turn of a conversation on (resumed sessions included), the text also tells
the turn's number and the earlier turns, so a test can see that history was kept.
"""

from __future__ import annotations

import array
import base64
import math
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AUDIO_MIME",
    "OUTPUT_RATE",
    "answers_in_audio",
    "describe_audio",
    "reply_text",
    "tone",
    "turn_messages",
]

AUDIO_MIME = "audio/pcm;rate=24000"
OUTPUT_RATE = 24_000
_TONE_SECONDS = 0.3
_CHUNK_SECONDS = 0.1
_RATE = re.compile(r"rate=(\d+)")


def _describe(setup: Mapping[str, Any]) -> str:
    generation = setup.get("generationConfig") or {}
    modalities = generation.get("responseModalities")
    temperature = generation.get("temperature")
    return (
        f"model={setup.get('model', 'unset')}, "
        f"modalities={','.join(map(str, modalities)) if modalities else 'unset'}, "
        f"temperature={'unset' if temperature is None else format(temperature, 'g')}"
    )


def reply_text(user_text: str, setup: Mapping[str, Any], earlier: Sequence[str] = ()) -> str:
    """The emulator's deterministic answer to a user turn.

    Args:
        user_text: What the user said (or a description of the audio they sent).
        setup: The session's effective setup.
        earlier: What the user said in the conversation's earlier turns, oldest first.
    """
    text = f'Emulator reply to "{user_text}" with {_describe(setup)}.'
    if earlier:
        seen = ", ".join(f'"{turn}"' for turn in earlier)
        text += f" Turn {len(earlier) + 1} of this conversation; earlier turns: {seen}."
    return text


def answers_in_audio(setup: Mapping[str, Any]) -> bool:
    """Whether the effective ``responseModalities`` include ``AUDIO``."""
    modalities = (setup.get("generationConfig") or {}).get("responseModalities") or ()
    return "AUDIO" in modalities


def tone(seconds: float = _TONE_SECONDS, frequency: float = 440.0) -> bytes:
    """A sine tone as 16-bit little-endian mono PCM at 24 kHz."""
    count = round(seconds * OUTPUT_RATE)
    samples = array.array(
        "h",
        (
            round(9830 * math.sin(2 * math.pi * frequency * index / OUTPUT_RATE))
            for index in range(count)
        ),
    )
    if sys.byteorder != "little":  # pragma: no cover - the wire is little-endian
        samples.byteswap()
    return samples.tobytes()


def describe_audio(data: bytes, mime_type: str) -> str:
    """How the emulator "hears" audio: ``[0.50 s of audio]`` for PCM, else its size."""
    if mime_type.startswith("audio/pcm"):
        match = _RATE.search(mime_type)
        rate = int(match[1]) if match else 16_000
        return f"[{len(data) / 2 / rate:.2f} s of audio]"
    return f"[{len(data)} bytes of {mime_type or 'audio'}]"


def _audio_parts() -> list[dict[str, Any]]:
    pcm = tone()
    step = 2 * round(_CHUNK_SECONDS * OUTPUT_RATE)
    return [
        {
            "inlineData": {
                "mimeType": AUDIO_MIME,
                "data": base64.b64encode(pcm[i : i + step]).decode(),
            }
        }
        for i in range(0, len(pcm), step)
    ]


def turn_messages(
    said: str, setup: Mapping[str, Any], earlier: Sequence[str], *, heard_audio: bool
) -> list[dict[str, Any]]:
    """The server messages answering one user turn, ``turnComplete`` last."""
    messages: list[dict[str, Any]] = []
    if heard_audio and "inputAudioTranscription" in setup:
        messages.append({"serverContent": {"inputTranscription": {"text": said}}})
    text = reply_text(said, setup, earlier)
    if answers_in_audio(setup):
        for part in _audio_parts():
            messages.append({"serverContent": {"modelTurn": {"role": "model", "parts": [part]}}})
        if "outputAudioTranscription" in setup:
            messages.append({"serverContent": {"outputTranscription": {"text": text}}})
    else:
        reply = {"role": "model", "parts": [{"text": text}]}
        messages.append({"serverContent": {"modelTurn": reply}})
    messages.append({"serverContent": {"turnComplete": True}})
    return messages
