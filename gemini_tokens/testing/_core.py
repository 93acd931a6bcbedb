"""The emulator's one seam onto the core's internals.

The emulator reads what it receives with the package's own models and converters, so the
emulator and the client cannot drift apart. Every name it needs from the core's private
modules is imported here, and only here: when the core moves a name (naming helpers, the
converters, request defaults), these import lines are the only ones to re-point.
"""

from __future__ import annotations

from gemini_tokens._converters import setup_to_wire, user
from gemini_tokens._enums import MediaResolution, Modality
from gemini_tokens._errors import ConfigurationError, ValidationError, status_name
from gemini_tokens._models import (
    GenerationConfig,
    LiveConnectConfig,
    LiveConnectConstraints,
    _redact_name,
    live_url,
)
from gemini_tokens._naming import GENERATION_FIELDS, SETUP_FIELDS, camel, snake
from gemini_tokens._request import DEFAULT_EXPIRE, DEFAULT_NEW_SESSION_EXPIRE, MAX_AHEAD
from gemini_tokens._structures import Blob, Content
from gemini_tokens._times import format_time, parse_time

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
    "status_name",
    "user",
]

redact_name = _redact_name
