"""The service's settings: ``broker.toml`` plus ``GEMINI_TOKENS_*`` environment overrides.

`load_settings` reads the file (``tomllib`` on 3.11+, ``tomli`` on 3.10), applies the
environment (``GEMINI_TOKENS_<SECTION>_<KEY>``, e.g. ``GEMINI_TOKENS_SERVER_PORT=9000`` or
``GEMINI_TOKENS_JWT_HMAC_SECRET=...``), and checks everything, the policies included, so that
a bad setting stops the service before it listens: a `SettingsError` names the file (or the
variable), the key and the rule. The API key is never read from the file: it comes from
``GEMINI_API_KEY`` as everywhere else in the library.

The sections (see docs/serve.md for a complete file)::

    [server]    host, port, path, allowed_origins, shutdown_timeout, metrics, access_log
    [upstream]  base_url, timeout, max_retries, allow_insecure_http
    [limits]    per_caller, global, storage, on_storage_error
    [audit]     sink ("log" or "jsonl"), path
    [auth]      authorizer ("module:function"), or a [jwt] section
    [jwt]       issuer, audience, algorithms, jwks_url | public_key_file | hmac_secret,
                caller_claim, attribute_claims, leeway_seconds, jwks_cache_seconds,
                jwks_min_refresh_seconds
    [policy]    one policy for everyone; or
    [policies]  claim, default, and one [policies.NAME] table per policy
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping
from typing import Any

import attrs

from gemini_tokens._errors import ConfigurationError, ValidationError
from gemini_tokens.broker import JWTSettings
from gemini_tokens.broker._limiter import redacted_uri
from gemini_tokens.broker._policy import Policy

__all__ = ["ENV_PREFIX", "ServeSettings", "SettingsError", "load_settings", "parse_settings"]

ENV_PREFIX = "GEMINI_TOKENS_"

#: Every key each section takes, with its kind (for the environment overrides' parsing).
_KEYS: dict[str, dict[str, str]] = {
    "server": {
        "host": "str",
        "port": "int",
        "path": "str",
        "allowed_origins": "list",
        "shutdown_timeout": "float",
        "metrics": "bool",
        "access_log": "bool",
    },
    "upstream": {
        "base_url": "str",
        "timeout": "float",
        "max_retries": "int",
        "allow_insecure_http": "bool",
    },
    "limits": {"per_caller": "list", "global": "list", "storage": "str", "on_storage_error": "str"},
    "audit": {"sink": "str", "path": "str"},
    "auth": {"authorizer": "str"},
    "jwt": {
        "issuer": "str",
        "audience": "list",
        "algorithms": "list",
        "jwks_url": "str",
        "public_key_file": "str",
        "hmac_secret": "str",
        "caller_claim": "str",
        "attribute_claims": "list",
        "leeway_seconds": "float",
        "jwks_cache_seconds": "float",
        "jwks_min_refresh_seconds": "float",
    },
    "policies": {"claim": "str", "default": "str"},
    "policy": {
        "model": "str",
        "uses": "int",
        "expire_minutes": "float",
        "new_session_expire_minutes": "float",
    },
}
_POLICY_KEYS = frozenset(
    {
        "model",
        "config",
        "lock_additional_fields",
        "uses",
        "expire_minutes",
        "new_session_expire_minutes",
        "client_may_set",
    }
)


class SettingsError(ConfigurationError):
    """A setting breaks a rule: ``<file>: [section] key: rule``.

    Attributes:
        source: The file (or ``environment``) the setting came from.
        key: The setting, e.g. ``server.port`` or ``policies.pro.uses``.
        rule: What it must be.
    """

    def __init__(self, source: str, key: str, rule: str) -> None:
        self.source = source
        self.key = key
        self.rule = rule
        super().__init__(f"{source}: {key}: {rule}")


@attrs.frozen(kw_only=True)
class ServeSettings:
    """Everything ``gemini-tokens serve`` runs with, checked.

    Attributes:
        source: Where the settings came from (the file's path).
        host: The address to listen on.
        port: The port (0 picks a free one).
        path: The token endpoint's path.
        allowed_origins: Origins whose pages may call the broker (``["*"]`` in ``--dev``).
        shutdown_timeout: Seconds in-flight requests get to finish on SIGTERM.
        metrics: Serve Prometheus metrics on ``/metrics``.
        access_log: One JSON line per request on ``gemini_tokens.serve.access``.
        base_url: The token service (None: ``GEMINI_BASE_URL`` or Google's).
        timeout: Seconds per attempt to mint.
        max_retries: Retries of a failed mint.
        allow_insecure_http: Allow an ``http://`` base URL to a non-loopback host (an
            emulator in another container).
        rate_limits: Per caller.
        global_rate_limits: For all callers together.
        storage_uri: ``memory://`` or ``redis://...``.
        on_limiter_error: ``deny`` or ``allow``.
        audit_sink: ``log`` or ``jsonl``.
        audit_path: The JSON-lines file (``jsonl``).
        authorizer: A ``module:function`` authorizer, or None.
        jwt: The JWT settings, or None.
        policies: The policies by name (``default`` alone for a single ``[policy]``).
        policy_claim: The caller attribute that picks a policy (None: one policy).
        default_policy: The policy of a caller without that attribute (None: refused).
        dev: ``--dev`` mode: loopback only, any origin.
    """

    source: str
    host: str = "127.0.0.1"
    port: int = 8080
    path: str = "/token"
    allowed_origins: tuple[str, ...] = ()
    shutdown_timeout: float = 30.0
    metrics: bool = False
    access_log: bool = True
    base_url: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    allow_insecure_http: bool = False
    rate_limits: tuple[str, ...] = ()
    global_rate_limits: tuple[str, ...] = ()
    storage_uri: str = attrs.field(default="memory://", repr=lambda uri: repr(redacted_uri(uri)))
    on_limiter_error: str = "deny"
    audit_sink: str = "log"
    audit_path: str | None = None
    authorizer: str | None = None
    jwt: JWTSettings | None = None
    policies: Mapping[str, Policy] = attrs.field(factory=dict)
    policy_claim: str | None = None
    default_policy: str | None = None
    dev: bool = False


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
        raise SettingsError(path, "file", f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(path, "file", f"is not valid TOML: {exc}") from None


def _env_value(name: str, kind: str, raw: str) -> Any:
    if kind == "str":
        return raw
    if kind == "list":
        return [part.strip() for part in raw.split(",") if part.strip()]
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError("environment", name, "must be true or false")
    try:
        return int(raw) if kind == "int" else float(raw)
    except ValueError:
        raise SettingsError("environment", name, f"must be a number, not {raw!r}") from None


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Apply ``GEMINI_TOKENS_<SECTION>_<KEY>`` overrides; returns the names applied.

    A variable whose section is not one of ours (``GEMINI_TOKENS_BROKER_SECRET``...) is left
    alone; an unknown key in one of our sections is an error (a typo must not be ignored).
    """
    applied = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in _KEYS:
            continue
        kinds = _KEYS[section]
        if key not in kinds:
            raise SettingsError(
                "environment",
                name,
                f"[{section}] has no key {key!r}; it takes " + ", ".join(sorted(kinds)),
            )
        value = _env_value(name, kinds[key], environ[name])
        target = data.setdefault("auth", {}) if section == "jwt" else data
        if section == "jwt":
            target = target.setdefault("jwt", {})
        else:
            target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise SettingsError("environment", name, f"[{section}] in the file is not a table")
        target[key] = value
        applied.append(name)
    return applied


class _Reader:
    """Typed reads from one table, each error naming the file and the key."""

    def __init__(self, source: str, section: str, table: Any, known: frozenset[str]) -> None:
        self.source = source
        self.section = section
        if table is None:
            table = {}
        if not isinstance(table, dict):
            raise SettingsError(source, section, "must be a table ([section])")
        unknown = sorted(set(table) - known)
        if unknown:
            raise SettingsError(
                source,
                f"{section}.{unknown[0]}",
                "is not a setting; this section takes " + ", ".join(sorted(known)),
            )
        self.table = table

    def error(self, key: str, rule: str) -> SettingsError:
        return SettingsError(self.source, f"{self.section}.{key}", rule)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(key, f"must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise self.error(key, f"must be {_kind_name(kind)}, not {type(value).__name__}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return tuple(value)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _policy(source: str, section: str, table: Any) -> Policy:
    reader = _Reader(source, section, table, _POLICY_KEYS)
    options: dict[str, Any] = dict(reader.table)
    may_set = options.get("client_may_set")
    if may_set is not None:
        if not isinstance(may_set, dict):
            raise reader.error("client_may_set", "must be a table of field = allowed values")
        choices: dict[str, Any] = {}
        for field, spec in may_set.items():
            if isinstance(spec, dict):
                if set(spec) != {"min", "max"}:
                    raise reader.error(
                        f"client_may_set.{field}",
                        "a range is written { min = 0.0, max = 1.0 }; a set of values as a list",
                    )
                choices[field] = (spec["min"], spec["max"])
            else:
                choices[field] = spec
        options["client_may_set"] = choices
    try:
        return Policy(**options)
    except ValidationError as exc:
        key = exc.field.removeprefix("policy.")
        raise SettingsError(source, f"{section}.{key}", exc.rule) from None
    except (TypeError, ValueError) as exc:
        raise SettingsError(source, section, str(exc)) from None


def _check_host(reader: _Reader, host: str) -> None:
    if host in ("localhost", "0.0.0.0", "::"):
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or any(c.isspace() for c in host):
            raise reader.error("host", "must be an address such as 127.0.0.1 or 0.0.0.0") from None


def parse_settings(
    data: Mapping[str, Any],
    *,
    source: str = "broker.toml",
    environ: Mapping[str, str] | None = None,
    dev: bool = False,
) -> ServeSettings:
    """Check settings already parsed from TOML (and apply the environment's overrides).

    Raises:
        SettingsError: the source, the key and the rule.
    """
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    if isinstance(data.get("auth"), dict) and isinstance(data["auth"].get("jwt"), dict):
        data["auth"]["jwt"] = dict(data["auth"]["jwt"])
    _apply_environment(data, os.environ if environ is None else environ)
    known_sections = {"server", "upstream", "limits", "audit", "auth", "policy", "policies"}
    for section in data:
        if section not in known_sections:
            raise SettingsError(
                source,
                f"[{section}]",
                "is not a section; the sections are " + ", ".join(sorted(known_sections)),
            )

    server = _Reader(source, "server", data.get("server"), frozenset(_KEYS["server"]))
    host = server.get("host", str, "127.0.0.1")
    _check_host(server, host)
    port = server.get("port", int, 8080)
    if not 0 <= port <= 65535:
        raise server.error("port", "must be an integer from 0 to 65535")
    path = server.get("path", str, "/token")
    if not path.startswith("/") or path.rstrip("/") in ("", "/healthz", "/readyz", "/metrics"):
        raise server.error("path", "must start with / and not be /, /healthz, /readyz or /metrics")
    origins = server.strings("allowed_origins")
    shutdown_timeout = float(server.get("shutdown_timeout", (int, float), 30.0))
    if not 0 < shutdown_timeout <= 3600:
        raise server.error("shutdown_timeout", "must be a number of seconds from 0 to 3600")
    metrics = server.get("metrics", bool, False)
    access_log = server.get("access_log", bool, True)
    if dev:
        host, origins = "127.0.0.1", ("*",)
    elif "*" in origins:
        raise server.error("allowed_origins", "'*' is allowed only with --dev; list your origins")

    upstream = _Reader(source, "upstream", data.get("upstream"), frozenset(_KEYS["upstream"]))
    base_url = upstream.get("base_url", str)
    timeout = upstream.get("timeout", (int, float))
    if timeout is not None and not timeout > 0:
        raise upstream.error("timeout", "must be a positive number of seconds")
    max_retries = upstream.get("max_retries", int)
    if max_retries is not None and max_retries < 0:
        raise upstream.error("max_retries", "must be an integer >= 0")
    allow_insecure_http = upstream.get("allow_insecure_http", bool, False)

    limits = _Reader(source, "limits", data.get("limits"), frozenset(_KEYS["limits"]))
    on_error = limits.get("on_storage_error", str, "deny")
    if on_error not in ("deny", "allow"):
        raise limits.error("on_storage_error", "must be 'deny' or 'allow'")

    audit = _Reader(source, "audit", data.get("audit"), frozenset(_KEYS["audit"]))
    sink = audit.get("sink", str, "log")
    audit_path = audit.get("path", str)
    if sink not in ("log", "jsonl"):
        raise audit.error("sink", "must be 'log' (a log line per event) or 'jsonl' (a file)")
    if sink == "jsonl" and not audit_path:
        raise audit.error("path", "is required with sink = 'jsonl' (the JSON-lines file)")

    auth_table = data.get("auth")
    auth = _Reader(source, "auth", auth_table, frozenset({"authorizer", "jwt"}))
    authorizer = auth.get("authorizer", str)
    jwt_table = auth.table.get("jwt")
    jwt_settings = None
    if jwt_table is not None:
        jwt_reader = _Reader(source, "auth.jwt", jwt_table, frozenset(_KEYS["jwt"]))
        options = dict(jwt_reader.table)
        for key in ("audience", "algorithms", "attribute_claims"):
            if key in options and isinstance(options[key], str):
                options[key] = [options[key]]
        try:
            jwt_settings = JWTSettings(**options)
        except ConfigurationError as exc:
            key, _, rule = str(exc).partition(": ")
            where = "auth.jwt" if key == "jwt" or not rule else f"auth.jwt.{key}"
            raise SettingsError(source, where, rule or str(exc)) from None
        except TypeError as exc:  # a required setting missing
            missing = str(exc).rsplit(":", 1)[-1].strip() or str(exc)
            raise SettingsError(
                source, "auth.jwt", f"needs issuer, audience and algorithms ({missing})"
            ) from None
    if (authorizer is None) == (jwt_settings is None):
        raise SettingsError(
            source,
            "auth",
            "give exactly one of [auth.jwt] (verify bearer JWTs) and "
            "auth.authorizer = 'module:function'",
        )

    policies: dict[str, Policy] = {}
    claim = default = None
    if ("policy" in data) == ("policies" in data):
        raise SettingsError(
            source,
            "policy",
            "give exactly one of [policy] (one for everyone) and [policies.NAME] tables",
        )
    if "policy" in data:
        policies["default"] = _policy(source, "policy", data["policy"])
    else:
        table = data["policies"]
        if not isinstance(table, dict):
            raise SettingsError(source, "policies", "must be a table")
        named = {k: v for k, v in table.items() if isinstance(v, dict)}
        meta = _Reader(
            source,
            "policies",
            {k: v for k, v in table.items() if k not in named},
            frozenset(_KEYS["policies"]),
        )
        claim = meta.get("claim", str)
        default = meta.get("default", str)
        if not claim:
            raise meta.error("claim", "is required: the caller attribute that picks a policy")
        if not named:
            raise SettingsError(source, "policies", "define at least one [policies.NAME] table")
        for name, policy_table in named.items():
            policies[name] = _policy(source, f"policies.{name}", policy_table)
        if default is not None and default not in policies:
            raise meta.error(
                "default", f"{default!r} is not one of the policies: " + ", ".join(policies)
            )
        if jwt_settings is not None and claim not in jwt_settings.attribute_claims:
            # The claim must reach Caller.attributes to pick a policy.
            claims: list[str] = [*jwt_settings.attribute_claims, claim]
            jwt_settings = attrs.evolve(jwt_settings, attribute_claims=tuple(claims))

    settings = ServeSettings(
        source=source,
        host=host,
        port=port,
        path="/" + path.strip("/"),
        allowed_origins=origins,
        shutdown_timeout=shutdown_timeout,
        metrics=metrics,
        access_log=access_log,
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
        allow_insecure_http=allow_insecure_http,
        rate_limits=limits.strings("per_caller"),
        global_rate_limits=limits.strings("global"),
        storage_uri=limits.get("storage", str, "memory://"),
        on_limiter_error=on_error,
        audit_sink=sink,
        audit_path=audit_path,
        authorizer=authorizer,
        jwt=jwt_settings,
        policies=policies,
        policy_claim=claim,
        default_policy=default,
        dev=dev,
    )
    _check_limits(settings)
    return settings


def _check_limits(settings: ServeSettings) -> None:
    """The limits and the storage URI, checked now by the broker's own parser."""
    from gemini_tokens.broker._limiter import parse_limits, storage_uri_for

    for key, value in (
        ("per_caller", settings.rate_limits),
        ("global", settings.global_rate_limits),
    ):
        try:
            parse_limits(key, value)
        except ConfigurationError as exc:
            rule = str(exc).partition(": ")[2] or str(exc)
            raise SettingsError(settings.source, f"limits.{key}", rule) from None
    try:
        storage_uri_for(settings.storage_uri)
    except ConfigurationError as exc:
        rule = str(exc).partition(": ")[2] or str(exc)
        raise SettingsError(settings.source, "limits.storage", rule) from None


def load_settings(
    path: str, *, environ: Mapping[str, str] | None = None, dev: bool = False
) -> ServeSettings:
    """Read, override from the environment, and check ``path``.

    Raises:
        SettingsError: the file, the key and the rule.
    """
    return parse_settings(_load_toml(path), source=path, environ=environ, dev=dev)
