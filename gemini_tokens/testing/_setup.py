"""How the emulator reads setups, field masks and Live messages, and applies the locks.

Everything is parsed with the package's own models and converters (`gemini_tokens._converters`),
so the emulator and the client cannot drift apart: a setup is structured strictly into
`LiveConnectConfig` (unknown fields and wrong types are refused, in camelCase or snake_case
alike, as the service's proto-JSON parser does) and written back out with ``setup_to_wire``,
which gives its canonical camelCase form.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from gemini_tokens._converters import setup_to_wire, user, wire
from gemini_tokens._errors import ValidationError
from gemini_tokens._models import GenerationConfig, LiveConnectConfig, LiveConnectConstraints
from gemini_tokens._naming import GENERATION_FIELDS, SETUP_FIELDS, camel, snake
from gemini_tokens._structures import Content

__all__ = [
    "CLIENT_MESSAGES",
    "MASK_INVALID",
    "MASK_UNCOVERED",
    "WireError",
    "check_covered",
    "effective_setup",
    "normalise_message",
    "parse_mask",
    "parse_setup",
    "turn_text",
]

MASK_INVALID = "field_mask is invalid for BidiGenerateContentSetup"
MASK_UNCOVERED = "BidiGenerateContentSetup contains fields that are not specified in field_mask"

#: The client messages of BidiGenerateContent (a oneof), in canonical camelCase.
CLIENT_MESSAGES = ("setup", "clientContent", "realtimeInput", "toolResponse")

# GenerationConfig fields the service knows but our model does not: passed through verbatim.
_EXTRA_GENERATION = GENERATION_FIELDS - {f.name for f in attrs.fields(GenerationConfig)}
_SETUP_NAMES = frozenset({"model", "generation_config", *SETUP_FIELDS})


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


def _join(root: str, path: str) -> str:
    return f"{root}.{path}" if root and path else root or path


def _proto_path(path: str) -> str:
    """``generationConfig.speechConfig`` -> ``generation_config.speech_config``."""
    return ".".join(snake(part) for part in path.split(".") if part)


def unknown_field(name: str, at: str) -> WireError:
    """The proto-JSON parser's message for a field that does not exist."""
    where = f" at '{at}'" if at else ""
    return WireError(
        f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.', at
    )


def invalid_value(at: str, what: str) -> WireError:
    """The proto-JSON parser's message for a value of the wrong type."""
    return WireError(f"Invalid value at '{at}': {what}", at)


def _from_validation(exc: ValidationError, root: str) -> WireError:
    parent, _, last = exc.field.rpartition(".")
    if exc.rule.startswith(("is not a field of", "is not supported")):
        return unknown_field(last, _join(root, _proto_path(parent)))
    return invalid_value(_join(root, _proto_path(exc.field)), exc.rule)


def parse_setup(raw: Any, root: str) -> dict[str, Any]:
    """Validate a ``BidiGenerateContentSetup`` and return its canonical camelCase form.

    Args:
        raw: The setup as received (lowerCamelCase or snake_case keys).
        root: Its proto path, for messages (``setup``, ``bidi_generate_content_setup``).

    Raises:
        WireError: an unknown field or a value of the wrong type.
    """
    if not isinstance(raw, Mapping):
        raise invalid_value(root, f"expected an object, got {type(raw).__name__}")
    config: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    model: str | None = None
    seen: set[str] = set()
    for key, value in raw.items():
        name = snake(str(key))
        if name not in _SETUP_NAMES:
            raise unknown_field(str(key), root)
        if name in seen:
            raise invalid_value(_join(root, name), "given twice (in camelCase and snake_case)")
        seen.add(name)
        if value is None:
            continue
        if name == "model":
            if not isinstance(value, str):
                raise invalid_value(_join(root, "model"), "expected a string")
            model = value
        elif name == "generation_config":
            if not isinstance(value, Mapping):
                raise invalid_value(_join(root, name), "expected an object")
            generation: dict[str, Any] = {}
            for gen_key, gen_value in value.items():
                gen_name = snake(str(gen_key))
                if gen_name in _EXTRA_GENERATION:
                    extras[camel(gen_name)] = gen_value
                else:
                    generation[gen_name] = gen_value
            config[name] = generation
        else:
            config[name] = value
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


# -- Live messages -------------------------------------------------------------------------


def normalise_message(raw: Any) -> tuple[str, Any]:
    """A client message -> ``(kind, payload)``, field names in camelCase.

    The service parses messages as proto JSON, so ``client_content`` and ``clientContent`` are
    the same field. Only the names of the message's own fields are renamed; user data
    (function responses, inline data) is kept as sent.

    Raises:
        WireError: not an object, an unknown field, or not exactly one message kind.
    """
    if not isinstance(raw, Mapping):
        raise WireError("Invalid JSON payload received. Expected an object.")
    kinds: list[tuple[str, Any]] = []
    for key, value in raw.items():
        kind = camel(str(key))
        if kind not in CLIENT_MESSAGES:
            raise unknown_field(str(key), "")
        if kind != "setup" and isinstance(value, Mapping):
            value = {camel(str(k)): v for k, v in value.items()}
        kinds.append((kind, value))
    if len(kinds) != 1:
        raise WireError(
            "Invalid argument: a message must set exactly one of "
            "setup, clientContent, realtimeInput, toolResponse."
        )
    return kinds[0]


def turn_text(turns: Any) -> str:
    """The text of the user's parts in ``clientContent.turns``."""
    if isinstance(turns, Mapping):
        turns = [turns]
    try:
        contents: list[Content] = wire.structure(turns, list[Content])
    except (ValidationError, TypeError, ValueError):
        raise invalid_value("client_content.turns", "expected a list of Content") from None
    texts = [
        part.text
        for content in contents
        if content.role in (None, "user")
        for part in content.parts or ()
        if part.text
    ]
    return " ".join(texts)
