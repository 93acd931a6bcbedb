"""The `TokenBroker` that ``gemini-tokens serve`` runs, from its `ServeSettings`.

`build_broker` makes it: the JWT or ``module:function`` authorizer (`load_authorizer`; with
``--dev`` and no file, `allow_everyone`), one policy or one per value of a caller's claim,
the limits, budgets and renewal, and the audit sink (the log, or `JsonLinesSink`), on the
`AsyncClient` of ``[upstream]`` (`client_for`).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable
from typing import Any

from gemini_tokens import AsyncClient, ConfigurationError
from gemini_tokens.broker import (
    AuditEvent,
    AuditSink,
    Authorize,
    BrokerRequest,
    Caller,
    Denied,
    JWTAuthorizer,
    Policy,
    PolicySource,
    TokenBroker,
    log_audit_event,
)
from gemini_tokens.serve._settings import ServeSettings, SettingsError, SettingsProblem

__all__ = [
    "AUDITED",
    "JsonLinesSink",
    "allow_everyone",
    "build_broker",
    "build_broker_with_sink",
    "client_for",
    "load_authorizer",
]

#: Set in a decision's context: appended to when the audit sink records the decision, so
#: that a decision cut off at shutdown is audited once, by the broker or else by the service.
AUDITED: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "gemini_tokens_serve_audited", default=None
)


class JsonLinesSink:
    """An audit sink appending one JSON object per line to a file (flushed per event).

    Args:
        path: The file; created if missing, appended to otherwise.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # Line-buffered: each event reaches the file whole, even if the process dies.
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def __call__(self, event: AuditEvent) -> None:
        self._file.write(json.dumps(event.to_dict(), separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _policy_source(settings: ServeSettings) -> PolicySource:
    if settings.policies is None:
        assert settings.policy is not None
        return settings.policy
    policies = dict(settings.policies.tables)
    claim = settings.policies.claim
    default = settings.policies.default

    def choose(caller: Caller) -> Policy:
        value = caller.attributes.get(claim)
        if isinstance(value, str) and value in policies:
            return policies[value]
        if default is not None:
            return policies[default]
        raise Denied(403, f"no token policy for your {claim}")

    return choose


def _audit_sink(settings: ServeSettings) -> tuple[Callable[[AuditEvent], None], Callable[[], None]]:
    """The audit sink, and its closer. (The broker itself reports each event to
    OpenTelemetry.) The sink marks the decision in whose context it runs as audited."""
    sink: Callable[[AuditEvent], None]
    close: Callable[[], None] = lambda: None  # noqa: E731
    if settings.audit.sink == "jsonl":
        assert settings.audit.path is not None
        try:
            jsonl = JsonLinesSink(settings.audit.path)
        except OSError as exc:
            rule = f"cannot be opened: {exc.strerror or exc}"
            raise SettingsError(SettingsProblem(settings.source, "audit.path", rule)) from None
        sink, close = jsonl, jsonl.close
    else:
        sink = log_audit_event
    inner = sink

    def audit(event: AuditEvent) -> None:
        audited = AUDITED.get()
        if audited is not None:
            audited.append(True)
        inner(event)

    return audit, close


def client_for(settings: ServeSettings) -> AsyncClient:
    """The `AsyncClient` of ``[upstream]`` (the key from ``GEMINI_API_KEY``).

    Raises:
        ConfigurationError: no API key, or an unusable base URL.
    """
    upstream = settings.upstream
    options: dict[str, Any] = {}
    if upstream.timeout is not None:
        options["timeout"] = upstream.timeout
    if upstream.max_retries is not None:
        options["max_retries"] = upstream.max_retries
    return AsyncClient(
        base_url=upstream.base_url, allow_insecure_http=upstream.allow_insecure_http, **options
    )


def build_broker(
    settings: ServeSettings, *, client: AsyncClient | None = None
) -> tuple[TokenBroker, Callable[[], None]]:
    """The `TokenBroker` the settings describe, and a function closing its audit file.

    Raises:
        ConfigurationError: no API key, an authorizer that cannot be imported, ...
    """
    broker, _, close_audit = build_broker_with_sink(settings, client=client)
    return broker, close_audit


def build_broker_with_sink(
    settings: ServeSettings, *, client: AsyncClient | None = None
) -> tuple[TokenBroker, AuditSink, Callable[[], None]]:
    """`build_broker`, and the audit sink (the service audits its own cut-offs to it)."""
    authorize: Authorize
    if settings.auth.jwt is not None:
        authorize = JWTAuthorizer(settings.auth.jwt)
    else:
        assert settings.auth.authorizer is not None
        authorize = load_authorizer(settings.auth.authorizer)
    if client is None:
        client = client_for(settings)
    audit, close_audit = _audit_sink(settings)
    broker = TokenBroker(
        authorize=authorize,
        policy=_policy_source(settings),
        rate_limits=settings.limits.per_caller,
        global_rate_limits=settings.limits.global_,
        storage_uri=settings.limits.storage,
        allowed_origins=settings.server.allowed_origins,
        audit=audit,
        client=client,
        on_limiter_error=settings.limits.on_storage_error,
        renewal=settings.renewal.enabled,
        secret=settings.renewal.secret,
        renewal_rate_limits=settings.renewal.rate_limits,
        # Budgets, and suspensions an operator sets with `serve suspend` (GET <path>/usage).
        live_minutes=settings.limits.live_minutes,
        global_live_minutes=settings.limits.global_live_minutes,
        suspensions=True,
    )
    return broker, audit, close_audit


async def allow_everyone(request: BrokerRequest) -> Caller:
    """``--dev`` without a config file: every caller gets in, named by its address."""
    return Caller(id=f"dev:{request.client_address or 'local'}")


def load_authorizer(spec: str) -> Callable[..., Any]:
    """A ``module:function`` authorizer, imported.

    Raises:
        ConfigurationError: not ``module:attribute``, not importable, or not callable.
    """
    import importlib

    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(
            f"authorizer: {spec!r} must be 'module:function', e.g. 'myapp.auth:authorize'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"authorizer: cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                f"authorizer: {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise ConfigurationError(f"authorizer: {spec!r} is not callable")
    return target  # type: ignore[no-any-return]
