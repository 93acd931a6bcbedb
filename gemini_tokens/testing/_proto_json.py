"""A lenient wire reader: proto3 JSON, read as the service reads it, before structuring.

The service parses what it receives (an AuthToken body, a Live ``setup`` and the other
client messages) by proto3's JSON mapping, which is looser than the strict validation this
library applies to its users' input, and also stricter in places. `read` walks a JSON value
along the attrs models' field types and returns it normalised, ready for the core's
converter:

- a field name is accepted in lowerCamelCase or as its original snake_case name (and
  nothing else: not ``TopK``), and comes out snake_case; the same field given in both forms
  is refused;
- an integer field accepts a number with an integral value or a decimal string
  (``"25600"``, as ``@google/genai`` sends ``triggerTokens``), within int32 (int64 for the
  fields the service declares int64);
- a float field accepts a number or a numeric string;
- an enum accepts the value's proto NAME exactly (``"AUDIO"``; a lower-case ``"audio"`` is
  refused, as the service answers 400) or, for the enums whose numbering the emulator
  knows, its number;
- ``null`` means "not set";
- unknown fields, wrong types and out-of-range numbers are refused with the parser's message
  and the field's proto path (``setup.generation_config.temperature``).

Maps and free-form values (``labels``, a function's JSON schema) are user data: their keys
are kept as sent.
"""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from gemini_tokens.testing._core import camel, snake

__all__ = ["WireError", "invalid_value", "read", "read_int", "unknown_field"]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
#: Fields the service declares int64 (the rest of our integers are int32).
_INT64_FIELDS = frozenset({"trigger_tokens", "target_tokens"})
_DECIMAL = re.compile(r"-?\d+")
#: Enum numbers the emulator knows (proto numbering), by enum class name.
_ENUM_NUMBERS: dict[str, dict[int, str]] = {
    "Modality": {1: "TEXT", 2: "IMAGE", 3: "AUDIO"},
    "MediaResolution": {
        0: "MEDIA_RESOLUTION_UNSPECIFIED",
        1: "MEDIA_RESOLUTION_LOW",
        2: "MEDIA_RESOLUTION_MEDIUM",
        3: "MEDIA_RESOLUTION_HIGH",
    },
}


class WireError(Exception):
    """A message or body the service would refuse with INVALID_ARGUMENT.

    Attributes:
        message: The service-style message.
        field: The proto path of the offending field (snake_case), for ``BadRequest``.
    """

    def __init__(self, message: str, field: str = "") -> None:
        self.message = message
        self.field = field
        super().__init__(message)


def unknown_field(name: str, at: str) -> WireError:
    """The proto-JSON parser's message for a field that does not exist."""
    where = f" at '{at}'" if at else ""
    return WireError(
        f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.', at
    )


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def invalid_value(at: str, what: str, value: Any = None, why: str = "") -> WireError:
    """The proto-JSON parser's message for a value it cannot read.

    ``Invalid value at 'uses' (TYPE_INT32), 1.5: expected an integer``; with only ``what``,
    ``Invalid value at 'at': what``.
    """
    if why:
        return WireError(f"Invalid value at '{at}' ({what}), {_shown(value)}: {why}", at)
    return WireError(f"Invalid value at '{at}': {what}", at)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def read_int(value: Any, path: str, *, int64: bool = False) -> int:
    """An integer field: a number with an integral value or a decimal string, in range."""
    label = "TYPE_INT64" if int64 else "TYPE_INT32"
    number: Any = value
    if (isinstance(value, str) and _DECIMAL.fullmatch(value)) or (
        isinstance(value, float) and value.is_integer()
    ):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise invalid_value(path, label, value, f"expected an integer, got {_kind(value)}")
    low, high = _INT64 if int64 else _INT32
    if not low <= number <= high:
        raise invalid_value(path, label, value, f"out of range for {label[5:].lower()}")
    return number


def _read_float(value: Any, path: str) -> float | int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return float(value)  # "0.5", and proto3's "NaN" / "Infinity" (refused later)
        except ValueError:
            pass
    raise invalid_value(path, "TYPE_FLOAT", value, f"expected a number, got {_kind(value)}")


def _read_enum(value: Any, tp: type[enum.Enum], path: str) -> str:
    names = [str(member.value) for member in tp]
    if isinstance(value, str) and value in names:
        return value
    numbers = _ENUM_NUMBERS.get(tp.__name__, {})
    if isinstance(value, int) and not isinstance(value, bool) and value in numbers:
        return numbers[value]
    raise invalid_value(
        path, f"TYPE_ENUM {tp.__name__}", value, f"expected one of {', '.join(names)}"
    )


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _matches(value: Any, tp: Any) -> bool:
    """Whether a union member could read this JSON value (by its JSON kind)."""
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if isinstance(value, Mapping):
        return attrs.has(tp) or origin in (Mapping, dict)
    if isinstance(value, list):
        return origin in (Sequence, list, tuple)
    if isinstance(value, bool):
        return tp is bool
    if isinstance(value, (int, float)):
        return tp in (int, float) or (isinstance(tp, type) and issubclass(tp, enum.Enum))
    if isinstance(value, str):
        return tp in (str, int, float) or (isinstance(tp, type) and issubclass(tp, enum.Enum))
    return False


def _read_union(value: Any, tp: Any, path: str, name: str) -> Any:
    members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    candidates = [arg for arg in members if _matches(value, arg)]
    if isinstance(value, str) and str in candidates:
        return value
    first: WireError | None = None
    for member in candidates or members:
        try:
            return read(value, member, path, name)
        except WireError as exc:
            first = first or exc
    assert first is not None
    raise first


def _read_object(value: Any, cls: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise invalid_value(path, cls.__name__, value, f"expected an object, got {_kind(value)}")
    attrs.resolve_types(cls)
    fields = attrs.fields_dict(cls)
    out: dict[str, Any] = {}
    for key, item in value.items():
        key = str(key)
        name = snake(key)
        if name not in fields or key not in (name, camel(name)):
            raise unknown_field(key, path)
        if name in out:
            raise invalid_value(
                f"{path}.{name}" if path else name, "given twice (as camelCase and snake_case)"
            )
        if item is None:
            continue
        out[name] = read(item, fields[name].type, f"{path}.{name}" if path else name, name)
    return out


def read(value: Any, tp: Any, path: str, name: str = "") -> Any:
    """``value`` read as proto3 JSON for the model type ``tp``, normalised (see the module).

    Args:
        value: The JSON value as received.
        tp: The attrs model type (or field type) it should have.
        path: Its proto path, for messages (``setup.generation_config``).
        name: The field's name (decides int32 or int64).

    Raises:
        WireError: an unknown field, a wrong type or an out-of-range value.
    """
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(members) > 1:
            return _read_union(value, tp, path, name)
        tp = members[0]
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if attrs.has(tp):
        return _read_object(value, tp, path)
    if origin in (Sequence, list, tuple):
        (item_type, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise invalid_value(path, "repeated", value, f"expected a list, got {_kind(value)}")
        return [read(item, item_type, f"{path}[{index}]", name) for index, item in enumerate(value)]
    if origin in (Mapping, dict):
        _, value_type = typing.get_args(tp) or (str, Any)
        if not isinstance(value, Mapping):
            raise invalid_value(path, "map", value, f"expected an object, got {_kind(value)}")
        if value_type is Any:
            return dict(value)
        return {str(k): read(v, value_type, f"{path}[{k!r}]", name) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise invalid_value(
                path, "TYPE_BOOL", value, f"expected true or false, got {_kind(value)}"
            )
        return value
    if tp is int:
        return read_int(value, path, int64=name in _INT64_FIELDS)
    if tp is float:
        return _read_float(value, path)
    if tp is str:
        if not isinstance(value, str):
            raise invalid_value(
                path, "TYPE_STRING", value, f"expected a string, got {_kind(value)}"
            )
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _read_enum(value, tp, path)
    return value  # a type this reader does not know: left to the converter
