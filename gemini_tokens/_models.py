"""The Live config a token is constrained to: immutable attrs classes in the user's words.

How these cross the wire (camelCase, shorthands, flattening) is owned by `_converters`; the
classes here only describe shapes, and this module imports nothing of the package's but the
other data modules (`_structures`, `_enums`, `_times`). Also here: `TokenRequest`, a request
as `_request` validates it, and `EphemeralToken`, the minted token, which carries the setup
JSON the parser gave it, so that `EphemeralToken.to_dict` needs no converter. Every class
is frozen and keyword-only; every field is optional and ``None`` means "not set" (it is
omitted on the wire).

The config classes mirror the official SDK's ``google.genai.types`` so that a dict written for
one works with the other.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import attrs

from gemini_tokens._enums import (
    ActivityHandling,
    AudioTranscriptionMode,
    EndSensitivity,
    HarmBlockThreshold,
    HarmCategory,
    MediaResolution,
    Modality,
    StartSensitivity,
    ThinkingLevel,
    TurnCoverage,
)
from gemini_tokens._structures import AvatarConfig, Compact, Content, Tool
from gemini_tokens._times import format_time

__all__ = [
    "AudioTranscriptionConfig",
    "AutomaticActivityDetection",
    "ContextWindowCompressionConfig",
    "EphemeralToken",
    "GenerationConfig",
    "HistoryConfig",
    "LanguageAuto",
    "LanguageHints",
    "LiveConnectConfig",
    "LiveConnectConstraints",
    "MultiSpeakerVoiceConfig",
    "PrebuiltVoiceConfig",
    "ProactivityConfig",
    "RealtimeInputConfig",
    "ReplicatedVoiceConfig",
    "SafetySetting",
    "SessionResumptionConfig",
    "SlidingWindow",
    "SpeakerVoiceConfig",
    "SpeechConfig",
    "ThinkingConfig",
    "TokenRequest",
    "TranslationConfig",
    "VoiceConfig",
    "VoiceConsentSignature",
    "live_url",
]

_Compact = Compact


# --- speech -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class PrebuiltVoiceConfig(_Compact):
    """A prebuilt voice, by name (e.g. ``"Kore"``, ``"Puck"``)."""

    voice_name: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class VoiceConsentSignature(_Compact):
    """The consent signature of a replicated voice."""

    signature: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class ReplicatedVoiceConfig(_Compact):
    """A voice replicated from a sample (audio base64-encoded)."""

    mime_type: str | None = None
    voice_sample_audio: str | None = None
    consent_audio: str | None = None
    voice_consent_signature: VoiceConsentSignature | None = None


@attrs.frozen(kw_only=True, repr=False)
class VoiceConfig(_Compact):
    """Which voice speaks: a prebuilt one, a replicated one, or a voice by name."""

    prebuilt_voice_config: PrebuiltVoiceConfig | None = None
    replicated_voice_config: ReplicatedVoiceConfig | None = None
    voice: str | None = None


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
    """Speech output settings. A plain string is accepted as shorthand for a voice name.

    ``multi_speaker_voice_config`` mirrors the SDK's type, but the Live API does not support
    it: it is refused before anything is sent.
    """

    voice_config: VoiceConfig | None = None
    multi_speaker_voice_config: MultiSpeakerVoiceConfig | None = None
    language_code: str | None = None


# --- generation -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class ThinkingConfig(_Compact):
    """Thinking (reasoning) settings."""

    include_thoughts: bool | None = None
    thinking_budget: int | None = None
    thinking_level: ThinkingLevel | None = None


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


# --- session ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class SessionResumptionConfig(_Compact):
    """Session resumption. Empty (``{}``) turns it on; ``handle`` resumes a session.

    ``transparent`` exists only on Vertex AI: it is refused before anything is sent.
    """

    handle: str | None = None
    transparent: bool | None = None


@attrs.frozen(kw_only=True, repr=False)
class LanguageAuto(_Compact):
    """Detect the spoken language (``language_auto``); no settings."""


@attrs.frozen(kw_only=True, repr=False)
class LanguageHints(_Compact):
    """Languages the audio is likely in."""

    language_codes: Sequence[str] | None = None


@attrs.frozen(kw_only=True, repr=False)
class AudioTranscriptionConfig(_Compact):
    """Transcription of input or output audio. Empty (``{}``) turns it on."""

    language_codes: Sequence[str] | None = None
    language_auto: LanguageAuto | None = None
    language_hints: LanguageHints | None = None
    custom_vocabulary: Sequence[str] | None = None
    adaptation_phrases: Sequence[str] | None = None
    word_timestamp: bool | None = None
    diarization: bool | None = None
    mode: AudioTranscriptionMode | None = None
    source_text: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class AutomaticActivityDetection(_Compact):
    """Server-side voice activity detection."""

    disabled: bool | None = None
    start_of_speech_sensitivity: StartSensitivity | None = None
    end_of_speech_sensitivity: EndSensitivity | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None


@attrs.frozen(kw_only=True, repr=False)
class RealtimeInputConfig(_Compact):
    """How realtime input (audio, video) is handled."""

    automatic_activity_detection: AutomaticActivityDetection | None = None
    activity_handling: ActivityHandling | None = None
    turn_coverage: TurnCoverage | None = None
    interim_transcript_timestamp_enabled: bool | None = None


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
    """A safety threshold for one harm category.

    (``method`` exists only on Vertex AI: it is refused before anything is sent.)
    """

    category: HarmCategory | None = None
    threshold: HarmBlockThreshold | None = None


# --- the constraints --------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class LiveConnectConfig(_Compact):
    """The Live session configuration a token is constrained to.

    Generation settings are flat here, as in the official SDK (``temperature``, not
    ``generation_config.temperature``); a whole `GenerationConfig` may be given too.
    ``system_instruction`` may also be given as a string, a `Part`, or a list of strings
    and parts.
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
    avatar_config: AvatarConfig | None = None
    labels: Mapping[str, str] | None = None


@attrs.frozen(kw_only=True, repr=False)
class LiveConnectConstraints(_Compact):
    """The model and config a token is locked to.

    Attributes:
        model: The model name: ``models/...`` or a bare name (the prefix is added), or
            ``tunedModels/...`` (sent as given).
        config: The Live configuration.
    """

    model: str | None = None
    config: LiveConnectConfig | None = None


def _redact_name(name: str) -> str:
    prefix, sep, _ = name.partition("/")
    return f"{prefix}/***" if sep else "***"


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
