"""How the emulator reads setups and field masks, and applies the locks.

A setup is read by proto3's JSON rules (`_proto_json.read`: lowerCamelCase or snake_case
names, integers as numbers or decimal strings, enums by name; unknown fields, wrong types and
out-of-range values refused), then structured with the package's own converter into
`LiveConnectConfig` and written back out with ``setup_to_wire``, which gives its canonical
camelCase form. So the emulator and the client cannot drift apart.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from gemini_tokens.testing._core import (
    GENERATION_FIELDS,
    SETUP_FIELDS,
    GenerationConfig,
    LiveConnectConfig,
    LiveConnectConstraints,
    ValidationError,
    camel,
    setup_to_wire,
    snake,
    user,
)
from gemini_tokens.testing._proto_json import (
    WireError,
    invalid_value,
    read,
    unknown_field,
)

__all__ = [
    "MASK_INVALID",
    "MASK_UNCOVERED",
    "check_covered",
    "effective_setup",
    "parse_mask",
    "parse_setup",
]

MASK_INVALID = "field_mask is invalid for BidiGenerateContentSetup"
MASK_UNCOVERED = "BidiGenerateContentSetup contains fields that are not specified in field_mask"

# GenerationConfig fields the service knows but our model does not: passed through verbatim.
_EXTRA_GENERATION = GENERATION_FIELDS - {f.name for f in attrs.fields(GenerationConfig)}
_SETUP_NAMES = frozenset({"model", "generation_config", *SETUP_FIELDS})


def _join(root: str, path: str) -> str:
    return f"{root}.{path}" if root and path else root or path


def _proto_path(path: str) -> str:
    """``generationConfig.speechConfig`` -> ``generation_config.speech_config``."""
    return ".".join(snake(part) for part in path.split(".") if part)


def _is_name(key: str, name: str) -> bool:
    """Whether ``key`` spells field ``name`` as proto JSON allows (camelCase or snake_case)."""
    return key in (name, camel(name))


def _from_validation(exc: ValidationError, root: str) -> WireError:
    parent, _, last = exc.field.rpartition(".")
    if exc.rule.startswith(("is not a field of", "is not supported")):
        return unknown_field(last, _join(root, _proto_path(parent)))
    return invalid_value(_join(root, _proto_path(exc.field)), exc.rule)


def _config_types() -> dict[str, Any]:
    return {f.name: f.type for f in attrs.fields(attrs.resolve_types(LiveConnectConfig))}


def _read_generation(value: Any, path: str, extras: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise invalid_value(path, "GenerationConfig", value, "expected an object")
    modelled: dict[str, Any] = {}
    for key, item in value.items():
        name = snake(str(key))
        if name in _EXTRA_GENERATION and _is_name(str(key), name):
            if camel(name) in extras:
                raise invalid_value(_join(path, name), "given twice (as camelCase and snake_case)")
            extras[camel(name)] = item
        else:
            modelled[str(key)] = item
    normalised: dict[str, Any] = read(modelled, GenerationConfig, path)
    return normalised


def parse_setup(raw: Any, root: str) -> dict[str, Any]:
    """Read a ``BidiGenerateContentSetup`` as proto3 JSON; returns its canonical camelCase form.

    Args:
        raw: The setup as received (lowerCamelCase or snake_case keys).
        root: Its proto path, for messages (``setup``, ``bidi_generate_content_setup``).

    Raises:
        WireError: an unknown field, a value of the wrong type or out of range.
    """
    if not isinstance(raw, Mapping):
        raise invalid_value(root, "BidiGenerateContentSetup", raw, "expected an object")
    types_ = _config_types()
    config: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    model: str | None = None
    seen: set[str] = set()
    for key, value in raw.items():
        name = snake(str(key))
        if name not in _SETUP_NAMES or not _is_name(str(key), name):
            raise unknown_field(str(key), root)
        if name in seen:
            raise invalid_value(_join(root, name), "given twice (as camelCase and snake_case)")
        seen.add(name)
        if value is None:
            continue
        path = _join(root, name)
        if name == "model":
            model = read(value, str, path)
        elif name == "generation_config":
            config[name] = _read_generation(value, path, extras)
        else:
            config[name] = read(value, types_[name], path, name)
    try:
        structured = user.structure(config, LiveConnectConfig) if config else None
    except ValidationError as exc:
        raise _from_validation(exc, root) from None
    canonical = setup_to_wire(LiveConnectConstraints(model=model, config=structured))
    if extras:
        canonical.setdefault("generationConfig", {}).update(extras)
    return canonical


# -- field masks ---------------------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_opaque(tp: Any) -> bool:
    """A free-form message we do not model (``avatarConfig``, ``googleSearch`` ...)."""
    if tp is Any:
        return True
    if typing.get_origin(tp) in (Mapping, dict):
        args = typing.get_args(tp)
        return len(args) == 2 and args[1] is Any
    return False


def _valid_path(path: str) -> bool:
    """Whether a FieldMask path names a field of BidiGenerateContentSetup.

    Paths are lowerCamelCase (see `parse_mask`); a repeated or map field cannot be traversed
    (``tools.0`` is invalid).
    """
    segments = path.split(".")
    if any(not seg or camel(snake(seg)) != seg for seg in segments):
        return False
    head, rest = segments[0], segments[1:]
    if head == "model":
        return not rest
    if head == "generationConfig":
        tp: Any = GenerationConfig
    elif snake(head) in SETUP_FIELDS:
        tp = attrs.fields_dict(attrs.resolve_types(LiveConnectConfig))[snake(head)].type
    else:
        return False
    for index, seg in enumerate(rest):
        tp = _unwrap(tp)
        if _is_opaque(tp):
            return True
        if tp is GenerationConfig and snake(seg) in _EXTRA_GENERATION:
            return index == len(rest) - 1
        if not attrs.has(tp):
            return False
        attrs.resolve_types(tp)
        fields = attrs.fields_dict(tp)
        if snake(seg) not in fields:
            return False
        tp = fields[snake(seg)].type
    return True


def parse_mask(raw: Any) -> tuple[str, ...] | None:
    """Validate a ``fieldMask`` (comma-separated paths); None when absent or empty.

    Raises:
        WireError: not a string, or a path that is not a field of the setup.
    """
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise invalid_value("field_mask", "a FieldMask is a string of comma-separated paths")
    # The service's JSON parser (as protobuf's C++ and Java converters do) reads each path
    # segment in lowerCamelCase or snake_case alike: "generationConfig.top_k", which the
    # reference SDK sends, is accepted and kept in its canonical form.
    paths = tuple(
        ".".join(camel(segment) for segment in part.strip().split("."))
        for part in raw.split(",")
        if part.strip()
    )
    if not paths:
        return None
    if not all(_valid_path(path) for path in paths):
        raise WireError(MASK_INVALID, "field_mask")
    return paths


def _leaves(setup: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in setup.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, path)
        else:
            yield path


def _covers(mask: Sequence[str], path: str) -> bool:
    return any(path == m or path.startswith(m + ".") for m in mask)


def check_covered(setup: Mapping[str, Any], mask: Sequence[str] | None) -> None:
    """A non-empty mask must cover every field the setup sets (the service refuses otherwise).

    Raises:
        WireError: a set field that no mask path covers.
    """
    if not mask:
        return
    for path in _leaves(setup):
        if not _covers(mask, path):
            raise WireError(MASK_UNCOVERED, "field_mask")


# -- locking -------------------------------------------------------------------------------


def _get(tree: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = tree
    for seg in path.split("."):
        if not isinstance(node, Mapping) or seg not in node:
            return False, None
        node = node[seg]
    return True, node


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = tree
    for seg in parents:
        child = node.get(seg)
        if not isinstance(child, dict):
            child = node[seg] = {}
        node = child
    node[last] = value


def _delete(tree: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node: Any = tree
    for seg in parents:
        node = node.get(seg) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def effective_setup(
    token_setup: Mapping[str, Any],
    mask: Sequence[str] | None,
    client_setup: Mapping[str, Any],
) -> dict[str, Any]:
    """The setup a session runs with, by the service's locking rules.

    No mask and no token setup: the client's setup. No mask with a token setup: the token's,
    whole (the client's is ignored). A mask: the masked paths from the token (removed when
    the token does not set them), everything else from the client. A client value for a
    locked field is silently replaced, not refused.
    """
    if not mask:
        return copy.deepcopy(dict(token_setup or client_setup))
    result = copy.deepcopy(dict(client_setup))
    for path in mask:
        found, value = _get(token_setup, path)
        if found:
            _set(result, path, copy.deepcopy(value))
        else:
            _delete(result, path)
    return result
