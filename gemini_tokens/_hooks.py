"""The cattrs hooks the two converters of `_converters` are built from.

Strict hooks for what users pass (scalars of exactly the right type, enums by name in any
case, aware datetimes, sequences, mappings, attrs classes that refuse unknown keys with a
"did you mean" and Vertex-only fields with the reason), and the wire's own (enum values,
timestamps, OpenAPI schemas whose property names are user data). Every failure is a
`ValidationError` whose path the caller extends (``exc.at(...)``) on the way out.
"""

from __future__ import annotations

import datetime as dt
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
    SafetySetting,
    SessionResumptionConfig,
    SpeechConfig,
)
from gemini_tokens._naming import camel, did_you_mean, snake
from gemini_tokens._structures import FunctionCall, GoogleMaps, GoogleSearch, Tool
from gemini_tokens._times import parse_time

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "REFUSED",
    "attrs_factory",
    "enum_factory",
    "enum_value",
    "is_any",
    "is_mapping",
    "is_sequence",
    "mapping_factory",
    "passthrough",
    "schema_to_wire",
    "sequence_factory",
    "strict_bool",
    "strict_datetime",
    "strict_float",
    "strict_int",
    "strict_str",
    "unstructure_sequence_factory",
    "wire_datetime",
    "wire_enums",
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

# -- hooks of the user converter (strict) ------------------------------------------------------


def strict_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("", f"must be a boolean, not {type(value).__name__}")
    return value


def strict_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("", f"must be an integer, not {type(value).__name__}")
    return value


_INFINITIES = (float("inf"), float("-inf"))


def strict_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError("", f"must be a number, not {type(value).__name__}")
    if value != value or value in _INFINITIES:
        raise ValidationError("", "must be a finite number")
    return value


def strict_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("", f"must be a string, not {type(value).__name__}")
    return value


def wire_enums() -> list[type[WireEnum]]:
    return WireEnum.__subclasses__()


def enum_value(member: WireEnum) -> str:
    return str(member.value)


def enum_factory(enum_cls: Any) -> Callable[[Any, Any], Any]:
    """A `WireEnum`: a member, or its name in any case (the common prefix may be left out)."""
    members = enum_cls._value2member_map_
    prefix = enum_cls.short_prefix()
    allowed = ", ".join(members)

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, str):  # a member is a str too, equal to its name
            member = members.get(value)
            if member is None:
                key = value.strip().upper()
                member = members.get(key) or (members.get(prefix + key) if prefix else None)
            if member is not None:
                return member
        raise ValidationError("", f"must be one of {allowed}; got {value!r}")

    return structure


#: A date, a time and an offset: what an RFC 3339 timestamp must end with.
_RFC3339_END = re.compile(r"\d[Tt ]\d\d:\d\d(:\d\d(\.\d+)?)?([Zz]|[+-]\d\d:\d\d)$")


def strict_datetime(value: Any, _: Any) -> dt.datetime:
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


def is_any(tp: Any) -> bool:
    # A predicate, not register_structure_hook(Any, ...): singledispatch on 3.10 takes classes only.
    return tp is typing.Any


def passthrough(value: Any, _: Any) -> Any:
    return value


def is_sequence(tp: Any) -> bool:
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


def sequence_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
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


def is_mapping(tp: Any) -> bool:
    return typing.get_origin(tp) in (Mapping, dict)


def mapping_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
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


def attrs_factory(strict: bool) -> Callable[[Any, cattrs.Converter], Any]:
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


# Keywords of the API's OpenAPI-style Schema; property *names* are user data and kept as is.
_SCHEMA_SUBSCHEMA_LISTS = {"any_of", "anyOf", "prefix_items", "prefixItems"}
_SCHEMA_SUBSCHEMAS = {"items", "additional_properties", "additionalProperties"}


def schema_to_wire(schema: Any) -> Any:
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {name: schema_to_wire(sub) for name, sub in value.items()}
        elif key in _SCHEMA_SUBSCHEMA_LISTS and isinstance(value, list):
            out[camel(key)] = [schema_to_wire(sub) for sub in value]
        elif key in _SCHEMA_SUBSCHEMAS:
            out[camel(key)] = schema_to_wire(value)
        else:
            out[camel(key)] = value
    return out


def wire_datetime(value: Any, _: Any) -> dt.datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError("not an RFC 3339 timestamp")
    return parsed


def unstructure_sequence_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any], Any]:
    (item_type, *_) = typing.get_args(tp) or (Any,)
    item = conv.get_unstructure_hook(item_type)  # dispatched once, not per item
    return lambda value: [item(v) for v in value]
