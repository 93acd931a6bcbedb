"""The service's settings: ``broker.toml`` plus ``GEMINI_TOKENS_*`` environment overrides.

The frozen attrs classes below are the one schema: one class per section, their field
types and validators the rules. `load_settings` reads the file (``tomllib`` on 3.11+,
``tomli`` on 3.10), applies the environment (``GEMINI_TOKENS_<SECTION>_<KEY>``, e.g.
``GEMINI_TOKENS_SERVER_PORT=9000`` or ``GEMINI_TOKENS_JWT_HMAC_SECRET=...``; each text is
read as the field's type says), and a strict cattrs converter structures the whole into a
`ServeSettings`, the policies included, so that a bad setting stops the service before it
listens. A `SettingsError` has one line per broken rule, each naming where the value came
from: ``broker.toml: server.port: must be ...`` for the file,
``GEMINI_TOKENS_SERVER_PORT (server.port): must be ...`` for a variable. The API key is
never read from the file: it comes from ``GEMINI_API_KEY`` as everywhere else in the
library.

The sections (see docs/serve.md for a complete file)::

    [server]    host, port, path, allowed_origins, shutdown_timeout, metrics, access_log
    [upstream]  base_url, timeout, max_retries, allow_insecure_http
    [limits]    per_caller, global, storage, on_storage_error, live_minutes, global_live_minutes
    [audit]     sink ("log" or "jsonl"), path
    [auth]      authorizer ("module:function"), or a [jwt] section
    [auth.jwt]  the `JWTSettings` fields (variables: GEMINI_TOKENS_JWT_<KEY>)
    [renewal]   enabled, rate_limits (the secret only from GEMINI_TOKENS_BROKER_SECRET)
    [policy]    one `Policy` for everyone; or
    [policies]  claim, default, and one [policies.NAME] `Policy` table per policy
"""

from __future__ import annotations

import copy
import difflib
import functools
import ipaddress
import math
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn, override

from gemini_tokens import ConfigurationError, ValidationError
from gemini_tokens.broker import (
    InvalidSettingError,
    JWTSettings,
    Policy,
    check_rate_limits,
    check_storage_uri,
    redacted_uri,
)

__all__ = [
    "ENV_PREFIX",
    "AuditSettings",
    "AuthSettings",
    "LimitsSettings",
    "PolicyTables",
    "RenewalSettings",
    "ServeSettings",
    "ServerSettings",
    "SettingsError",
    "SettingsProblem",
    "UpstreamSettings",
    "load_settings",
    "parse_settings",
]

ENV_PREFIX = "GEMINI_TOKENS_"
#: The one variable the renewal secret is read from (never the file), as the broker reads it.
SECRET_ENV = "GEMINI_TOKENS_BROKER_SECRET"
#: The shortest secret `TokenBroker` accepts, in bytes (UTF-8).
MIN_SECRET_BYTES = 32

#: Field metadata: the field's key in the file when it is not the attribute's name, or
#: None for a field the file does not give.
_KEY = "gemini_tokens.serve.key"
#: Field metadata: a mapping whose entries sit in the section itself ([policies.NAME]).
_INLINE = "gemini_tokens.serve.inline"
#: Fields of the broker's classes a file does not take (none today: with [renewal], a
#: policy's max_session_minutes is a setting too).
_NOT_IN_FILE: dict[type, frozenset[str]] = {}
#: ``GEMINI_TOKENS_JWT_*`` set ``[auth.jwt]``: the one section whose name is not its path.
_SECTION_PATHS = {"jwt": ("auth", "jwt")}


# -- the problems -------------------------------------------------------------------------


@attrs.frozen
class SettingsProblem:
    """One broken rule, and where the value came from.

    Attributes:
        source: The file's path, or the variable's name.
        key: The setting, e.g. ``server.port`` or ``policies.pro.uses``.
        rule: What it must be.
        variable: Whether ``source`` is an environment variable.
    """

    source: str
    key: str
    rule: str
    variable: bool = False

    def __str__(self) -> str:
        if self.variable:
            return f"{self.source} ({self.key}): {self.rule}"
        return f"{self.source}: {self.key}: {self.rule}"


class SettingsError(ConfigurationError):
    """Settings break rules: one line per problem, the first one's parts as attributes.

    A line is ``<file>: <key>: <rule>``, or ``<VARIABLE> (<key>): <rule>`` for a value
    that came from the environment.

    Attributes:
        problems: Every broken rule found.
        source: The first problem's file (or variable).
        key: The first problem's setting, e.g. ``server.port``.
        rule: The first problem's rule.
    """

    def __init__(self, *problems: SettingsProblem) -> None:
        super().__init__(*problems)
        self.problems = problems
        self.source = problems[0].source
        self.key = problems[0].key
        self.rule = problems[0].rule

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


# -- rules ------------------------------------------------------------------------------------


def _rule(ok: Callable[[Any], bool], rule: str) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator: ``ok(value)`` or a `ValidationError` naming the field."""

    def validate(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not ok(value):
            raise ValidationError(attribute.name, rule)

    return validate


def _is_host(host: str) -> bool:
    if host in ("localhost", "0.0.0.0", "::"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(host) and not any(c.isspace() for c in host)
    return True


def _token_path(path: str) -> str:
    """The token endpoint's path, checked and written ``/a/b``."""
    if not path.startswith("/") or path.rstrip("/") in ("", "/healthz", "/readyz", "/metrics"):
        raise ValidationError(
            "path", "must start with / and not be /, /healthz, /readyz or /metrics"
        )
    return "/" + path.strip("/")


def _limits(_: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    try:
        check_rate_limits(value)
    except InvalidSettingError as exc:
        raise ValidationError(attribute.name, exc.rule) from None


def _storage(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        check_storage_uri(value)
    except InvalidSettingError as exc:
        raise ValidationError(attribute.name, exc.rule) from None


# -- the schema -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ServerSettings:
    """``[server]``: where and how the service listens.

    Attributes:
        host: The address to listen on.
        port: The port (0 picks a free one).
        path: The token endpoint's path.
        allowed_origins: Origins whose pages may call the broker (``["*"]`` in ``--dev``).
        shutdown_timeout: Seconds in-flight requests get to finish on SIGTERM.
        metrics: Serve Prometheus metrics on ``/metrics``.
        access_log: One JSON line per request on ``gemini_tokens.serve.access``.
    """

    host: str = attrs.field(
        default="127.0.0.1",
        validator=_rule(_is_host, "must be an address such as 127.0.0.1 or 0.0.0.0"),
    )
    port: int = attrs.field(
        default=8080,
        validator=_rule(lambda p: 0 <= p <= 65535, "must be an integer from 0 to 65535"),
    )
    path: str = attrs.field(default="/token", converter=_token_path)
    allowed_origins: tuple[str, ...] = ()
    shutdown_timeout: float = attrs.field(
        default=30.0,
        validator=_rule(lambda s: 0 < s <= 3600, "must be a number of seconds from 0 to 3600"),
    )
    metrics: bool = False
    access_log: bool = True


@attrs.frozen(kw_only=True)
class UpstreamSettings:
    """``[upstream]``: the token service (the key comes from ``GEMINI_API_KEY``).

    Attributes:
        base_url: The token service (None: ``GEMINI_BASE_URL`` or Google's).
        timeout: Seconds per attempt to mint (None: the client's default).
        max_retries: Retries of a failed mint (None: the client's default).
        allow_insecure_http: Allow an ``http://`` base URL to a non-loopback host (an
            emulator in another container).
    """

    base_url: str | None = None
    timeout: float | None = attrs.field(
        default=None, validator=_rule(lambda t: t > 0, "must be a positive number of seconds")
    )
    max_retries: int | None = attrs.field(
        default=None, validator=_rule(lambda n: n >= 0, "must be an integer >= 0")
    )
    allow_insecure_http: bool = False


@attrs.frozen(kw_only=True)
class LimitsSettings:
    """``[limits]``: rate limits and where they are counted.

    Attributes:
        per_caller: Limits per caller, e.g. ``("5/minute", "100/day")``.
        global_: Limits for all callers together (``global`` in the file).
        storage: ``memory://`` or ``redis://...`` (its password never in a repr).
        on_storage_error: ``deny`` (503) or ``allow`` (mint anyway) when Redis is down.
        live_minutes: Budgets of Live minutes per caller, e.g. ``("60/day", "600/month")``
            (docs/budgets.md).
        global_live_minutes: Budgets of Live minutes for all callers together.
    """

    per_caller: tuple[str, ...] = attrs.field(default=(), validator=_limits)
    global_: tuple[str, ...] = attrs.field(default=(), validator=_limits, metadata={_KEY: "global"})
    storage: str = attrs.field(
        default="memory://", validator=_storage, repr=lambda uri: repr(redacted_uri(uri))
    )
    on_storage_error: Literal["deny", "allow"] = "deny"
    live_minutes: tuple[str, ...] = attrs.field(default=(), validator=_limits)
    global_live_minutes: tuple[str, ...] = attrs.field(default=(), validator=_limits)


@attrs.frozen(kw_only=True)
class AuditSettings:
    """``[audit]``: where each decision is recorded.

    Attributes:
        sink: ``log`` (a log line per event) or ``jsonl`` (a file).
        path: The JSON-lines file (``jsonl``).
    """

    sink: Literal["log", "jsonl"] = "log"
    path: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.sink == "jsonl" and not self.path:
            raise ValidationError("path", "is required with sink = 'jsonl' (the JSON-lines file)")


@attrs.frozen(kw_only=True)
class AuthSettings:
    """``[auth]``: who the caller is; `ServeSettings` requires exactly one of the two.

    Attributes:
        authorizer: A ``module:function`` authorizer, or None.
        jwt: The ``[auth.jwt]`` settings, or None.
    """

    authorizer: str | None = None
    jwt: JWTSettings | None = None


@attrs.frozen(kw_only=True)
class RenewalSettings:
    """``[renewal]``: conversations that outlast a token (``{"renew": session}``).

    The secret that signs sessions is never read from the file: it comes from
    ``GEMINI_TOKENS_BROKER_SECRET`` (at least 32 bytes, the same on every replica).

    Attributes:
        enabled: Answer with a signed ``session`` and renew it (`TokenBroker`'s
            ``renewal``). Each policy's ``max_session_minutes`` caps a conversation.
        rate_limits: Limits per caller on renewals, e.g. ``("30/hour",)``, apart from
            ``[limits] per_caller`` (the global limits count renewals too).
        secret: The signing secret, from ``GEMINI_TOKENS_BROKER_SECRET`` (never in a repr).
    """

    enabled: bool = False
    rate_limits: tuple[str, ...] = attrs.field(default=(), validator=_limits)
    secret: str | None = attrs.field(default=None, repr=False, metadata={_KEY: None})


@attrs.frozen(kw_only=True)
class PolicyTables:
    """``[policies]``: a policy per caller, picked by one of the caller's attributes.

    Attributes:
        claim: The caller attribute (a JWT claim) that picks a policy.
        default: The policy of a caller without that attribute (None: refused, 403).
        tables: The ``[policies.NAME]`` tables, by name.
    """

    claim: str = attrs.field(
        validator=_rule(bool, "is required: the caller attribute that picks a policy")
    )
    default: str | None = None
    tables: Mapping[str, Policy] = attrs.field(factory=dict, metadata={_INLINE: True})

    def __attrs_post_init__(self) -> None:
        if not self.tables:
            raise ValidationError("", "define at least one [policies.NAME] table")
        if self.default is not None and self.default not in self.tables:
            raise ValidationError(
                "default", f"{self.default!r} is not one of the policies: " + ", ".join(self.tables)
            )


@attrs.frozen(kw_only=True)
class ServeSettings:
    """Everything ``gemini-tokens serve`` runs with, checked: one attribute per section.

    Attributes:
        server: ``[server]``.
        upstream: ``[upstream]``.
        limits: ``[limits]``.
        audit: ``[audit]``.
        auth: ``[auth]`` (exactly one of its authorizer and its JWT settings).
        renewal: ``[renewal]``.
        policy: ``[policy]``, one policy for everyone; or
        policies: ``[policies]``, a policy per caller (exactly one of the two).
        source: Where the settings came from (the file's path).
        dev: ``--dev`` mode: loopback only, any origin.
    """

    server: ServerSettings = attrs.field(factory=ServerSettings)
    upstream: UpstreamSettings = attrs.field(factory=UpstreamSettings)
    limits: LimitsSettings = attrs.field(factory=LimitsSettings)
    audit: AuditSettings = attrs.field(factory=AuditSettings)
    auth: AuthSettings = attrs.field(factory=AuthSettings)
    renewal: RenewalSettings = attrs.field(factory=RenewalSettings)
    policy: Policy | None = None
    policies: PolicyTables | None = None
    source: str = attrs.field(default="broker.toml", metadata={_KEY: None})
    dev: bool = attrs.field(default=False, metadata={_KEY: None})

    def __attrs_post_init__(self) -> None:
        if (self.auth.authorizer is None) == (self.auth.jwt is None):
            raise ValidationError(
                "auth",
                "give exactly one of [auth.jwt] (verify bearer JWTs) and "
                "auth.authorizer = 'module:function'",
            )
        if (self.policy is None) == (self.policies is None):
            raise ValidationError(
                "policy",
                "give exactly one of [policy] (one for everyone) and [policies.NAME] tables",
            )

    @property
    def metrics(self) -> bool:
        """Whether Prometheus metrics are served (``server.metrics``; the telemetry set-up's
        question)."""
        return self.server.metrics

    def policy_names(self) -> list[str]:
        """The policies' names (``default`` for a single ``[policy]``)."""
        return ["default"] if self.policies is None else list(self.policies.tables)


# -- the schema's keys and types --------------------------------------------------------------


@functools.cache
def _file_keys(cls: type) -> dict[str, str]:
    """Each attribute the file gives, by name: its key in the file."""
    keys = {}
    for field in attrs.fields(cls):
        if not field.init or field.name in _NOT_IN_FILE.get(cls, ()) or _INLINE in field.metadata:
            continue
        key = field.metadata.get(_KEY, field.alias)
        if key is not None:
            keys[field.name] = key
    return keys


@functools.cache
def _types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(tp: Any) -> Any:
    """``X`` for ``X | None``, else ``tp``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _section_class(path: tuple[str, ...]) -> type | None:
    """The class of the section at ``path`` (``("auth", "jwt")``), or None."""
    cls: type = ServeSettings
    for part in path:
        attribute = {key: name for name, key in _file_keys(cls).items()}.get(part)
        if attribute is None:
            return None
        tp = _optional(_types(cls)[attribute])
        if not (isinstance(tp, type) and attrs.has(tp)):
            return None
        cls = tp
    return cls


def _unknown(key: str, keys: list[str], *, sections: bool = False) -> str:
    """The rule for an unknown key: the closest known one, else all of them."""
    shown = sorted(f"[{k}]" if sections else repr(k) for k in keys)
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if sections:
        hint = f"did you mean [{close[0]}]?" if close else "the sections are " + ", ".join(shown)
        return f"is not a section; {hint}"
    hint = f"did you mean {close[0]!r}?" if close else "it takes " + ", ".join(shown)
    return f"is not a setting; {hint}"


# -- the converter ----------------------------------------------------------------------------


def _type_error(kind: str, value: Any) -> ValidationError:
    if isinstance(value, bool):
        return ValidationError("", f"must be {kind}, not a boolean")
    return ValidationError("", f"must be {kind}, not {type(value).__name__}")


def _str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise _type_error("a string", value)
    return value


def _int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error("an integer", value)
    return value


def _float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error("a number", value)
    if not math.isfinite(value):
        raise ValidationError("", "must be a finite number")
    return float(value)


def _bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("", f"must be true or false, not {type(value).__name__}")
    return value


def _strings(value: Any, _: Any) -> tuple[str, ...]:
    """A list of strings; one string is a list of one."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("", "must be a list of strings")
    return tuple(value)


def _table(value: Any, _: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError("", f"must be a table, not {type(value).__name__}")
    return copy.deepcopy(value)


def _literal(tp: Any) -> Callable[[Any, Any], Any]:
    allowed = typing.get_args(tp)
    words = " or ".join(repr(a) for a in allowed)

    def structure(value: Any, _: Any) -> Any:
        if value not in allowed or not isinstance(value, str):
            raise ValidationError("", f"must be {words}; got {value!r}")
        return value

    return structure


def _client_may_set(value: Any, _: Any) -> dict[str, Any]:
    """``field = [values]`` or ``field = { min = .., max = .. }`` as `Policy` takes them."""
    table = _table(value, None)
    choices: dict[str, Any] = {}
    for field, spec in table.items():
        if isinstance(spec, dict):
            if set(spec) != {"min", "max"}:
                raise ValidationError(
                    field, "a range is written { min = 0.0, max = 1.0 }; a set of values as a list"
                )
            choices[field] = (spec["min"], spec["max"])
        else:
            choices[field] = spec
    return choices


def _attrs_hook(converter: cattrs.Converter, cls: type) -> Callable[[Any, Any], Any]:
    """A section: its keys as `_file_keys` says, any other key refused."""
    overrides: dict[str, Any] = {}
    for field in attrs.fields(cls):
        if not field.init:
            continue
        key = _file_keys(cls).get(field.name)
        if key is None and _INLINE not in field.metadata:
            overrides[field.name] = override(omit=True)
        elif key is not None and key != field.name:
            overrides[field.name] = override(rename=key)
    if cls is Policy:
        overrides["client_may_set"] = override(struct_hook=_client_may_set)
    structure_fn: Callable[[Any, Any], Any] = make_dict_structure_fn(
        cls, converter, _cattrs_forbid_extra_keys=True, **overrides
    )
    inline = [f.name for f in attrs.fields(cls) if _INLINE in f.metadata]

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise ValidationError("", f"must be a table ([section]), not {type(value).__name__}")
        if inline:  # [policies.NAME] tables sit beside [policies]' own keys
            tables = {k: v for k, v in value.items() if isinstance(v, dict)}
            value = {k: v for k, v in value.items() if k not in tables} | {inline[0]: tables}
        return structure_fn(value, cls)

    return structure


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _str)
    converter.register_structure_hook(int, _int)
    converter.register_structure_hook(float, _float)
    converter.register_structure_hook(bool, _bool)
    converter.register_structure_hook_func(_is_strings, _strings)
    converter.register_structure_hook_func(_is_table, _table)
    converter.register_structure_hook_factory(_is_literal, _literal)
    converter.register_structure_hook_factory(_is_section, lambda cls: _attrs_hook(converter, cls))
    return converter


def _is_strings(tp: Any) -> bool:
    return bool(tp == tuple[str, ...])


def _is_table(tp: Any) -> bool:
    return typing.get_origin(tp) is dict


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp)


_CONVERTER = _converter()


# -- errors as "dotted.path: rule" --------------------------------------------------------------


def _key_of(cls: type | None, name: str) -> str | None:
    """An attribute's key in the file (None for an inline mapping), else ``name``."""
    if cls is None or not attrs.has(cls):
        return name
    fields = attrs.fields_dict(cls)
    if name in fields and _INLINE in fields[name].metadata:
        return None
    return _file_keys(cls).get(name, name)


def _problems(
    exc: BaseException, path: tuple[str, ...], cls: type | None = None
) -> Iterator[tuple[tuple[str, ...], str]]:
    """Each ``(path, rule)`` in a cattrs error tree.

    ``cls`` is the class whose ``__init__`` raised ``exc`` (its validators, converters and
    post-init checks), whose `ValidationError` names a field relative to the class: a
    leading name that is not one of its fields is the class naming itself (``policy.uses``,
    ``jwt``) and is dropped.
    """
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            key = _key_of(exc.cl, note.name)
            yield from _problems(sub, path if key is None else (*path, key))
        for sub in without:
            yield from _problems(sub, path, exc.cl)
    elif isinstance(exc, IterableValidationError):
        items, rest = exc.group_exceptions()
        for sub, item in items:
            yield from _problems(sub, (*path, str(item.index)))
        for sub in rest:
            yield from _problems(sub, path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        keys = list(_file_keys(exc.cl).values())
        for key in sorted(exc.extra_fields):
            if exc.cl is ServeSettings:
                yield (f"[{key}]",), _unknown(key, keys, sections=True)
            else:
                yield (*path, key), _unknown(key, keys)
    elif isinstance(exc, (ValidationError, InvalidSettingError)):
        parts = [part for part in exc.field.split(".") if part]
        if cls is not None and parts and parts[0] not in attrs.fields_dict(cls):
            parts = parts[1:]
        if cls is not None and parts:
            key = _key_of(cls, parts[0])
            parts = parts[1:] if key is None else [key, *parts[1:]]
        yield (*path, *parts), exc.rule
    elif isinstance(exc, KeyError):
        yield path, "is required"
    else:  # pragma: no cover - every hook and validator raises one of the above
        yield path, f"is not valid ({type(exc).__name__})"


def _error(
    exc: BaseException, source: str, origins: Mapping[tuple[str, ...], str]
) -> SettingsError:
    """The problems of ``exc``, each naming the variable that gave its value, or the file."""
    problems = []
    for path, rule in _problems(exc, ()):
        key = ".".join(path)
        for end in range(len(path), 0, -1):
            variable = origins.get(path[:end])
            if variable is not None:
                problems.append(SettingsProblem(variable, key, rule, variable=True))
                break
        else:
            problems.append(SettingsProblem(source, key, rule))
    return SettingsError(*problems)


# -- the environment --------------------------------------------------------------------------


def _from_text(tp: Any, text: str) -> Any:
    """A variable's text as the field's type reads it."""
    tp = _optional(tp)
    if tp is str or typing.get_origin(tp) is Literal:
        return text
    if tp is bool:
        word = text.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise ValidationError("", f"must be true or false, not {text!r}")
    if tp is int or tp is float:
        try:
            return tp(text.strip())
        except ValueError:
            kind = "an integer" if tp is int else "a number"
            raise ValidationError("", f"must be {kind}, not {text!r}") from None
    if tp == tuple[str, ...]:
        return [part.strip() for part in text.split(",") if part.strip()]
    raise ValidationError("", "cannot be given in a variable; set it in the file")


def _apply_environment(
    data: dict[str, Any], environ: Mapping[str, str], source: str
) -> dict[tuple[str, ...], str]:
    """Apply ``GEMINI_TOKENS_<SECTION>_<KEY>``; returns each overridden path's variable.

    A variable whose section is not one of ours (``GEMINI_TOKENS_BROKER_SECRET``...) is left
    alone; an unknown key in one of our sections is given to the converter as it is, which
    refuses it (a typo must not be ignored).
    """
    origins: dict[tuple[str, ...], str] = {}
    problems = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        path = _SECTION_PATHS.get(section, (section,))
        cls = _section_class(path)
        if cls is None or not key:
            continue
        table = data
        for part in path:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise SettingsError(SettingsProblem(source, ".".join(path), "must be a table"))
        attribute = {k: a for a, k in _file_keys(cls).items()}.get(key)
        where = (*path, key)
        origins[where] = name
        try:
            value = (
                environ[name]
                if attribute is None
                else _from_text(_types(cls)[attribute], environ[name])
            )
        except ValidationError as exc:
            problems.append(SettingsProblem(name, ".".join(where), exc.rule, True))
            continue
        table[key] = value
    if problems:
        raise SettingsError(*problems)
    return origins


# -- reading ----------------------------------------------------------------------------------


def _load_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigurationError(
                "reading broker.toml on Python 3.10 needs tomli: pip install 'gemini-tokens[serve]'"
            ) from None
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        problem = SettingsProblem(path, "file", f"cannot be read: {exc.strerror or exc}")
        raise SettingsError(problem) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(SettingsProblem(path, "file", f"is not valid TOML: {exc}")) from None


def parse_settings(
    data: Mapping[str, Any],
    *,
    source: str = "broker.toml",
    environ: Mapping[str, str] | None = None,
    dev: bool = False,
) -> ServeSettings:
    """Check settings already parsed from TOML, with the environment's overrides.

    Args:
        data: The file's tables.
        source: The file's name, for the errors.
        environ: The variables (default: ``os.environ``).
        dev: ``--dev``: loopback only, any origin.

    Raises:
        SettingsError: each broken rule, naming the file (or the variable) and the key.
    """
    import os

    environ = os.environ if environ is None else environ
    tables = copy.deepcopy(dict(data))
    origins = _apply_environment(tables, environ, source)
    _refuse_a_secret_in_the_file(tables, source, origins)
    try:
        settings = _CONVERTER.structure(tables, ServeSettings)
    except (ClassValidationError, ValidationError) as exc:
        raise _error(exc, source, origins) from None
    renewal = _with_secret(settings.renewal, environ, source, origins)
    server = settings.server
    if dev:
        server = attrs.evolve(server, host="127.0.0.1", allowed_origins=("*",))
    elif "*" in server.allowed_origins:
        problem = ValidationError(
            "server.allowed_origins", "'*' is allowed only with --dev; list your origins"
        )
        raise _error(problem, source, origins)
    auth = settings.auth
    if settings.policies is not None and auth.jwt is not None:
        claim = settings.policies.claim
        if claim not in auth.jwt.attribute_claims:
            # The claim must reach Caller.attributes to pick a policy.
            claims = (*auth.jwt.attribute_claims, claim)
            auth = attrs.evolve(auth, jwt=attrs.evolve(auth.jwt, attribute_claims=claims))
    return attrs.evolve(settings, server=server, auth=auth, renewal=renewal, source=source, dev=dev)


def _refuse_a_secret_in_the_file(
    tables: Mapping[str, Any], source: str, origins: Mapping[tuple[str, ...], str]
) -> None:
    """``[renewal] secret`` (or ``GEMINI_TOKENS_RENEWAL_SECRET``): refused, naming the
    variable to use (a file is copied, committed and shown far more than an environment)."""
    renewal = tables.get("renewal")
    if not isinstance(renewal, Mapping) or "secret" not in renewal:
        return
    rule = f"is never read from the file; set the {SECRET_ENV} environment variable"
    variable = origins.get(("renewal", "secret"))
    if variable is not None:
        rule = f"is read only from {SECRET_ENV}, not {variable}"
        raise SettingsError(SettingsProblem(variable, "renewal.secret", rule, variable=True))
    raise SettingsError(SettingsProblem(source, "renewal.secret", rule))


def _with_secret(
    renewal: RenewalSettings,
    environ: Mapping[str, str],
    source: str,
    origins: Mapping[tuple[str, ...], str],
) -> RenewalSettings:
    """``renewal`` with its secret from ``GEMINI_TOKENS_BROKER_SECRET``, checked when on."""
    if not renewal.enabled:
        return renewal
    secret = environ.get(SECRET_ENV)
    if not secret:
        enabled = origins.get(("renewal", "enabled"))
        rule = (
            f"needs the signing secret in {SECRET_ENV} (at least {MIN_SECRET_BYTES} random "
            "bytes, the same on every replica), e.g. from `openssl rand -base64 48`"
        )
        where = (enabled, True) if enabled is not None else (source, False)
        raise SettingsError(SettingsProblem(where[0], "renewal.enabled", rule, variable=where[1]))
    if len(secret.encode()) < MIN_SECRET_BYTES:
        rule = f"must be at least {MIN_SECRET_BYTES} bytes"
        raise SettingsError(SettingsProblem(SECRET_ENV, "renewal.secret", rule, variable=True))
    return attrs.evolve(renewal, secret=secret)


def load_settings(
    path: str, *, environ: Mapping[str, str] | None = None, dev: bool = False
) -> ServeSettings:
    """Read, override from the environment, and check ``path``.

    Raises:
        SettingsError: each broken rule, naming the file (or the variable) and the key.
    """
    return parse_settings(_load_toml(path), source=path, environ=environ, dev=dev)
