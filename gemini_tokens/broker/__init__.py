"""The token broker: the endpoint that hands tokens to browsers, done once.

Who may get a token (``authorize``), locked to what (`Policy`), how many and how often
(rate limits with the `limits` library, in memory or Redis), and what is recorded
(`AuditEvent`), decided by one framework-neutral method, `TokenBroker.handle`, with thin
adapters that take the broker: `ASGIApp(broker)`, `WSGIApp(broker)`,
`gemini_tokens.broker.aiohttp.add_routes` and `gemini_tokens.broker.fastapi.router`::

    from gemini_tokens.broker import Caller, Denied, Policy, TokenBroker

    async def authorize(request):
        user = await my_sessions.user_for(request.headers.get("Authorization"))
        if user is None:
            raise Denied(401, "sign in first")
        return Caller(id=user.id)

    broker = TokenBroker(authorize=authorize, policy=Policy(model="..."),
                         rate_limits=["5/minute"])

Needs the ``broker`` extra (``pip install 'gemini-tokens[broker]'``).
"""

from __future__ import annotations

from gemini_tokens.broker._asgi import ASGIApp
from gemini_tokens.broker._audit import AuditEvent, log_audit_event, token_id
from gemini_tokens.broker._broker import AuditSink, Authorize, PolicySource, TokenBroker
from gemini_tokens.broker._budget import BudgetUsage, Suspension, Usage
from gemini_tokens.broker._checks import check_rate_limits, check_storage_uri
from gemini_tokens.broker._errors import InvalidSettingError
from gemini_tokens.broker._http import error_body
from gemini_tokens.broker._jwt import JWTAuthorizer, JWTError, JWTSettings
from gemini_tokens.broker._limiter import redacted_uri
from gemini_tokens.broker._policy import Policy
from gemini_tokens.broker._telemetry import decision_span
from gemini_tokens.broker._types import (
    MAX_BODY_BYTES,
    BrokerRequest,
    BrokerResponse,
    Caller,
    Denied,
    Headers,
)
from gemini_tokens.broker._wsgi import WSGIApp

__all__ = [
    "MAX_BODY_BYTES",
    "ASGIApp",
    "AuditEvent",
    "AuditSink",
    "Authorize",
    "BrokerRequest",
    "BrokerResponse",
    "BudgetUsage",
    "Caller",
    "Denied",
    "Headers",
    "InvalidSettingError",
    "JWTAuthorizer",
    "JWTError",
    "JWTSettings",
    "Policy",
    "PolicySource",
    "Suspension",
    "TokenBroker",
    "Usage",
    "WSGIApp",
    "check_rate_limits",
    "check_storage_uri",
    "decision_span",
    "error_body",
    "log_audit_event",
    "redacted_uri",
    "token_id",
]
