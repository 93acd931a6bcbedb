"""The cattrs converters: user input -> validated models, models <-> the service's JSON.

Two converters, built on first use (importing cattrs is a good part of ``import
gemini_tokens``, and a process that never validates constraints never needs it):

- ``user``: structures what a user passes (dicts with snake_case keys, or our attrs classes)
  into validated models. It is strict: unknown keys, wrong types and bad enum values raise
  `ValidationError` with the dotted path of the offending value and a "did you mean".
- ``wire``: unstructures models into the service's JSON (camelCase, ``None`` omitted) and
  structures the service's JSON back, tolerating fields it does not know.

On top of them: `structure_constraints` (the option ``live_connect_constraints``),
`setup_to_wire` / `setup_from_wire` (the ``bidiGenerateContentSetup`` object) and
`body_for` / `body_bytes` (a `TokenRequest` -> the JSON body of ``POST auth_tokens``). Names
(camelCase, where a field goes, the field mask) come from `_naming`, the hooks the converters
are built from from `_hooks`. User data (schema
property names, label keys, texts) is never renamed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from gemini_tokens._errors import ValidationError
from gemini_tokens._hooks import (
    attrs_factory,
    enum_factory,
    enum_value,
    is_any,
    is_mapping,
    is_sequence,
    mapping_factory,
    passthrough,
    schema_to_wire,
    sequence_factory,
    strict_bool,
    strict_datetime,
    strict_float,
    strict_int,
    strict_str,
    unstructure_sequence_factory,
    wire_datetime,
    wire_enums,
)
from gemini_tokens._models import (
    LiveConnectConfig,
    LiveConnectConstraints,
    PrebuiltVoiceConfig,
    SpeechConfig,
    TokenRequest,
    VoiceConfig,
)
from gemini_tokens._naming import FLAT_GENERATION_FIELDS, UNFLATTEN, camel, field_mask
from gemini_tokens._structures import Content, FunctionDeclaration, Part
from gemini_tokens._times import format_time

if TYPE_CHECKING:
    import cattrs

    #: The strict converter for what users pass (see the module's doc).
    user: cattrs.Converter
    #: The converter for the service's JSON (see the module's doc).
    wire: cattrs.Converter

__all__ = [
    "Converters",
    "body_bytes",
    "body_for",
    "converters",
    "setup_from_wire",
    "setup_to_wire",
    "structure_constraints",
    "user",
    "wire",
]


def _build_user() -> cattrs.Converter:
    import cattrs

    user = cattrs.Converter()
    user.register_structure_hook(bool, strict_bool)
    user.register_structure_hook(int, strict_int)
    user.register_structure_hook(float, strict_float)
    user.register_structure_hook(str, strict_str)
    user.register_structure_hook_func(is_any, passthrough)
    user.register_structure_hook(dt.datetime, strict_datetime)
    for enum_cls in wire_enums():  # by class: str's hook would catch these str subclasses
        user.register_structure_hook(enum_cls, enum_factory(enum_cls))
    user.register_structure_hook_factory(is_sequence, sequence_factory)
    user.register_structure_hook_factory(is_mapping, mapping_factory)
    user.register_structure_hook_factory(attrs.has, attrs_factory(strict=True))

    attrs_speech = user.get_structure_hook(SpeechConfig)
    attrs_content = user.get_structure_hook(Content)
    attrs_part = user.get_structure_hook(Part)

    def speech_hook(value: Any, tp: Any) -> SpeechConfig:
        if isinstance(value, str):  # shorthand: a voice name
            voice = PrebuiltVoiceConfig(voice_name=value)
            return SpeechConfig(voice_config=VoiceConfig(prebuilt_voice_config=voice))
        result: SpeechConfig = attrs_speech(value, tp)
        return result

    def part_hook(value: Any, tp: Any) -> Part:
        if isinstance(value, str):  # shorthand: a text part
            return Part(text=value)
        result: Part = attrs_part(value, tp)
        return result

    def content_hook(value: Any, tp: Any) -> Content:
        # Shorthands, as the official SDK takes them: a string, a part, or a list of
        # strings and parts, from the user.
        if isinstance(value, (str, Part)) or (
            isinstance(value, Mapping) and value and not set(value) <= _CONTENT_KEYS
        ):
            return Content(parts=(part_hook(value, Part),), role="user")
        if isinstance(value, (list, tuple)):
            parts = []
            for index, item in enumerate(value):
                try:
                    parts.append(part_hook(item, Part))
                except ValidationError as exc:
                    raise exc.at(f"[{index}]") from None
            return Content(parts=tuple(parts), role="user")
        result: Content = attrs_content(value, tp)
        return result

    user.register_structure_hook(SpeechConfig, speech_hook)
    user.register_structure_hook(Part, part_hook)
    user.register_structure_hook(Content, content_hook)
    return user


_CONTENT_KEYS = frozenset({"parts", "role"})


# -- the wire converter ------------------------------------------------------------------------


def _build_wire() -> cattrs.Converter:
    import cattrs
    from cattrs.gen import make_dict_unstructure_fn, override

    wire = cattrs.Converter()
    wire.register_structure_hook_factory(attrs.has, attrs_factory(strict=False))
    wire.register_structure_hook_factory(is_sequence, sequence_factory)
    wire.register_structure_hook_factory(is_mapping, mapping_factory)
    wire.register_structure_hook_func(is_any, passthrough)

    def renames(cls: Any) -> dict[str, Any]:
        return {f.name: override(rename=camel(f.name)) for f in attrs.fields(cls)}

    def camel_unstructure_factory(cls: Any, conv: cattrs.Converter) -> Callable[[Any], Any]:
        attrs.resolve_types(cls)
        return make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **renames(cls))

    wire.register_unstructure_hook_factory(attrs.has, camel_unstructure_factory)
    for enum_cls in wire_enums():
        wire.register_unstructure_hook(enum_cls, enum_value)
        wire.register_structure_hook(enum_cls, enum_factory(enum_cls))
    wire.register_unstructure_hook(dt.datetime, format_time)
    wire.register_structure_hook(dt.datetime, wire_datetime)
    # Sequences go out as JSON arrays, whatever the caller passed.
    wire.register_unstructure_hook_factory(is_sequence, unstructure_sequence_factory)

    unstructure_function_plain = make_dict_unstructure_fn(
        FunctionDeclaration,
        wire,
        _cattrs_omit_if_default=True,
        **renames(FunctionDeclaration),
    )

    def unstructure_function(decl: FunctionDeclaration) -> dict[str, Any]:
        out: dict[str, Any] = unstructure_function_plain(decl)
        for key in ("parameters", "response"):
            if key in out:
                out[key] = schema_to_wire(out[key])
        return out

    wire.register_unstructure_hook(FunctionDeclaration, unstructure_function)
    return wire


# -- building the converters on first use ------------------------------------------------------


@attrs.frozen
class Converters:
    """The two converters (see the module's doc)."""

    user: cattrs.Converter
    wire: cattrs.Converter


@functools.cache
def converters() -> Converters:
    """The converters, built (and cattrs imported) on the first call."""
    return Converters(user=_build_user(), wire=_build_wire())


def __getattr__(name: str) -> Any:
    # ``user`` and ``wire`` read as module attributes, built on first access (PEP 562).
    if name in ("user", "wire"):
        return getattr(converters(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the constraints ---------------------------------------------------------------------------


def structure_constraints(value: Any) -> LiveConnectConstraints:
    """Validate ``live_connect_constraints`` (a dict or `LiveConnectConstraints`).

    Raises:
        ValidationError: naming the offending path under ``live_connect_constraints``.
    """
    try:
        result: LiveConnectConstraints = converters().user.structure(value, LiveConnectConstraints)
    except ValidationError as exc:
        raise exc.at("live_connect_constraints") from None
    model = result.model
    if model is not None:
        if not model.removeprefix("models/").removeprefix("tunedModels/").strip():
            raise ValidationError("live_connect_constraints.model", "must not be empty")
        if "?" in model or "&" in model or ".." in model:
            raise ValidationError(
                "live_connect_constraints.model",
                "must not contain '?', '&' or '..' (they would change the request)",
            )
    return result


#: The wire names of the generation settings `LiveConnectConfig` holds flat.
_FLAT_GENERATION_KEYS = frozenset(camel(name) for name in FLAT_GENERATION_FIELDS)


def setup_to_wire(constraints: LiveConnectConstraints) -> dict[str, Any]:
    """``LiveConnectConstraints`` -> the ``bidiGenerateContentSetup`` object."""
    setup: dict[str, Any] = {}
    if constraints.model is not None:
        model = constraints.model
        # ``tunedModels/...`` is sent as given; a bare name gets the ``models/`` prefix.
        setup["model"] = (
            model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        )
    config = constraints.config
    if config is None:
        return setup
    # The config as camelCase JSON (fields not set omitted), then the generation settings
    # moved under generationConfig: flat ones over those of a whole generation_config.
    flat: dict[str, Any] = converters().wire.unstructure(config)
    generation: dict[str, Any] = flat.pop("generationConfig", {})
    rest = {}
    for key, value in flat.items():
        if key in _FLAT_GENERATION_KEYS:
            generation[key] = value
        else:
            rest[key] = value
    if generation:
        setup["generationConfig"] = generation
    setup.update(rest)
    return setup


def setup_from_wire(setup: Mapping[str, Any]) -> LiveConnectConstraints:
    """A ``bidiGenerateContentSetup`` from the service -> `LiveConnectConstraints`."""
    config: dict[str, Any] = {}
    for key, value in setup.items():
        if key == "generationConfig" and isinstance(value, Mapping):
            rest = {}
            for gen_key, gen_value in value.items():
                flat = UNFLATTEN.get(gen_key) or UNFLATTEN.get(camel(gen_key))
                if flat:
                    config[flat] = gen_value
                else:
                    rest[gen_key] = gen_value
            if rest:
                config["generation_config"] = rest
        elif key != "model":
            config[key] = value
    model = setup.get("model")
    return LiveConnectConstraints(
        model=model if isinstance(model, str) else None,
        config=converters().wire.structure(config, LiveConnectConfig) if config else None,
    )


# -- the request body --------------------------------------------------------------------------


def body_for(request: TokenRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v1alpha/auth_tokens`` for a validated request."""
    body: dict[str, Any] = {
        "uses": request.uses,
        "expireTime": format_time(request.expire_time),
        "newSessionExpireTime": format_time(request.new_session_expire_time),
    }
    setup = setup_to_wire(request.constraints) if request.constraints is not None else {}
    if setup:
        body["bidiGenerateContentSetup"] = setup
    mask = field_mask(setup, request.lock_additional_fields)
    if mask:
        body["fieldMask"] = mask
    return body


#: ``json.dumps(value, separators=(",", ":"), allow_nan=False)``, the encoder made once.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def body_bytes(body: Mapping[str, Any]) -> bytes:
    """The body as compact JSON bytes.

    Raises:
        ValidationError: a free-form value (a tool setting, a JSON schema) that JSON cannot
            carry (a set, bytes, NaN, a cycle); nothing was sent.
    """
    try:
        return _encode(body).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(
            "live_connect_constraints",
            "must hold only JSON values (str, int, float, bool, None, lists, dicts); "
            f"{type(exc).__name__}: {exc}",
        ) from None
