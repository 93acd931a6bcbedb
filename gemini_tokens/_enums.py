"""The service's enum types, by their UPPER_CASE proto names.

The service parses enum values by name and refuses a lower-case one (400), so every
enum-typed field is one of these. Users may write a value in any case (``"low"``, ``"Low"``),
a member, or for some a short form without the common prefix (``"low"`` for
``START_SENSITIVITY_LOW``); the converter sends the canonical name and refuses anything else,
naming the allowed values.
"""

from __future__ import annotations

import enum

__all__ = [
    "ActivityHandling",
    "AudioTranscriptionMode",
    "Behavior",
    "CodeExecutionOutcome",
    "CodeLanguage",
    "DynamicRetrievalMode",
    "EndSensitivity",
    "Environment",
    "FunctionResponseScheduling",
    "HarmBlockThreshold",
    "HarmCategory",
    "MediaResolution",
    "Modality",
    "PartMediaResolutionLevel",
    "StartSensitivity",
    "ThinkingLevel",
    "TurnCoverage",
    "WireEnum",
]


class WireEnum(str, enum.Enum):
    """Base of the enums here: a str whose value is its wire name."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def short_prefix(cls) -> str:
        """The prefix a user may leave out (``"START_SENSITIVITY_"``), or ``""``."""
        return ""


class Modality(WireEnum):
    """A response modality. Strings are accepted too, in any case: ``"audio"``, ``"AUDIO"``."""

    TEXT = "TEXT"
    AUDIO = "AUDIO"
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"


class MediaResolution(WireEnum):
    """Resolution of media input. Accepts ``"low"`` as well as ``"MEDIA_RESOLUTION_LOW"``."""

    MEDIA_RESOLUTION_UNSPECIFIED = "MEDIA_RESOLUTION_UNSPECIFIED"
    MEDIA_RESOLUTION_LOW = "MEDIA_RESOLUTION_LOW"
    MEDIA_RESOLUTION_MEDIUM = "MEDIA_RESOLUTION_MEDIUM"
    MEDIA_RESOLUTION_HIGH = "MEDIA_RESOLUTION_HIGH"

    @classmethod
    def short_prefix(cls) -> str:
        """See `WireEnum.short_prefix`."""
        return "MEDIA_RESOLUTION_"


class PartMediaResolutionLevel(WireEnum):
    """The tokenization quality of one part's media (``Part.media_resolution.level``)."""

    MEDIA_RESOLUTION_UNSPECIFIED = "MEDIA_RESOLUTION_UNSPECIFIED"
    MEDIA_RESOLUTION_LOW = "MEDIA_RESOLUTION_LOW"
    MEDIA_RESOLUTION_MEDIUM = "MEDIA_RESOLUTION_MEDIUM"
    MEDIA_RESOLUTION_HIGH = "MEDIA_RESOLUTION_HIGH"
    MEDIA_RESOLUTION_ULTRA_HIGH = "MEDIA_RESOLUTION_ULTRA_HIGH"

    @classmethod
    def short_prefix(cls) -> str:
        """See `WireEnum.short_prefix`."""
        return "MEDIA_RESOLUTION_"


class ThinkingLevel(WireEnum):
    """How much the model thinks (``thinking_config.thinking_level``)."""

    THINKING_LEVEL_UNSPECIFIED = "THINKING_LEVEL_UNSPECIFIED"
    MINIMAL = "MINIMAL"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    XHIGH = "XHIGH"


class ActivityHandling(WireEnum):
    """Whether the user's activity interrupts the model (``realtime_input_config``)."""

    ACTIVITY_HANDLING_UNSPECIFIED = "ACTIVITY_HANDLING_UNSPECIFIED"
    START_OF_ACTIVITY_INTERRUPTS = "START_OF_ACTIVITY_INTERRUPTS"
    NO_INTERRUPTION = "NO_INTERRUPTION"


class TurnCoverage(WireEnum):
    """Which input a user turn includes (``realtime_input_config.turn_coverage``)."""

    TURN_COVERAGE_UNSPECIFIED = "TURN_COVERAGE_UNSPECIFIED"
    TURN_INCLUDES_ONLY_ACTIVITY = "TURN_INCLUDES_ONLY_ACTIVITY"
    TURN_INCLUDES_ALL_INPUT = "TURN_INCLUDES_ALL_INPUT"


class StartSensitivity(WireEnum):
    """How readily speech start is detected. Accepts ``"low"`` for ``START_SENSITIVITY_LOW``."""

    START_SENSITIVITY_UNSPECIFIED = "START_SENSITIVITY_UNSPECIFIED"
    START_SENSITIVITY_HIGH = "START_SENSITIVITY_HIGH"
    START_SENSITIVITY_LOW = "START_SENSITIVITY_LOW"

    @classmethod
    def short_prefix(cls) -> str:
        """See `WireEnum.short_prefix`."""
        return "START_SENSITIVITY_"


class EndSensitivity(WireEnum):
    """How readily speech end is detected. Accepts ``"low"`` for ``END_SENSITIVITY_LOW``."""

    END_SENSITIVITY_UNSPECIFIED = "END_SENSITIVITY_UNSPECIFIED"
    END_SENSITIVITY_HIGH = "END_SENSITIVITY_HIGH"
    END_SENSITIVITY_LOW = "END_SENSITIVITY_LOW"

    @classmethod
    def short_prefix(cls) -> str:
        """See `WireEnum.short_prefix`."""
        return "END_SENSITIVITY_"


class HarmCategory(WireEnum):
    """A harm category of a safety setting."""

    HARM_CATEGORY_UNSPECIFIED = "HARM_CATEGORY_UNSPECIFIED"
    HARM_CATEGORY_HARASSMENT = "HARM_CATEGORY_HARASSMENT"
    HARM_CATEGORY_HATE_SPEECH = "HARM_CATEGORY_HATE_SPEECH"
    HARM_CATEGORY_SEXUALLY_EXPLICIT = "HARM_CATEGORY_SEXUALLY_EXPLICIT"
    HARM_CATEGORY_DANGEROUS_CONTENT = "HARM_CATEGORY_DANGEROUS_CONTENT"
    HARM_CATEGORY_CIVIC_INTEGRITY = "HARM_CATEGORY_CIVIC_INTEGRITY"
    HARM_CATEGORY_JAILBREAK = "HARM_CATEGORY_JAILBREAK"
    HARM_CATEGORY_IMAGE_HATE = "HARM_CATEGORY_IMAGE_HATE"
    HARM_CATEGORY_IMAGE_HARASSMENT = "HARM_CATEGORY_IMAGE_HARASSMENT"

    @classmethod
    def short_prefix(cls) -> str:
        """See `WireEnum.short_prefix`."""
        return "HARM_CATEGORY_"


class HarmBlockThreshold(WireEnum):
    """The block threshold of a safety setting."""

    HARM_BLOCK_THRESHOLD_UNSPECIFIED = "HARM_BLOCK_THRESHOLD_UNSPECIFIED"
    BLOCK_LOW_AND_ABOVE = "BLOCK_LOW_AND_ABOVE"
    BLOCK_MEDIUM_AND_ABOVE = "BLOCK_MEDIUM_AND_ABOVE"
    BLOCK_ONLY_HIGH = "BLOCK_ONLY_HIGH"
    BLOCK_NONE = "BLOCK_NONE"
    OFF = "OFF"


class Behavior(WireEnum):
    """Whether a function call blocks the conversation (``function_declarations[].behavior``)."""

    UNSPECIFIED = "UNSPECIFIED"
    BLOCKING = "BLOCKING"
    NON_BLOCKING = "NON_BLOCKING"


class Environment(WireEnum):
    """Where a computer-use tool operates. Accepts ``"browser"``."""

    ENVIRONMENT_UNSPECIFIED = "ENVIRONMENT_UNSPECIFIED"
    ENVIRONMENT_BROWSER = "ENVIRONMENT_BROWSER"
    ENVIRONMENT_MOBILE = "ENVIRONMENT_MOBILE"
    ENVIRONMENT_DESKTOP = "ENVIRONMENT_DESKTOP"

    @classmethod
    def short_prefix(cls) -> str:
        """See `WireEnum.short_prefix`."""
        return "ENVIRONMENT_"


class DynamicRetrievalMode(WireEnum):
    """The mode of ``google_search_retrieval.dynamic_retrieval_config``. Accepts ``"dynamic"``."""

    MODE_UNSPECIFIED = "MODE_UNSPECIFIED"
    MODE_DYNAMIC = "MODE_DYNAMIC"

    @classmethod
    def short_prefix(cls) -> str:
        """See `WireEnum.short_prefix`."""
        return "MODE_"


class AudioTranscriptionMode(WireEnum):
    """How audio is transcribed (``input_audio_transcription.mode``)."""

    MODE_UNSPECIFIED = "MODE_UNSPECIFIED"
    VERBATIM = "VERBATIM"
    SMART = "SMART"


class CodeLanguage(WireEnum):
    """The language of an ``executable_code`` part."""

    LANGUAGE_UNSPECIFIED = "LANGUAGE_UNSPECIFIED"
    PYTHON = "PYTHON"


class CodeExecutionOutcome(WireEnum):
    """The outcome of a ``code_execution_result`` part."""

    OUTCOME_UNSPECIFIED = "OUTCOME_UNSPECIFIED"
    OUTCOME_OK = "OUTCOME_OK"
    OUTCOME_FAILED = "OUTCOME_FAILED"
    OUTCOME_DEADLINE_EXCEEDED = "OUTCOME_DEADLINE_EXCEEDED"

    @classmethod
    def short_prefix(cls) -> str:
        """See `WireEnum.short_prefix`."""
        return "OUTCOME_"


class FunctionResponseScheduling(WireEnum):
    """When a non-blocking function's response is acted on."""

    SCHEDULING_UNSPECIFIED = "SCHEDULING_UNSPECIFIED"
    SILENT = "SILENT"
    WHEN_IDLE = "WHEN_IDLE"
    INTERRUPT = "INTERRUPT"
