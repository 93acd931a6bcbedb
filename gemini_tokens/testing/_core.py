"""The emulator's one seam onto the core's internals.

The emulator reads what it receives with the package's own models and converters, so the
emulator and the client cannot drift apart. Every name it needs from the core's private
modules is imported here, and only here: when the core moves a name (naming helpers, the
converters, request defaults), these import lines are the only ones to re-point.
"""

from __future__ import annotations

from gemini_tokens._converters import (
    GENERATION_FIELDS,
    SETUP_FIELDS,
    camel,
    format_time,
    live_url,
    parse_time,
    setup_to_wire,
    snake,
    user,
)
from gemini_tokens._errors import ConfigurationError, ValidationError
from gemini_tokens._models import (
    Blob,
    Content,
    GenerationConfig,
    LiveConnectConfig,
    LiveConnectConstraints,
    MediaResolution,
    Modality,
    _redact_name,
)
from gemini_tokens._request import DEFAULT_EXPIRE, DEFAULT_NEW_SESSION_EXPIRE, MAX_AHEAD

__all__ = [
    "DEFAULT_EXPIRE",
    "DEFAULT_NEW_SESSION_EXPIRE",
    "GENERATION_FIELDS",
    "MAX_AHEAD",
    "SETUP_FIELDS",
    "Blob",
    "ConfigurationError",
    "Content",
    "GenerationConfig",
    "LiveConnectConfig",
    "LiveConnectConstraints",
    "MediaResolution",
    "Modality",
    "ValidationError",
    "camel",
    "format_time",
    "live_url",
    "parse_time",
    "redact_name",
    "setup_to_wire",
    "snake",
    "user",
]

redact_name = _redact_name
