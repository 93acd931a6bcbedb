"""The one place that knows the wire format.

Two cattrs converters live here (built on first use: importing cattrs is a good part of
``import gemini_tokens``, and a process that never validates constraints never needs it):

- ``user``: structures what a user passes (dicts with snake_case keys, or our attrs classes)
  into validated models. It is strict: unknown keys, wrong types and bad enum values raise
  `ValidationError` with the dotted path of the offending value and a "did you mean".
- ``wire``: unstructures models into the service's JSON (camelCase, ``None`` omitted) and
  structures the service's JSON back, tolerating fields it does not know.

On top of them sit the functions the client uses: the request body, the ``fieldMask``, the
parsed token. User data (schema property names, label keys, enum values, texts) is never renamed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import marshal
import re
import threading
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import attrs

from gemini_tokens import _models
from gemini_tokens._errors import ValidationError
from gemini_tokens._models import (
    Content,
    EphemeralToken,
    FunctionDeclaration,
    GenerationConfig,
    LiveConnectConfig,
    LiveConnectConstraints,
    MediaResolution,
    Modality,
    Part,
    PrebuiltVoiceConfig,
    SpeechConfig,
    VoiceConfig,
)

if TYPE_CHECKING:
    import cattrs

    from gemini_tokens._request import TokenRequest

    #: The strict converter for what users pass (see the module's doc).
    user: cattrs.Converter
    #: The converter for the service's JSON (see the module's doc).
    wire: cattrs.Converter

__all__ = [
    "GENERATION_FIELDS",
    "SETUP_FIELDS",
    "body_bytes",
    "body_for",
    "camel",
    "field_mask",
    "format_time",
    "live_url",
    "parse_time",
    "snake",
    "structure_constraints",
    "token_from_response",
    "token_to_dict",
    "user",
    "wire",
]

# -- naming ------------------------------------------------------------------------------------

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])([A-Z])")


@functools.lru_cache(maxsize=512)
def camel(name: str) -> str:
    """``top_k`` -> ``topK``; a name already in camelCase is returned as is."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@functools.lru_cache(maxsize=512)
def snake(name: str) -> str:
    """``topK`` -> ``top_k``; a name already in snake_case is returned as is."""
    return _CAMEL_BOUNDARY.sub(r"_\1", name).lower()


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    import difflib  # only on the error path

    choices = list(choices)
    match = difflib.get_close_matches(snake(name), choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


# Config fields that live under generationConfig on the wire (flattened on LiveConnectConfig).
_FLAT_GENERATION_FIELDS = (
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
#: Config fields that go directly under bidiGenerateContentSetup.
SETUP_FIELDS = tuple(
    f.name
    for f in attrs.fields(LiveConnectConfig)
    if f.name not in _FLAT_GENERATION_FIELDS and f.name != "generation_config"
)
_VERTEX_ONLY = {"explicit_vad_signal": "it exists only on Vertex AI, which has no ephemeral tokens"}

# -- the user converter (strict) ---------------------------------------------------------------


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


def _enum_hook(enum_cls: Any, short_prefix: str = "") -> Callable[[Any, Any], Any]:
    names = [m.value for m in enum_cls]

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, enum_cls):
            return value
        if isinstance(value, str):
            key = value.upper()
            for candidate in (key, short_prefix + key):
                if candidate in names:
                    return enum_cls(candidate)
        raise ValidationError("", f"must be one of {', '.join(names)}; got {value!r}")

    return structure


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
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
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
        special = _VERTEX_ONLY if cls is LiveConnectConfig else {}

        def structure(value: Any, _: Any) -> Any:
            if isinstance(value, cls):
                items: Iterable[tuple[str, Any]] = ((name, getattr(value, name)) for name in fields)
            elif isinstance(value, Mapping):
                items = value.items()
            else:
                raise ValidationError(
                    "", f"must be a mapping or {cls.__name__}, not {type(value).__name__}"
                )
            kwargs: dict[str, Any] = {}
            for key, item in items:
                name = key if key in fields or not isinstance(key, str) else snake(key)
                if name not in fields:
                    if not strict:
                        continue  # the service may add fields; tolerate them
                    if name in special:
                        raise ValidationError(str(key), f"is not supported: {special[name]}")
                    raise ValidationError(
                        str(key),
                        f"is not a field of {cls.__name__}{_did_you_mean(str(key), fields)}",
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
    user.register_structure_hook(Modality, _enum_hook(Modality))
    user.register_structure_hook(MediaResolution, _enum_hook(MediaResolution, "MEDIA_RESOLUTION_"))
    user.register_structure_hook_factory(_is_sequence, _sequence_factory)
    user.register_structure_hook_factory(_is_mapping, _mapping_factory)
    user.register_structure_hook_factory(attrs.has, _attrs_factory(strict=True))

    attrs_speech = user.get_structure_hook(SpeechConfig)
    attrs_content = user.get_structure_hook(Content)

    def speech_hook(value: Any, tp: Any) -> SpeechConfig:
        if isinstance(value, str):  # shorthand: a voice name
            voice = PrebuiltVoiceConfig(voice_name=value)
            return SpeechConfig(voice_config=VoiceConfig(prebuilt_voice_config=voice))
        result: SpeechConfig = attrs_speech(value, tp)
        return result

    def content_hook(value: Any, tp: Any) -> Content:
        if isinstance(value, str):  # shorthand: one text part from the user
            return Content(parts=(Part(text=value),), role="user")
        result: Content = attrs_content(value, tp)
        return result

    user.register_structure_hook(SpeechConfig, speech_hook)
    user.register_structure_hook(Content, content_hook)
    return user


# -- memos -------------------------------------------------------------------------------------
# A token server passes the same constraints on every call (and the service echoes the same
# setup back), so converting them is memoised. Keys are exact images of the input, types
# included (``1``, ``1.0`` and ``True`` differ), and only results that are immutable all the
# way down (frozen models, tuples, scalars) are kept: nobody can change a memoised value, so
# a hit is indistinguishable from converting again. Anything else is converted every time.

_MEMO_SIZE = 256
_MODEL_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in attrs.fields(cls))
    for cls in vars(_models).values()
    if isinstance(cls, type) and attrs.has(cls) and cls.__module__ == _models.__name__
}
_SCALARS = frozenset({int, bool, type(None), Modality, MediaResolution})


class _Unfreezable(Exception):
    """The value holds something whose exact image is not cheap or not safe to take."""


def _memo_key(value: Any) -> Any:
    """An exact, hashable image of ``value`` for a memo; None when there is none.

    ``marshal`` takes it in C for plain data (exact dicts, lists, tuples, str, int, float,
    bool, None: it refuses subclasses, and ``1``, ``1.0``, ``True`` and ``-0.0`` all differ);
    `_freeze` takes over when the value holds our enums or models.
    """
    try:
        # Version 2: no back-references, so the bytes never depend on reference counts.
        return marshal.dumps(value, 2)
    except ValueError:  # unmarshallable (an enum member, a model, a subclass) or too deep
        pass
    try:
        return _freeze(value)
    except (_Unfreezable, RecursionError):
        return None


def _freeze(value: Any) -> Any:
    """A hashable image of plain data (dicts, lists, tuples, scalars, our models)."""
    tp = type(value)
    if tp is str:
        return value
    # Keys are not checked: a non-string key either fails validation or lands in a mutable
    # result, and neither is ever memoised.
    if tp is dict:
        return (dict, *[(k, v if type(v) is str else _freeze(v)) for k, v in value.items()])
    if tp is list or tp is tuple:
        return (tp, *[v if type(v) is str else _freeze(v) for v in value])
    if tp is float:
        return (float, value.hex())  # tells -0.0 from 0.0; NaN never hits (nan != nan)
    if tp in _SCALARS:
        return (tp, value)
    names = _MODEL_FIELDS.get(tp)
    if names is None:
        raise _Unfreezable
    return (tp, *[_freeze(getattr(value, name)) for name in names])


def _immutable(value: Any) -> bool:
    """Whether ``value`` is immutable all the way down (so it may be shared)."""
    tp = type(value)
    if tp is str or tp is float or tp in _SCALARS:
        return True
    if tp is tuple:
        return all(_immutable(item) for item in value)
    names = _MODEL_FIELDS.get(tp)
    return names is not None and all(_immutable(getattr(value, name)) for name in names)


class _Memo:
    """A bounded memo of immutable results; objects it returns are registered as shared."""

    def __init__(self) -> None:
        self._results: dict[Any, Any] = {}
        #: id -> object for every object handed out from here (kept alive by _results).
        self.shared: dict[int, Any] = {}

    def get(self, key: Any) -> Any:
        return self._results.get(key)

    def put(self, key: Any, result: Any) -> None:
        if not _immutable(result):
            return
        if len(self._results) >= _MEMO_SIZE:
            self._results.clear()  # simple and bounded; a server uses a handful of keys
            self.shared.clear()
            _WIRE_FORMS.clear()
        self._results[key] = result
        self.shared[id(result)] = result


_CONSTRAINTS_MEMO = _Memo()
_WIRE_MEMO = _Memo()


def structure_constraints(value: Any) -> LiveConnectConstraints:
    """Validate ``live_connect_constraints`` (a dict or `LiveConnectConstraints`).

    Raises:
        ValidationError: naming the offending path under ``live_connect_constraints``.
    """
    key = _memo_key(value)
    if key is not None:
        hit: LiveConnectConstraints | None = _CONSTRAINTS_MEMO.get(key)
        if hit is not None:
            return hit
    try:
        result: LiveConnectConstraints = _converters()[0].structure(value, LiveConnectConstraints)
    except ValidationError as exc:
        raise exc.at("live_connect_constraints") from None
    if result.model is not None and not result.model.removeprefix("models/").strip():
        raise ValidationError("live_connect_constraints.model", "must not be empty")
    if key is not None:
        _CONSTRAINTS_MEMO.put(key, result)
    return result


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
    wire.register_unstructure_hook(Modality, lambda value: value.value)
    wire.register_unstructure_hook(MediaResolution, lambda value: value.value)
    # Sequences go out as JSON arrays, whatever the caller passed.
    wire.register_unstructure_hook_factory(
        _is_sequence, lambda tp, conv: lambda value: [conv.unstructure(v) for v in value]
    )

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

_CONVERTERS: tuple[cattrs.Converter, cattrs.Converter] | None = None
_BUILD_LOCK = threading.Lock()


def _converters() -> tuple[cattrs.Converter, cattrs.Converter]:
    """``(user, wire)``, built (and cattrs imported) on the first call."""
    global _CONVERTERS
    if _CONVERTERS is None:
        with _BUILD_LOCK:
            if _CONVERTERS is None:
                built = (_build_user(), _build_wire())
                globals().update(user=built[0], wire=built[1])
                _CONVERTERS = built
    return _CONVERTERS


def __getattr__(name: str) -> Any:
    # ``user`` and ``wire`` are module attributes built on first access (PEP 562).
    if name == "user":
        return _converters()[0]
    if name == "wire":
        return _converters()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- times -------------------------------------------------------------------------------------


def format_time(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: ``2031-05-06T07:08:09Z`` (microseconds when non-zero)."""
    if value.tzinfo is dt.timezone.utc:  # the usual case: skip the conversion
        return value.isoformat()[:-6] + "Z"  # "+00:00" -> "Z"
    text = value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat()
    return text + "Z"


_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: Any) -> dt.datetime | None:
    """Parse an RFC 3339 timestamp from the wire (``Z``, offsets, up to nanoseconds)."""
    if not isinstance(value, str):
        return None
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python before 3.11 accepts at most 6 fractional digits; the service may send 9.
    if "." in text:
        text = _LONG_FRACTION.sub(r"\1", text)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    try:
        return parsed.astimezone(dt.timezone.utc)
    except OverflowError:  # "0001-01-01T00:00:00+01:00" is before datetime.min in UTC
        return None


# -- the request body --------------------------------------------------------------------------


def setup_to_wire(constraints: LiveConnectConstraints) -> dict[str, Any]:
    """``LiveConnectConstraints`` -> the ``bidiGenerateContentSetup`` object."""
    setup: dict[str, Any] = {}
    if constraints.model is not None:
        model = constraints.model
        setup["model"] = model if model.startswith("models/") else f"models/{model}"
    config = constraints.config
    if config is None:
        return setup
    unstructure = _converters()[1].unstructure
    generation: dict[str, Any] = {}
    if config.generation_config is not None:
        generation.update(unstructure(config.generation_config))
    for name in _FLAT_GENERATION_FIELDS:
        value = getattr(config, name)
        if value is not None:
            generation[camel(name)] = unstructure(value)
    if generation:
        setup["generationConfig"] = generation
    for name in SETUP_FIELDS:
        value = getattr(config, name)
        if value is not None:
            setup[camel(name)] = unstructure(value)
    return setup


class _WireForm:
    """A memoised `LiveConnectConstraints` on the wire, worked out once and shared (read only).

    Attributes:
        constraints: The constraints (from a memo, so immutable and kept alive here).
        setup: ``setup_to_wire(constraints)``.
        masks: ``field_mask(setup, lock)`` by ``lock_additional_fields``.
        tails: The serialised end of the body (setup and mask), by ``lock_additional_fields``.
        echo: ``setup_from_wire(setup)``: what the token holds when the service echoes
            the setup back unchanged; None until first needed.
    """

    __slots__ = ("constraints", "echo", "masks", "setup", "tails")

    def __init__(self, constraints: LiveConnectConstraints) -> None:
        self.constraints = constraints
        self.setup = setup_to_wire(constraints)
        self.masks: dict[tuple[str, ...] | None, str | None] = {}
        self.tails: dict[tuple[str, ...] | None, str] = {}
        self.echo: LiveConnectConstraints | None = None

    def tail(self, lock: tuple[str, ...] | None) -> str:
        """The end of the JSON body: ``,"bidiGenerateContentSetup":{...},"fieldMask":"..."}``."""
        try:
            return self.tails[lock]
        except KeyError:
            parts: dict[str, Any] = {}
            if self.setup:
                parts["bidiGenerateContentSetup"] = self.setup
            mask = self.mask(lock)
            if mask:
                parts["fieldMask"] = mask
            tail = "," + _encode(parts)[1:] if parts else "}"
            if len(self.tails) < _MEMO_SIZE:
                self.tails[lock] = tail
            return tail

    def mask(self, lock: tuple[str, ...] | None) -> str | None:
        try:
            return self.masks[lock]
        except KeyError:
            mask = field_mask(self.setup, lock)
            if len(self.masks) < _MEMO_SIZE:
                self.masks[lock] = mask
            return mask


#: id(constraints) -> its _WireForm, for constraints handed out by a memo.
_WIRE_FORMS: dict[int, _WireForm] = {}


def _wire_form(constraints: LiveConnectConstraints) -> _WireForm | None:
    """The shared wire form of memoised constraints; None for any other constraints."""
    form = _WIRE_FORMS.get(id(constraints))
    if form is not None and form.constraints is constraints:
        return form
    # Only objects a memo handed out are known immutable (and kept alive, so ids are unique).
    if (
        _CONSTRAINTS_MEMO.shared.get(id(constraints)) is constraints
        or _WIRE_MEMO.shared.get(id(constraints)) is constraints
    ):
        form = _WIRE_FORMS[id(constraints)] = _WireForm(constraints)
        return form
    return None


def lock_path(name: str) -> str:
    """The ``fieldMask`` path of a config field name given in ``lock_additional_fields``."""
    field = snake(name)
    return f"generationConfig.{camel(field)}" if field in GENERATION_FIELDS else camel(field)


#: Names accepted in ``lock_additional_fields``.
LOCKABLE_FIELDS = frozenset({"model", *GENERATION_FIELDS, *SETUP_FIELDS})


def field_mask(setup: Mapping[str, Any], lock: Sequence[str] | None) -> str | None:
    """The ``fieldMask`` for a setup and ``lock_additional_fields`` (wire.md's three modes).

    None: no mask (the whole setup locked). Otherwise the set fields, two levels deep, then the
    named fields' paths. Lists are never expanded into ``key.0`` paths.
    """
    if lock is None:
        return None
    paths: list[str] = []
    for key, value in setup.items():
        if isinstance(value, Mapping) and value:
            paths.extend(f"{key}.{sub}" for sub in value)
        else:
            paths.append(key)
    for name in lock:
        path = lock_path(name)
        if path not in paths:
            paths.append(path)
    return ",".join(paths) or None


def body_for(request: TokenRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v1alpha/auth_tokens`` for a validated request.

    The body is for serialising: its ``bidiGenerateContentSetup`` may be shared with a memo,
    so do not modify it in place.
    """
    expire_text, new_session_text = request.wire_times or (
        format_time(request.expire_time),
        format_time(request.new_session_expire_time),
    )
    body: dict[str, Any] = {
        "uses": request.uses,
        "expireTime": expire_text,
        "newSessionExpireTime": new_session_text,
    }
    constraints = request.constraints
    form = request.wire_form
    if form is not None:
        setup = form.setup
        mask = form.mask(request.lock_additional_fields)
    else:
        setup = setup_to_wire(constraints) if constraints is not None else {}
        mask = field_mask(setup, request.lock_additional_fields)
    if setup:
        body["bidiGenerateContentSetup"] = setup
    if mask:
        body["fieldMask"] = mask
    return body


#: ``json.dumps(value, separators=(",", ":"), allow_nan=False)``, without building an
#: encoder on every call.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def body_bytes(request: TokenRequest) -> bytes:
    """``json.dumps(body_for(request), separators=(",", ":"), allow_nan=False).encode()``.

    Byte for byte, raising what that raises (TypeError, ValueError) for a free-form value
    JSON cannot carry. Faster for the usual request (memoised constraints, UTC times): the
    setup and mask are serialised once, only the uses and times are written per call.
    """
    form = request.wire_form
    times = request.wire_times
    if form is None or times is None or type(request.uses) is not int:
        return _encode(body_for(request)).encode()
    # format_time's text is digits and "-T:.Z": nothing in it needs escaping.
    return (
        f'{{"uses":{request.uses},"expireTime":"{times[0]}",'
        f'"newSessionExpireTime":"{times[1]}"{form.tail(request.lock_additional_fields)}'
    ).encode()


# -- the response ------------------------------------------------------------------------------

_UNFLATTEN = {camel(name): name for name in _FLAT_GENERATION_FIELDS}


def setup_from_wire(setup: Mapping[str, Any]) -> LiveConnectConstraints:
    """A ``bidiGenerateContentSetup`` from the service -> `LiveConnectConstraints`."""
    key = _memo_key(setup)
    if key is None:
        return _setup_from_wire(setup)
    hit: LiveConnectConstraints | None = _WIRE_MEMO.get(key)
    if hit is None:
        hit = _setup_from_wire(setup)
        _WIRE_MEMO.put(key, hit)
    return hit


def _setup_from_wire(setup: Mapping[str, Any]) -> LiveConnectConstraints:
    config: dict[str, Any] = {}
    for key, value in setup.items():
        if key == "generationConfig" and isinstance(value, Mapping):
            rest = {}
            for gen_key, gen_value in value.items():
                flat = _UNFLATTEN.get(gen_key) or _UNFLATTEN.get(camel(gen_key))
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
        config=_converters()[1].structure(config, LiveConnectConfig) if config else None,
    )


#: fieldMask string -> its paths (the service answers the same mask for the same request).
_MASK_PATHS: dict[str, tuple[str, ...]] = {}


def token_from_response(
    payload: Any, request: TokenRequest, *, base_url: str, api_version: str
) -> EphemeralToken | None:
    """Parse the service's AuthToken; None when it is not a token (no string ``name``)."""
    # ``type(...) is dict`` first: json.loads gives dicts, and an ABC check costs more.
    if type(payload) is not dict and not isinstance(payload, Mapping):
        return None
    name = payload.get("name")
    if not isinstance(name, str) or not name:
        return None
    uses = payload.get("uses")
    constraints = request.constraints
    form = request.wire_form
    setup = payload.get("bidiGenerateContentSetup")
    if setup is not None and (type(setup) is dict or isinstance(setup, Mapping)):
        # An odd echo must not lose a minted token: keep what we asked for then.
        # (try/except, not contextlib.suppress: this runs once per token minted.)
        try:
            if form is not None and setup == form.setup:
                # The usual echo: what we sent, so parse what we sent (once). Equal as JSON
                # values, and the wire converter maps equal JSON values to equal fields.
                if form.echo is None:
                    form.echo = setup_from_wire(form.setup)
                constraints = form.echo
            else:
                constraints = setup_from_wire(setup)
        except (ValidationError, TypeError, ValueError, OverflowError, RecursionError):
            pass
    mask = payload.get("fieldMask")
    locked: tuple[str, ...] | None
    if isinstance(mask, str):
        locked = _MASK_PATHS.get(mask)
        if locked is None:
            locked = tuple(p.strip() for p in mask.split(",") if p.strip())
            if len(_MASK_PATHS) >= _MEMO_SIZE:
                _MASK_PATHS.clear()
            _MASK_PATHS[mask] = locked
    else:
        request_mask = (
            form.mask(request.lock_additional_fields)
            if form is not None
            else field_mask(
                setup_to_wire(request.constraints) if request.constraints else {},
                request.lock_additional_fields,
            )
        )
        locked = tuple(request_mask.split(",")) if request_mask else None
    expire_text = payload.get("expireTime")
    new_session_text = payload.get("newSessionExpireTime")
    sent = request.wire_times
    # The service usually answers the very times we sent: no need to parse them back.
    if sent is not None and expire_text == sent[0]:
        expire_time = request.expire_time
    else:
        expire_time = parse_time(expire_text) or request.expire_time
    if sent is not None and new_session_text == sent[1]:
        new_session_expire_time = request.new_session_expire_time
    else:
        new_session_expire_time = parse_time(new_session_text) or request.new_session_expire_time
    return EphemeralToken(
        name=name,
        expire_time=expire_time,
        new_session_expire_time=new_session_expire_time,
        uses=uses if isinstance(uses, int) and not isinstance(uses, bool) else request.uses,
        live_connect_constraints=constraints,
        locked_fields=locked,
        base_url=base_url,
        api_version=api_version,
    )


def token_to_dict(token: EphemeralToken) -> dict[str, Any]:
    """See `EphemeralToken.to_dict`."""
    out: dict[str, Any] = {"name": token.name}
    if token.expire_time is not None:
        out["expireTime"] = format_time(token.expire_time)
    if token.new_session_expire_time is not None:
        out["newSessionExpireTime"] = format_time(token.new_session_expire_time)
    if token.uses is not None:
        out["uses"] = token.uses
    if token.live_connect_constraints is not None:
        setup = setup_to_wire(token.live_connect_constraints)
        if setup:
            out["bidiGenerateContentSetup"] = setup
    if token.locked_fields is not None:
        out["fieldMask"] = ",".join(token.locked_fields)
    return out


def live_url(base_url: str, api_version: str, token_name: str) -> str:
    """The ``BidiGenerateContentConstrained`` WebSocket URL for a token."""
    parts = urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    path = (
        f"{parts.path.rstrip('/')}/ws/google.ai.generativelanguage.{api_version}"
        ".GenerativeService.BidiGenerateContentConstrained"
    )
    query = "access_token=" + quote(token_name, safe="")
    return urlunsplit((scheme, parts.netloc, path, query, ""))
