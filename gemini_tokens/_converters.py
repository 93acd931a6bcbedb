"""The one place that knows the wire format.

Two cattrs converters live here:

- ``user``: structures what a user passes (dicts with snake_case keys, or our attrs classes)
  into validated models. It is strict: unknown keys, wrong types and bad enum values raise
  `ValidationError` with the dotted path of the offending value and a "did you mean".
- ``wire``: unstructures models into the service's JSON (camelCase, ``None`` omitted) and
  structures the service's JSON back, tolerating fields it does not know.

On top of them sit the functions the client uses: the request body, the ``fieldMask``, the
parsed token. User data (schema property names, label keys, enum values, texts) is never renamed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import functools
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

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
    from gemini_tokens._request import TokenRequest

__all__ = [
    "GENERATION_FIELDS",
    "SETUP_FIELDS",
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

user = cattrs.Converter()


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


user.register_structure_hook(bool, _strict_bool)
user.register_structure_hook(int, _strict_int)
user.register_structure_hook(float, _strict_float)
user.register_structure_hook(str, _strict_str)
user.register_structure_hook(typing.Any, lambda value, _: value)


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


user.register_structure_hook(Modality, _enum_hook(Modality))
user.register_structure_hook(MediaResolution, _enum_hook(MediaResolution, "MEDIA_RESOLUTION_"))


def _is_sequence(tp: Any) -> bool:
    return typing.get_origin(tp) in (Sequence, list, tuple) and tp is not str


def _sequence_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    (item_type, *_) = typing.get_args(tp) or (Any,)

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise ValidationError("", f"must be a list, not {type(value).__name__}")
        out = []
        for index, item in enumerate(value):
            try:
                out.append(conv.structure(item, item_type))
            except ValidationError as exc:
                raise exc.at(f"[{index}]") from None
        return tuple(out)

    return structure


def _is_mapping(tp: Any) -> bool:
    return typing.get_origin(tp) in (Mapping, dict)


def _mapping_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    _, value_type = typing.get_args(tp) or (str, Any)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValidationError("", f"must be a mapping, not {type(value).__name__}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError("", f"keys must be strings; got {key!r}")
            try:
                out[key] = conv.structure(item, value_type)
            except ValidationError as exc:
                raise exc.at(key) from None
        return out

    return structure


def _attrs_factory(strict: bool) -> Callable[[Any, cattrs.Converter], Any]:
    def factory(cls: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
        attrs.resolve_types(cls)
        fields = {f.name: f for f in attrs.fields(cls)}
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
                    kwargs[name] = conv.structure(item, fields[name].type)
                except ValidationError as exc:
                    raise exc.at(str(key)) from None
            return cls(**kwargs)

        return structure

    return factory


user.register_structure_hook_factory(_is_sequence, _sequence_factory)
user.register_structure_hook_factory(_is_mapping, _mapping_factory)
user.register_structure_hook_factory(attrs.has, _attrs_factory(strict=True))

_attrs_speech = user.get_structure_hook(SpeechConfig)
_attrs_content = user.get_structure_hook(Content)


def _speech_hook(value: Any, tp: Any) -> SpeechConfig:
    if isinstance(value, str):  # shorthand: a voice name
        voice = PrebuiltVoiceConfig(voice_name=value)
        return SpeechConfig(voice_config=VoiceConfig(prebuilt_voice_config=voice))
    result: SpeechConfig = _attrs_speech(value, tp)
    return result


def _content_hook(value: Any, tp: Any) -> Content:
    if isinstance(value, str):  # shorthand: one text part from the user
        return Content(parts=(Part(text=value),), role="user")
    result: Content = _attrs_content(value, tp)
    return result


user.register_structure_hook(SpeechConfig, _speech_hook)
user.register_structure_hook(Content, _content_hook)


def structure_constraints(value: Any) -> LiveConnectConstraints:
    """Validate ``live_connect_constraints`` (a dict or `LiveConnectConstraints`).

    Raises:
        ValidationError: naming the offending path under ``live_connect_constraints``.
    """
    try:
        result: LiveConnectConstraints = user.structure(value, LiveConnectConstraints)
    except ValidationError as exc:
        raise exc.at("live_connect_constraints") from None
    if result.model is not None and not result.model.removeprefix("models/").strip():
        raise ValidationError("live_connect_constraints.model", "must not be empty")
    return result


# -- the wire converter ------------------------------------------------------------------------

wire = cattrs.Converter()
wire.register_structure_hook_factory(attrs.has, _attrs_factory(strict=False))
wire.register_structure_hook_factory(_is_sequence, _sequence_factory)
wire.register_structure_hook_factory(_is_mapping, _mapping_factory)
wire.register_structure_hook(typing.Any, lambda value, _: value)


def _renames(cls: Any) -> dict[str, Any]:
    return {f.name: override(rename=camel(f.name)) for f in attrs.fields(cls)}


def _camel_unstructure_factory(cls: Any, conv: cattrs.Converter) -> Callable[[Any], Any]:
    attrs.resolve_types(cls)
    return make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **_renames(cls))


wire.register_unstructure_hook_factory(attrs.has, _camel_unstructure_factory)
wire.register_unstructure_hook(Modality, lambda value: value.value)
wire.register_unstructure_hook(MediaResolution, lambda value: value.value)
# Sequences go out as JSON arrays, whatever the caller passed.
wire.register_unstructure_hook_factory(
    _is_sequence, lambda tp, conv: lambda value: [conv.unstructure(v) for v in value]
)

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


_unstructure_function_plain = make_dict_unstructure_fn(
    FunctionDeclaration,
    wire,
    _cattrs_omit_if_default=True,
    **_renames(FunctionDeclaration),
)


def _unstructure_function(decl: FunctionDeclaration) -> dict[str, Any]:
    out: dict[str, Any] = _unstructure_function_plain(decl)
    for key in ("parameters", "response"):
        if key in out:
            out[key] = _schema_to_wire(out[key])
    return out


wire.register_unstructure_hook(FunctionDeclaration, _unstructure_function)


# -- times -------------------------------------------------------------------------------------


def format_time(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: ``2031-05-06T07:08:09Z`` (microseconds when non-zero)."""
    text = value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat()
    return text + "Z"


def parse_time(value: Any) -> dt.datetime | None:
    """Parse an RFC 3339 timestamp from the wire (``Z``, offsets, up to nanoseconds)."""
    if not isinstance(value, str):
        return None
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python before 3.11 accepts at most 6 fractional digits; the service may send 9.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


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
    generation: dict[str, Any] = {}
    if config.generation_config is not None:
        generation.update(wire.unstructure(config.generation_config))
    for name in _FLAT_GENERATION_FIELDS:
        value = getattr(config, name)
        if value is not None:
            generation[camel(name)] = wire.unstructure(value)
    if generation:
        setup["generationConfig"] = generation
    for name in SETUP_FIELDS:
        value = getattr(config, name)
        if value is not None:
            setup[camel(name)] = wire.unstructure(value)
    return setup


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


# -- the response ------------------------------------------------------------------------------

_UNFLATTEN = {camel(name): name for name in _FLAT_GENERATION_FIELDS}


def setup_from_wire(setup: Mapping[str, Any]) -> LiveConnectConstraints:
    """A ``bidiGenerateContentSetup`` from the service -> `LiveConnectConstraints`."""
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
        config=wire.structure(config, LiveConnectConfig) if config else None,
    )


def token_from_response(
    payload: Any, request: TokenRequest, *, base_url: str, api_version: str
) -> EphemeralToken | None:
    """Parse the service's AuthToken; None when it is not a token (no string ``name``)."""
    if not isinstance(payload, Mapping):
        return None
    name = payload.get("name")
    if not isinstance(name, str) or not name:
        return None
    uses = payload.get("uses")
    constraints = request.constraints
    setup = payload.get("bidiGenerateContentSetup")
    if isinstance(setup, Mapping):
        # An odd echo must not lose a minted token: keep what we asked for then.
        with contextlib.suppress(ValidationError, TypeError, ValueError):
            constraints = setup_from_wire(setup)
    mask = payload.get("fieldMask")
    if isinstance(mask, str):
        locked: tuple[str, ...] | None = tuple(p.strip() for p in mask.split(",") if p.strip())
    else:
        request_mask = field_mask(
            setup_to_wire(request.constraints) if request.constraints else {},
            request.lock_additional_fields,
        )
        locked = tuple(request_mask.split(",")) if request_mask else None
    return EphemeralToken(
        name=name,
        expire_time=parse_time(payload.get("expireTime")) or request.expire_time,
        new_session_expire_time=(
            parse_time(payload.get("newSessionExpireTime")) or request.new_session_expire_time
        ),
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
