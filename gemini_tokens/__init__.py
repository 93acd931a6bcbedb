"""Mint short-lived, constrained ephemeral tokens for the Gemini Live API.

A server keeps the real API key and hands browsers and phones a token instead::

    import gemini_tokens

    async with gemini_tokens.AsyncClient() as client:
        token = await client.create(uses=1, live_connect_constraints={"model": "..."})

    with gemini_tokens.Client() as client:
        token = client.create(uses=1)

    token = gemini_tokens.create(uses=1)          # one-shot, on a shared default client
    token = await gemini_tokens.acreate(uses=1)
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from gemini_tokens._client import AsyncClient
from gemini_tokens._config import Timeout, is_loopback_host
from gemini_tokens._enums import (
    ActivityHandling,
    AudioTranscriptionMode,
    Behavior,
    CodeExecutionOutcome,
    CodeLanguage,
    DynamicRetrievalMode,
    EndSensitivity,
    Environment,
    FunctionResponseScheduling,
    HarmBlockThreshold,
    HarmCategory,
    MediaResolution,
    Modality,
    PartMediaResolutionLevel,
    StartSensitivity,
    ThinkingLevel,
    TurnCoverage,
)
from gemini_tokens._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CertificateVerificationError,
    ConfigurationError,
    GeminiTokensError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    ProxyAuthenticationError,
    RateLimitError,
    ServerError,
    ValidationError,
    status_name,
)
from gemini_tokens._models import (
    AudioTranscriptionConfig,
    AutomaticActivityDetection,
    ContextWindowCompressionConfig,
    EphemeralToken,
    GenerationConfig,
    HistoryConfig,
    LanguageAuto,
    LanguageHints,
    LiveConnectConfig,
    LiveConnectConstraints,
    MultiSpeakerVoiceConfig,
    PrebuiltVoiceConfig,
    ProactivityConfig,
    RealtimeInputConfig,
    ReplicatedVoiceConfig,
    SafetySetting,
    SessionResumptionConfig,
    SlidingWindow,
    SpeakerVoiceConfig,
    SpeechConfig,
    ThinkingConfig,
    TranslationConfig,
    VoiceConfig,
    VoiceConsentSignature,
)
from gemini_tokens._naming import camel
from gemini_tokens._retry import RetryPolicy, set_testing
from gemini_tokens._structures import (
    AudioMetadata,
    AvatarConfig,
    Blob,
    CodeExecution,
    CodeExecutionResult,
    ComputerUse,
    Content,
    CustomizedAvatar,
    DocumentMetadata,
    DynamicRetrievalConfig,
    ExecutableCode,
    FileData,
    FileSearch,
    FunctionCall,
    FunctionDeclaration,
    FunctionResponse,
    GoogleMaps,
    GoogleSearch,
    GoogleSearchRetrieval,
    ImageSearch,
    Interval,
    McpServer,
    Part,
    PartMediaResolution,
    SearchTypes,
    SpreadsheetMetadata,
    StreamableHttpTransport,
    Tool,
    UrlContext,
    VideoMetadata,
    WebSearch,
)
from gemini_tokens._sync import Client, create_on_its_loop
from gemini_tokens._version import __version__

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "ActivityHandling",
    "AsyncClient",
    "AudioMetadata",
    "AudioTranscriptionConfig",
    "AudioTranscriptionMode",
    "AuthenticationError",
    "AutomaticActivityDetection",
    "AvatarConfig",
    "BadRequestError",
    "Behavior",
    "Blob",
    "CertificateVerificationError",
    "Client",
    "CodeExecution",
    "CodeExecutionOutcome",
    "CodeExecutionResult",
    "CodeLanguage",
    "ComputerUse",
    "ConfigurationError",
    "Content",
    "ContextWindowCompressionConfig",
    "CustomizedAvatar",
    "DocumentMetadata",
    "DynamicRetrievalConfig",
    "DynamicRetrievalMode",
    "EndSensitivity",
    "Environment",
    "EphemeralToken",
    "ExecutableCode",
    "FileData",
    "FileSearch",
    "FunctionCall",
    "FunctionDeclaration",
    "FunctionResponse",
    "FunctionResponseScheduling",
    "GeminiTokensError",
    "GenerationConfig",
    "GoogleMaps",
    "GoogleSearch",
    "GoogleSearchRetrieval",
    "HarmBlockThreshold",
    "HarmCategory",
    "HistoryConfig",
    "ImageSearch",
    "Interval",
    "InvalidResponseError",
    "LanguageAuto",
    "LanguageHints",
    "LiveConnectConfig",
    "LiveConnectConstraints",
    "McpServer",
    "MediaResolution",
    "Modality",
    "MultiSpeakerVoiceConfig",
    "NotFoundError",
    "Part",
    "PartMediaResolution",
    "PartMediaResolutionLevel",
    "PermissionDeniedError",
    "PrebuiltVoiceConfig",
    "ProactivityConfig",
    "ProxyAuthenticationError",
    "RateLimitError",
    "RealtimeInputConfig",
    "ReplicatedVoiceConfig",
    "RetryPolicy",
    "SafetySetting",
    "SearchTypes",
    "ServerError",
    "SessionResumptionConfig",
    "SlidingWindow",
    "SpeakerVoiceConfig",
    "SpeechConfig",
    "SpreadsheetMetadata",
    "StartSensitivity",
    "StreamableHttpTransport",
    "ThinkingConfig",
    "ThinkingLevel",
    "Timeout",
    "Tool",
    "TranslationConfig",
    "TurnCoverage",
    "UrlContext",
    "ValidationError",
    "VideoMetadata",
    "VoiceConfig",
    "VoiceConsentSignature",
    "WebSearch",
    "__version__",
    "acreate",
    "camel",
    "check_create_options",
    "close_default_client",
    "create",
    "is_loopback_host",
    "set_testing",
    "status_name",
]

_default: Client | None = None
_default_lock = threading.Lock()


def _default_client() -> Client:
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Client()  # reads the key and base URL from the environment
        return _default


def close_default_client() -> None:
    """Close the shared client behind `create` / `acreate` (done for you at exit).

    The next one-shot call makes a new one, reading the environment again.
    """
    global _default
    with _default_lock:
        client, _default = _default, None
    if client is not None:
        client.close()


def check_create_options(
    *,
    uses: int = 1,
    expire_minutes: float | None = None,
    expire_time: dt.datetime | None = None,
    new_session_expire_minutes: float | None = None,
    new_session_expire_time: dt.datetime | None = None,
    live_connect_constraints: LiveConnectConstraints | Mapping[str, Any] | None = None,
    lock_additional_fields: Sequence[str] | None = None,
) -> None:
    """Check ``create()``'s token options by its rules, without sending anything.

    For options chosen once and used for many tokens (a server's policy read at start-up),
    so that a mistake fails there rather than on the first request. The broker's `Policy`
    is checked with it.

    Raises:
        ValidationError: naming the option (a dotted path inside
            ``live_connect_constraints``) and the rule it breaks.
    """
    from gemini_tokens._request import build_request  # cattrs on first use, not at import

    build_request(
        uses=uses,
        expire_minutes=expire_minutes,
        expire_time=expire_time,
        new_session_expire_minutes=new_session_expire_minutes,
        new_session_expire_time=new_session_expire_time,
        live_connect_constraints=live_connect_constraints,
        lock_additional_fields=lock_additional_fields,
    )


def create(
    *,
    uses: int = 1,
    expire_minutes: float | None = None,
    expire_time: dt.datetime | None = None,
    new_session_expire_minutes: float | None = None,
    new_session_expire_time: dt.datetime | None = None,
    live_connect_constraints: LiveConnectConstraints | Mapping[str, Any] | None = None,
    lock_additional_fields: Sequence[str] | None = None,
    **options: Any,
) -> EphemeralToken:
    """Mint a token with a shared default `Client` (configured from the environment).

    Takes the same options as `AsyncClient.create`. For settings other than the environment's,
    create your own `Client`.
    """
    return _default_client().create(
        uses=uses,
        expire_minutes=expire_minutes,
        expire_time=expire_time,
        new_session_expire_minutes=new_session_expire_minutes,
        new_session_expire_time=new_session_expire_time,
        live_connect_constraints=live_connect_constraints,
        lock_additional_fields=lock_additional_fields,
        **options,
    )


async def acreate(
    *,
    uses: int = 1,
    expire_minutes: float | None = None,
    expire_time: dt.datetime | None = None,
    new_session_expire_minutes: float | None = None,
    new_session_expire_time: dt.datetime | None = None,
    live_connect_constraints: LiveConnectConstraints | Mapping[str, Any] | None = None,
    lock_additional_fields: Sequence[str] | None = None,
    **options: Any,
) -> EphemeralToken:
    """Mint a token with the shared default client, from any event loop.

    The request runs on the default client's private loop, so one connection pool serves
    every loop and thread of the process. Cancelling the await cancels the request.
    """
    return await create_on_its_loop(
        _default_client(),
        uses=uses,
        expire_minutes=expire_minutes,
        expire_time=expire_time,
        new_session_expire_minutes=new_session_expire_minutes,
        new_session_expire_time=new_session_expire_time,
        live_connect_constraints=live_connect_constraints,
        lock_additional_fields=lock_additional_fields,
        **options,
    )
