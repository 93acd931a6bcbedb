"""Names on the wire: camelCase and snake_case, where each config field goes, field masks.

The user writes Python snake_case and the service reads camelCase; the generation settings
that `LiveConnectConfig` holds flat live under ``generationConfig`` on the wire. This module
knows those names and builds the ``fieldMask`` from them (wire.md, "Locking"). It knows
nothing of values: converting them is `_converters`' job.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from gemini_tokens._models import GenerationConfig, LiveConnectConfig

__all__ = [
    "FLAT_GENERATION_FIELDS",
    "GENERATION_FIELDS",
    "LOCKABLE_FIELDS",
    "SETUP_FIELDS",
    "UNFLATTEN",
    "camel",
    "did_you_mean",
    "field_mask",
    "lock_path",
    "snake",
]

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])([A-Z])")


def camel(name: str) -> str:
    """A field's name as the service writes it (proto3 JSON's lowerCamelCase).

    ``camel("top_k") == "topK"``; a name already in camelCase is returned as is. Python
    writes snake_case, the service and a browser camelCase; proto3 JSON reads both, and so
    do `create()` and the token broker (a request's ``config``).

    Args:
        name: A field name in snake_case (or already in camelCase).
    """
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def snake(name: str) -> str:
    """``topK`` -> ``top_k``; a name already in snake_case is returned as is."""
    return _CAMEL_BOUNDARY.sub(r"_\1", name).lower()


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    match = difflib.get_close_matches(snake(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


#: `LiveConnectConfig` fields that go under ``bidiGenerateContentSetup.generationConfig``.
FLAT_GENERATION_FIELDS = (
    "response_modalities",
    "temperature",
    "top_p",
    "top_k",
    "max_output_tokens",
    "media_resolution",
    "seed",
    "speech_config",
    "thinking_config",
    "enable_affective_dialog",
    "translation_config",
)
#: ``generationConfig`` key on the wire -> the flat `LiveConnectConfig` field.
UNFLATTEN = {camel(name): name for name in FLAT_GENERATION_FIELDS}
#: Every GenerationConfig field name (lockable as ``generationConfig.<camelCase>``).
GENERATION_FIELDS = frozenset(
    (
        *(f.name for f in attrs.fields(GenerationConfig)),
        # Fields of the service's GenerationConfig that this library does not model as
        # constraints but that may still be named in lock_additional_fields.
        "logprobs",
        "response_logprobs",
        "response_schema",
        "response_json_schema",
        "audio_timestamp",
        "routing_config",
        "model_selection_config",
        "enable_enhanced_civic_answers",
        "response_format",
        "audio_transcription_config",
    )
)
#: `LiveConnectConfig` fields that go directly under ``bidiGenerateContentSetup``.
SETUP_FIELDS = tuple(
    f.name
    for f in attrs.fields(LiveConnectConfig)
    if f.name not in FLAT_GENERATION_FIELDS and f.name != "generation_config"
)
#: Names accepted in ``lock_additional_fields`` (``generation_config``: the whole object).
LOCKABLE_FIELDS = frozenset({"model", "generation_config", *GENERATION_FIELDS, *SETUP_FIELDS})


def lock_path(name: str) -> str:
    """The ``fieldMask`` path of a name in ``lock_additional_fields``.

    A generation field becomes ``generationConfig.<camelCase>`` (``top_k`` ->
    ``generationConfig.topK``), any other field its camelCase name (``generation_config`` ->
    ``generationConfig``, ``system_instruction`` -> ``systemInstruction``).
    """
    field = snake(name)
    return f"generationConfig.{camel(field)}" if field in GENERATION_FIELDS else camel(field)


def field_mask(setup: Mapping[str, Any], lock: Sequence[str] | None) -> str | None:
    """The ``fieldMask`` for a wire setup and ``lock_additional_fields`` (wire.md's modes).

    None: no mask (the whole setup is locked). Otherwise the fields set, two levels deep,
    then the named fields' paths. Lists are never expanded into ``key.0`` paths.
    """
    if lock is None:
        return None
    paths: list[str] = []
    for key, value in setup.items():
        if isinstance(value, Mapping) and value:
            for sub in value:
                paths.append(f"{key}.{sub}")
        else:
            paths.append(key)
    for name in lock:
        path = lock_path(name)
        if path not in paths:
            paths.append(path)
    return ",".join(paths) or None
