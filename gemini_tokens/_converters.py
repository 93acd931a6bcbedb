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
(camelCase, where a field goes, the field mask) come from `_naming`. User data (schema
property names, label keys, texts) is never renamed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from gemini_tokens._enums import WireEnum
from gemini_tokens._errors import ValidationError
from gemini_tokens._models import (
    LiveConnectConfig,
    LiveConnectConstraints,
    PrebuiltVoiceConfig,
    SafetySetting,
    SessionResumptionConfig,
    SpeechConfig,
    TokenRequest,
    VoiceConfig,
)
from gemini_tokens._naming import (
    FLAT_GENERATION_FIELDS,
    SETUP_FIELDS,
    UNFLATTEN,
    camel,
    did_you_mean,
    field_mask,
    snake,
)
from gemini_tokens._structures import (
    Content,
    FunctionCall,
    FunctionDeclaration,
    GoogleMaps,
    GoogleSearch,
    Part,
    Tool,
)
from gemini_tokens._times import format_time, parse_time

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

_VERTEX = "it exists only on Vertex AI, which has no ephemeral tokens"
#: Fields the official SDK refuses for the Developer API, by class: refused here too, before
#: anything is sent, with the reason (whether or not the model mirrors the field).
REFUSED: dict[tuple[type, str], str] = {
    (LiveConnectConfig, "explicit_vad_signal"): _VERTEX,
    (SessionResumptionConfig, "transparent"): _VERTEX,
    (SafetySetting, "method"): _VERTEX,
    (Tool, "retrieval"): _VERTEX,
    (Tool, "enterprise_web_search"): _VERTEX,
    (Tool, "parallel_ai_search"): _VERTEX,
    (Tool, "exa_ai_search"): _VERTEX,
    (GoogleSearch, "exclude_domains"): _VERTEX,
    (GoogleSearch, "blocking_confidence"): _VERTEX,
    (GoogleMaps, "grounding_types"): _VERTEX,
    (FunctionCall, "partial_args"): _VERTEX,
    (GoogleMaps, "auth_config"): (
        "a key in the setup would travel with the token to whoever holds it (to_dict); "
        "give the Maps key to the service another way"
    ),
    (SpeechConfig, "multi_speaker_voice_config"): "it is not supported in the Live API",
}
_MODEL_REFUSED = ("?", "&", "..")

# -- hooks of the user converter (strict) ------------------------------------------------------


def _type_name(tp: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _strict_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("", f"must be a boolean, not {type(value).__name__}")
    return value


def _strict_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("", f"must be an integer, not {type(value).__name__}")
    return value


def _strict_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError("", f"must be a number, not {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValidationError("", "must be a finite number")
    return value


def _strict_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("", f"must be a string, not {type(value).__name__}")
    return value


def _wire_enums() -> list[type[WireEnum]]:
    return WireEnum.__subclasses__()


def _enum_value(member: WireEnum) -> str:
    return str(member.value)


def _enum_factory(enum_cls: Any) -> Callable[[Any, Any], Any]:
    """A `WireEnum`: a member, or its name in any case (the common prefix may be left out)."""
    members = enum_cls._value2member_map_
    prefix = enum_cls.short_prefix()
    allowed = ", ".join(members)

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, enum_cls):
            return value
        if isinstance(value, str):
            key = value.strip().upper()
            member = members.get(key) or (members.get(prefix + key) if prefix else None)
            if member is not None:
                return member
        raise ValidationError("", f"must be one of {allowed}; got {value!r}")

    return structure


#: A date, a time and an offset: what an RFC 3339 timestamp must end with.
_RFC3339_END = re.compile(r"\d[Tt ]\d\d:\d\d(:\d\d(\.\d+)?)?([Zz]|[+-]\d\d:\d\d)$")


def _strict_datetime(value: Any, _: Any) -> dt.datetime:
    """An aware datetime, or an RFC 3339 timestamp with its offset (``Z`` or ``+hh:mm``)."""
    if isinstance(value, dt.datetime) and value.utcoffset() is not None:
        return value.astimezone(dt.timezone.utc)
    text = value.strip() if isinstance(value, str) else ""
    parsed = parse_time(text) if _RFC3339_END.search(text) else None
    if parsed is None:
        raise ValidationError(
            "", f"must be an aware datetime or an RFC 3339 timestamp; got {value!r}"
        )
    return parsed


def _is_any(tp: Any) -> bool:
    # A predicate, not register_structure_hook(Any, ...): singledispatch on 3.10 takes classes only.
    return tp is typing.Any


def _passthrough(value: Any, _: Any) -> Any:
    return value


def _is_sequence(tp: Any) -> bool:
    return typing.get_origin(tp) in (Sequence, list, tuple) and tp is not str


def _lazy_hook(conv: cattrs.Converter, tp: Any) -> Callable[[Any], Any]:
    """``lambda value: conv.structure(value, tp)``, with the dispatch done once, on first use.

    A ``X | None`` type resolves to X's hook (the callers never pass None), exactly what
    cattrs' own Optional handling would call. Resolved lazily so that hooks registered after
    a factory ran (the shorthand hooks below) are the ones used.
    """
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is type(None) and _is_union(tp):
        tp = args[0]
    resolved: list[Callable[[Any, Any], Any]] = []

    def hook(value: Any) -> Any:
        if not resolved:
            resolved.append(conv.get_structure_hook(tp))
        return resolved[0](value, tp)

    return hook


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _sequence_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    (item_type, *_) = typing.get_args(tp) or (Any,)
    item_hook = _lazy_hook(conv, item_type)

    def structure(value: Any, _: Any) -> Any:
        if type(value) not in (list, tuple) and (
            isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable)
        ):
            raise ValidationError("", f"must be a list, not {type(value).__name__}")
        out = []
        for index, item in enumerate(value):
            try:
                out.append(item_hook(item))
            except ValidationError as exc:
                raise exc.at(f"[{index}]") from None
        return tuple(out)

    return structure


def _is_mapping(tp: Any) -> bool:
    return typing.get_origin(tp) in (Mapping, dict)


def _mapping_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    _, value_type = typing.get_args(tp) or (str, Any)
    value_hook = _lazy_hook(conv, value_type)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValidationError("", f"must be a mapping, not {type(value).__name__}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError("", f"keys must be strings; got {key!r}")
            try:
                out[key] = value_hook(item)
            except ValidationError as exc:
                raise exc.at(key) from None
        return out

    return structure


def _attrs_factory(strict: bool) -> Callable[[Any, cattrs.Converter], Any]:
    def factory(cls: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
        attrs.resolve_types(cls)
        fields = {f.name: f for f in attrs.fields(cls)}
        hooks = {f.name: _lazy_hook(conv, f.type) for f in attrs.fields(cls)}
        refused = {name: why for (owner, name), why in REFUSED.items() if owner is cls}

        def structure(value: Any, _: Any) -> Any:
            items: Iterable[tuple[str, Any]]
            if type(value) is dict or (isinstance(value, Mapping) and not isinstance(value, cls)):
                items = value.items()
            elif isinstance(value, cls):
                items = ((name, getattr(value, name)) for name in fields)
            else:
                raise ValidationError(
                    "", f"must be a mapping or {cls.__name__}, not {type(value).__name__}"
                )
            kwargs: dict[str, Any] = {}
            for key, item in items:
                name = key if key in fields or not isinstance(key, str) else snake(key)
                if strict and name in refused and item is not None:
                    raise ValidationError(str(key), f"is not supported: {refused[name]}")
                if name not in fields:
                    if not strict:
                        continue  # the service may add fields; tolerate them
                    raise ValidationError(
                        str(key),
                        f"is not a field of {cls.__name__}{did_you_mean(str(key), fields)}",
                    )
                if name in kwargs:
                    raise ValidationError(str(key), f"is given twice (as {name!r} too)")
                if item is None:
                    continue
                try:
                    kwargs[name] = hooks[name](item)
                except ValidationError as exc:
                    raise exc.at(str(key)) from None
            return cls(**kwargs)

        return structure

    return factory


def _build_user() -> cattrs.Converter:
    import cattrs

    user = cattrs.Converter()
    user.register_structure_hook(bool, _strict_bool)
    user.register_structure_hook(int, _strict_int)
    user.register_structure_hook(float, _strict_float)
    user.register_structure_hook(str, _strict_str)
    user.register_structure_hook_func(_is_any, _passthrough)
    user.register_structure_hook(dt.datetime, _strict_datetime)
    for enum_cls in _wire_enums():  # by class: str's hook would catch these str subclasses
        user.register_structure_hook(enum_cls, _enum_factory(enum_cls))
    user.register_structure_hook_factory(_is_sequence, _sequence_factory)
    user.register_structure_hook_factory(_is_mapping, _mapping_factory)
    user.register_structure_hook_factory(attrs.has, _attrs_factory(strict=True))

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

# Keywords of the API's OpenAPI-style Schema; property *names* are user data and kept as is.
_SCHEMA_SUBSCHEMA_LISTS = {"any_of", "anyOf", "prefix_items", "prefixItems"}
_SCHEMA_SUBSCHEMAS = {"items", "additional_properties", "additionalProperties"}


def _schema_to_wire(schema: Any) -> Any:
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {name: _schema_to_wire(sub) for name, sub in value.items()}
        elif key in _SCHEMA_SUBSCHEMA_LISTS and isinstance(value, list):
            out[camel(key)] = [_schema_to_wire(sub) for sub in value]
        elif key in _SCHEMA_SUBSCHEMAS:
            out[camel(key)] = _schema_to_wire(value)
        else:
            out[camel(key)] = value
    return out


def _wire_datetime(value: Any, _: Any) -> dt.datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError("not an RFC 3339 timestamp")
    return parsed


def _unstructure_sequence_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any], Any]:
    (item_type, *_) = typing.get_args(tp) or (Any,)
    item = conv.get_unstructure_hook(item_type)  # dispatched once, not per item
    return lambda value: [item(v) for v in value]


def _build_wire() -> cattrs.Converter:
    import cattrs
    from cattrs.gen import make_dict_unstructure_fn, override

    wire = cattrs.Converter()
    wire.register_structure_hook_factory(attrs.has, _attrs_factory(strict=False))
    wire.register_structure_hook_factory(_is_sequence, _sequence_factory)
    wire.register_structure_hook_factory(_is_mapping, _mapping_factory)
    wire.register_structure_hook_func(_is_any, _passthrough)

    def renames(cls: Any) -> dict[str, Any]:
        return {f.name: override(rename=camel(f.name)) for f in attrs.fields(cls)}

    def camel_unstructure_factory(cls: Any, conv: cattrs.Converter) -> Callable[[Any], Any]:
        attrs.resolve_types(cls)
        return make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **renames(cls))

    wire.register_unstructure_hook_factory(attrs.has, camel_unstructure_factory)
    for enum_cls in _wire_enums():
        wire.register_unstructure_hook(enum_cls, _enum_value)
        wire.register_structure_hook(enum_cls, _enum_factory(enum_cls))
    wire.register_unstructure_hook(dt.datetime, format_time)
    wire.register_structure_hook(dt.datetime, _wire_datetime)
    # Sequences go out as JSON arrays, whatever the caller passed.
    wire.register_unstructure_hook_factory(_is_sequence, _unstructure_sequence_factory)

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
                out[key] = _schema_to_wire(out[key])
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
        if any(bad in model for bad in _MODEL_REFUSED):
            raise ValidationError(
                "live_connect_constraints.model",
                "must not contain '?', '&' or '..' (they would change the request)",
            )
    return result


#: ``(field, wire name)`` of the config fields, in the order they go out.
_FLAT_GENERATION_WIRE = tuple((name, camel(name)) for name in FLAT_GENERATION_FIELDS)
_SETUP_WIRE = tuple((name, camel(name)) for name in SETUP_FIELDS)


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
    unstructure = converters().wire.unstructure
    generation: dict[str, Any] = {}
    if config.generation_config is not None:
        generation.update(unstructure(config.generation_config))
    for name, wire_name in _FLAT_GENERATION_WIRE:
        value = getattr(config, name)
        if value is not None:
            generation[wire_name] = unstructure(value)
    if generation:
        setup["generationConfig"] = generation
    for name, wire_name in _SETUP_WIRE:
        value = getattr(config, name)
        if value is not None:
            setup[wire_name] = unstructure(value)
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
