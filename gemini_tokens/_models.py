"""The data: immutable attrs classes in the user's words (snake_case).

How these cross the wire (camelCase, shorthands, flattening) is owned by `_converters`; the
classes here only describe shapes, and this module imports nothing of the package's but its
errors. Every class is frozen and keyword-only; every field is
optional and ``None`` means "not set" (it is omitted on the wire).

The config classes mirror the official SDK's ``google.genai.types`` so that a dict written for
one works with the other.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import attrs

__all__ = [
    "AudioTranscriptionConfig",
    "AutomaticActivityDetection",
    "Blob",
    "Content",
    "ContextWindowCompressionConfig",
    "EphemeralToken",
    "FileData",
    "FunctionDeclaration",
    "GenerationConfig",
    "HistoryConfig",
    "LiveConnectConfig",
    "LiveConnectConstraints",
    "MediaResolution",
    "Modality",
    "MultiSpeakerVoiceConfig",
    "Part",
    "PrebuiltVoiceConfig",
    "ProactivityConfig",
    "RealtimeInputConfig",
    "SafetySetting",
    "SessionResumptionConfig",
    "SlidingWindow",
    "SpeakerVoiceConfig",
    "SpeechConfig",
    "ThinkingConfig",
    "TokenRequest",
    "Tool",
    "TranslationConfig",
    "VoiceConfig",
    "format_time",
    "live_url",
]


class Modality(str, enum.Enum):
    """A response modality. Strings are accepted too, in any case: ``"audio"``, ``"AUDIO"``."""

    TEXT = "TEXT"
    AUDIO = "AUDIO"
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"

    def __str__(self) -> str:
        return self.value


class MediaResolution(str, enum.Enum):
    """Resolution of media input. Accepts ``"low"`` as well as ``"MEDIA_RESOLUTION_LOW"``."""

    MEDIA_RESOLUTION_UNSPECIFIED = "MEDIA_RESOLUTION_UNSPECIFIED"
    MEDIA_RESOLUTION_LOW = "MEDIA_RESOLUTION_LOW"
    MEDIA_RESOLUTION_MEDIUM = "MEDIA_RESOLUTION_MEDIUM"
    MEDIA_RESOLUTION_HIGH = "MEDIA_RESOLUTION_HIGH"

    def __str__(self) -> str:
        return self.value


class _Compact:
    """Mixin: a repr that shows only the fields that are set."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in attrs.fields(type(self))  # type: ignore[arg-type]
            if getattr(self, f.name) is not None
        )
        return f"{type(self).__name__}({shown})"


# --- speech -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class PrebuiltVoiceConfig(_Compact):
    """A prebuilt voice, by name (e.g. ``"Kore"``, ``"Puck"``)."""

    voice_name: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class VoiceConfig(_Compact):
    """Which voice speaks."""

    prebuilt_voice_config: PrebuiltVoiceConfig | None = None


@attrs.frozen(kw_only=True, repr=False)
class SpeakerVoiceConfig(_Compact):
    """The voice of one named speaker in a multi-speaker setup."""

    speaker: str | None = None
    voice_config: VoiceConfig | None = None


@attrs.frozen(kw_only=True, repr=False)
class MultiSpeakerVoiceConfig(_Compact):
    """Voices for several speakers."""

    speaker_voice_configs: Sequence[SpeakerVoiceConfig] | None = None


@attrs.frozen(kw_only=True, repr=False)
class SpeechConfig(_Compact):
    """Speech output settings. A plain string is accepted as shorthand for a voice name."""

    voice_config: VoiceConfig | None = None
    multi_speaker_voice_config: MultiSpeakerVoiceConfig | None = None
    language_code: str | None = None


# --- generation -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class ThinkingConfig(_Compact):
    """Thinking (reasoning) settings."""

    include_thoughts: bool | None = None
    thinking_budget: int | None = None
    thinking_level: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class TranslationConfig(_Compact):
    """Live speech translation settings."""

    target_language_code: str | None = None
    echo_target_language: bool | None = None


@attrs.frozen(kw_only=True, repr=False)
class GenerationConfig(_Compact):
    """A whole generation config. The same fields may also be set flat on `LiveConnectConfig`."""

    response_modalities: Sequence[Modality] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    max_output_tokens: int | None = None
    media_resolution: MediaResolution | None = None
    seed: int | None = None
    speech_config: SpeechConfig | None = None
    thinking_config: ThinkingConfig | None = None
    enable_affective_dialog: bool | None = None
    translation_config: TranslationConfig | None = None
    candidate_count: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop_sequences: Sequence[str] | None = None
    response_mime_type: str | None = None


# --- content ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class Blob(_Compact):
    """Inline bytes, base64-encoded as the API expects."""

    mime_type: str | None = None
    data: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class FileData(_Compact):
    """A reference to an uploaded file."""

    mime_type: str | None = None
    file_uri: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class Part(_Compact):
    """One part of a `Content`."""

    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None


@attrs.frozen(kw_only=True, repr=False)
class Content(_Compact):
    """A system instruction or a turn. A plain string is accepted as a one-text-part content."""

    parts: Sequence[Part] | None = None
    role: str | None = None


# --- tools ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class FunctionDeclaration(_Compact):
    """A function the model may call.

    ``parameters`` and ``response`` are OpenAPI-style schemas (``{"type": "OBJECT", ...}``);
    their keywords are camelCased on the wire but property names are sent as written.
    ``parameters_json_schema`` and ``response_json_schema`` are plain JSON Schema, sent verbatim.
    """

    name: str | None = None
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    parameters_json_schema: Any = None
    response: Mapping[str, Any] | None = None
    response_json_schema: Any = None
    behavior: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class Tool(_Compact):
    """A tool the model may use. Built-in tools take a (usually empty) dict, sent verbatim."""

    function_declarations: Sequence[FunctionDeclaration] | None = None
    google_search: Mapping[str, Any] | None = None
    google_search_retrieval: Mapping[str, Any] | None = None
    code_execution: Mapping[str, Any] | None = None
    url_context: Mapping[str, Any] | None = None
    google_maps: Mapping[str, Any] | None = None


# --- session ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class SessionResumptionConfig(_Compact):
    """Session resumption. Empty (``{}``) turns it on; ``handle`` resumes a session."""

    handle: str | None = None
    transparent: bool | None = None


@attrs.frozen(kw_only=True, repr=False)
class AudioTranscriptionConfig(_Compact):
    """Transcription of input or output audio. Empty (``{}``) turns it on."""

    language_codes: Sequence[str] | None = None


@attrs.frozen(kw_only=True, repr=False)
class AutomaticActivityDetection(_Compact):
    """Server-side voice activity detection."""

    disabled: bool | None = None
    start_of_speech_sensitivity: str | None = None
    end_of_speech_sensitivity: str | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None


@attrs.frozen(kw_only=True, repr=False)
class RealtimeInputConfig(_Compact):
    """How realtime input (audio, video) is handled."""

    automatic_activity_detection: AutomaticActivityDetection | None = None
    activity_handling: str | None = None
    turn_coverage: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class SlidingWindow(_Compact):
    """Sliding-window context compression."""

    target_tokens: int | None = None


@attrs.frozen(kw_only=True, repr=False)
class ContextWindowCompressionConfig(_Compact):
    """Context window compression, which lets sessions outlive the context window."""

    trigger_tokens: int | None = None
    sliding_window: SlidingWindow | None = None


@attrs.frozen(kw_only=True, repr=False)
class ProactivityConfig(_Compact):
    """Proactive audio: the model may decide not to answer."""

    proactive_audio: bool | None = None
    proactive_video: bool | None = None


@attrs.frozen(kw_only=True, repr=False)
class HistoryConfig(_Compact):
    """How initial history is sent."""

    initial_history_in_client_content: bool | None = None


@attrs.frozen(kw_only=True, repr=False)
class SafetySetting(_Compact):
    """A safety threshold for one harm category."""

    category: str | None = None
    threshold: str | None = None
    method: str | None = None


# --- the constraints --------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class LiveConnectConfig(_Compact):
    """The Live session configuration a token is constrained to.

    Generation settings are flat here, as in the official SDK (``temperature``, not
    ``generation_config.temperature``); a whole `GenerationConfig` may be given too.
    """

    # Go under bidiGenerateContentSetup.generationConfig on the wire.
    response_modalities: Sequence[Modality] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    max_output_tokens: int | None = None
    media_resolution: MediaResolution | None = None
    seed: int | None = None
    speech_config: SpeechConfig | None = None
    thinking_config: ThinkingConfig | None = None
    enable_affective_dialog: bool | None = None
    translation_config: TranslationConfig | None = None
    generation_config: GenerationConfig | None = None
    # Go under bidiGenerateContentSetup directly.
    system_instruction: Content | None = None
    tools: Sequence[Tool] | None = None
    session_resumption: SessionResumptionConfig | None = None
    input_audio_transcription: AudioTranscriptionConfig | None = None
    output_audio_transcription: AudioTranscriptionConfig | None = None
    realtime_input_config: RealtimeInputConfig | None = None
    context_window_compression: ContextWindowCompressionConfig | None = None
    proactivity: ProactivityConfig | None = None
    history_config: HistoryConfig | None = None
    safety_settings: Sequence[SafetySetting] | None = None
    avatar_config: Mapping[str, Any] | None = None
    labels: Mapping[str, str] | None = None


@attrs.frozen(kw_only=True, repr=False)
class LiveConnectConstraints(_Compact):
    """The model and config a token is locked to.

    Attributes:
        model: The model name, with or without the ``models/`` prefix.
        config: The Live configuration.
    """

    model: str | None = None
    config: LiveConnectConfig | None = None


def _redact_name(name: str) -> str:
    prefix, sep, _ = name.partition("/")
    return f"{prefix}/***" if sep else "***"


def format_time(value: dt.datetime) -> str:
    """An instant as the wire writes it: RFC 3339 in UTC with a ``Z``.

    ``2031-05-06T07:08:09Z``, with microseconds when they are not zero.
    """
    if value.tzinfo is not dt.timezone.utc:
        value = value.astimezone(dt.timezone.utc)
    return value.replace(tzinfo=None).isoformat() + "Z"


@attrs.frozen(kw_only=True)
class TokenRequest:
    """A validated token request, in Python types (built by `_request.build_request`).

    Attributes:
        uses: Sessions the token may open; 0 means no limit.
        expire_time: The token's expiry (aware, UTC).
        new_session_expire_time: The new-session deadline (aware, UTC), not after the expiry.
        constraints: The validated constraints, or None.
        lock_additional_fields: ``lock_additional_fields`` as given (None, or names).
    """

    uses: int
    expire_time: dt.datetime
    new_session_expire_time: dt.datetime
    constraints: LiveConnectConstraints | None = None
    lock_additional_fields: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class EphemeralToken:
    """A minted ephemeral token.

    Treat ``name`` as a secret: it is what the browser uses in place of an API key. The
    ``repr`` shows only its ``auth_tokens/`` prefix.

    Attributes:
        name: The token, ``auth_tokens/...``.
        expire_time: After it, sessions opened with the token stop working (aware, UTC).
        new_session_expire_time: After it, no new session can be opened (aware, UTC).
        uses: How many sessions it can open; 0 means no limit.
        live_connect_constraints: The model and config the token is locked to, if any.
        locked_fields: The ``fieldMask`` paths, or None when no mask was sent (then a
            constrained setup is locked whole).
        setup_json: The ``bidiGenerateContentSetup`` JSON as the service answered it (or as
            it was sent, when the answer did not repeat it): what `to_dict` hands on, numbers
            and unknown fields as they were. Given by the parser; None when not constrained.
        base_url: Where the token was minted, so that `live_url` points at the same
            service (or emulator).
        api_version: The API version it was minted on.
    """

    name: str = attrs.field(repr=_redact_name)
    expire_time: dt.datetime | None = None
    new_session_expire_time: dt.datetime | None = None
    uses: int | None = None
    live_connect_constraints: LiveConnectConstraints | None = None
    locked_fields: tuple[str, ...] | None = None
    setup_json: Mapping[str, Any] | None = attrs.field(default=None, repr=False, eq=False)
    base_url: str = attrs.field(
        default="https://generativelanguage.googleapis.com", repr=False, eq=False
    )
    api_version: str = attrs.field(default="v1alpha", repr=False, eq=False)

    def __str__(self) -> str:
        return repr(self)

    def to_dict(self) -> dict[str, Any]:
        """The token as camelCase JSON, for a server to hand to its browser.

        The shape is the service's AuthToken resource: ``name``, ``expireTime``,
        ``newSessionExpireTime``, ``uses`` and, when constrained, ``bidiGenerateContentSetup``
        and ``fieldMask``. It never contains the API key.
        """
        out: dict[str, Any] = {"name": self.name}
        if self.expire_time is not None:
            out["expireTime"] = format_time(self.expire_time)
        if self.new_session_expire_time is not None:
            out["newSessionExpireTime"] = format_time(self.new_session_expire_time)
        if self.uses is not None:
            out["uses"] = self.uses
        if self.setup_json:
            out["bidiGenerateContentSetup"] = copy.deepcopy(dict(self.setup_json))
        if self.locked_fields is not None:
            out["fieldMask"] = ",".join(self.locked_fields)
        return out

    def live_url(self) -> str:
        """The Live API WebSocket URL that opens a session with this token.

        ``wss://.../ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained?access_token=...``
        (``ws://`` when the token came from a plain-HTTP loopback server, such as the emulator).
        The URL contains the token: treat it as a secret too.
        """
        return live_url(self.base_url, self.api_version, self.name)


def live_url(base_url: str, api_version: str, token_name: str) -> str:
    """The ``BidiGenerateContentConstrained`` WebSocket URL for a token."""
    parts = urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    path = (
        f"{parts.path.rstrip('/')}/ws/google.ai.generativelanguage.{api_version}"
        ".GenerativeService.BidiGenerateContentConstrained"
    )
    query = "access_token=" + quote(token_name, safe="")
    return urlunsplit((scheme, parts.netloc, path, query, ""))
