"""The HTTP contract as OpenAPI 3.1, from what a broker was given (its policy, renewal,
budgets, suspensions).

It knows nothing of `TokenBroker` itself: the broker (``broker.openapi()``) and the FastAPI
router hand it ``broker.policy``, ``broker.renewal_enabled``, the budgets
(``broker.live_minutes + broker.global_live_minutes``) and ``broker.checks_suspensions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gemini_tokens import __version__, status_name
from gemini_tokens.broker._policy import Policy
from gemini_tokens.broker._types import MAX_BODY_BYTES

__all__ = ["openapi_document", "operation", "usage_operation"]

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "status", "message"],
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status."},
                "status": {"type": "string", "description": "The google.rpc.Code name."},
                "message": {"type": "string", "description": "What went wrong, for people."},
            },
        }
    },
}

_TOKEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "liveUrl", "serverTime"],
    "properties": {
        "name": {"type": "string", "description": "The token (auth_tokens/...): a secret."},
        "expireTime": {"type": "string", "format": "date-time"},
        "newSessionExpireTime": {"type": "string", "format": "date-time"},
        "uses": {"type": "integer"},
        "bidiGenerateContentSetup": {"type": "object", "description": "The locked setup."},
        "fieldMask": {"type": "string", "description": "The locked fields, comma-separated."},
        "liveUrl": {"type": "string", "description": "The Live WebSocket URL (a secret)."},
        "serverTime": {
            "type": "string",
            "format": "date-time",
            "description": "The broker's clock: judge expiry against it, not the device's.",
        },
    },
}

_SESSION_SCHEMA: dict[str, Any] = {
    "type": "string",
    "description": "The conversation (opaque, signed): send it as renew for the next token.",
}

_BUDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["remainingMinutes", "resetsAt"],
    "description": "The tightest Live-minute budget after this token's charge.",
    "properties": {
        "remainingMinutes": {"type": "integer", "minimum": 0},
        "resetsAt": {
            "type": "string",
            "format": "date-time",
            "description": "When a minute next comes back.",
        },
    },
}

_SUSPENSION_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "required": ["reason", "until"],
    "properties": {
        "reason": {"type": "string"},
        "until": {"type": ["string", "null"], "format": "date-time"},
    },
}

_USAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["remainingMinutes", "resetsAt", "budgets", "suspended"],
    "properties": {
        "remainingMinutes": {
            "type": ["integer", "null"],
            "description": "The tightest budget's minutes left (null without budgets).",
        },
        "resetsAt": {"type": ["string", "null"], "format": "date-time"},
        "budgets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["limit", "scope", "remainingMinutes", "resetsAt"],
                "properties": {
                    "limit": {"type": "string", "description": "Such as '60 per 1 day'."},
                    "scope": {"enum": ["caller", "global"]},
                    "remainingMinutes": {"type": "integer", "minimum": 0},
                    "resetsAt": {"type": "string", "format": "date-time"},
                },
            },
        },
        "suspended": _SUSPENSION_SCHEMA,
    },
}

_ERRORS = {
    400: "A field not allowed, a value outside its set, or a body that is not a JSON object.",
    401: "The caller is not signed in (authorize raised Denied(401)).",
    403: "A foreign origin, or authorize raised Denied(403).",
    405: "Not POST.",
    413: f"The body is over {MAX_BODY_BYTES} bytes.",
    415: "A body that is not application/json.",
    429: "The caller's or the global rate limit; see Retry-After.",
    500: "The server's own fault (a bad key, a policy refused); a generic message.",
    503: "The token service or the limiter is down or busy; see Retry-After.",
}


def _config_schema(policy: object) -> dict[str, Any]:
    if not isinstance(policy, Policy):
        return {
            "type": "object",
            "description": "Config fields the caller's policy lets the client choose.",
        }
    properties: dict[str, Any] = {}
    for name, choice in policy.client_may_set.items():
        if choice.values is not None:
            properties[name] = {"enum": list(choice.values)}
        else:
            properties[name] = {"type": "number", "minimum": choice.low, "maximum": choice.high}
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "description": "The config fields the client may choose (snake_case or camelCase).",
    }


def _error(code: int, text: str) -> dict[str, Any]:
    return {
        "description": f"{status_name(code)}: {text}",
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    }


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}


def operation(
    policy: object, renewal: bool, budgets: Sequence[str] = (), suspensions: bool = False
) -> dict[str, Any]:
    """The token endpoint's OpenAPI operation (summary, body, responses).

    ``policy`` is a broker's `Policy` (its choices become the body's schema) or its policy
    function; ``renewal`` whether the broker renews conversations; ``budgets`` its
    Live-minute budgets as `limits` writes them (``60 per 1 day``: the 200's ``budget``
    and the 429 ``budget_exhausted``); ``suspensions`` whether it checks suspensions (the
    403 ``suspended``).
    """
    token_schema, body_properties = _TOKEN_SCHEMA, {"config": _config_schema(policy)}
    extra: dict[str, Any] = {}
    if renewal:
        extra["session"] = _SESSION_SCHEMA
        body_properties["renew"] = {
            **_SESSION_SCHEMA,
            "description": "An earlier answer's session: mint the conversation's next token "
            "(not with config). 403 past Policy.max_session_minutes.",
        }
    if budgets:
        extra["budget"] = _BUDGET_SCHEMA
    if extra:
        token_schema = {
            **_TOKEN_SCHEMA,
            "properties": {**_TOKEN_SCHEMA["properties"], **extra},
        }
    responses: dict[str, Any] = {
        "200": {
            "description": "A token. Sent with Cache-Control: no-store.",
            "content": {"application/json": {"schema": token_schema}},
        }
    }
    errors = dict(_ERRORS)
    if suspensions:
        errors[403] += " Or the caller is suspended (audit reason suspended; the message says why)."
    if budgets:
        errors[429] += (
            f" Or no Live minutes are left (audit reason budget_exhausted; budgets: "
            f"{', '.join(budgets)}): Retry-After is when a minute comes back."
        )
    for code, text in errors.items():
        entry = _error(code, text)
        if code in (429, 503):
            entry["headers"] = _RETRY_AFTER
        responses[str(code)] = entry
    return {
        "summary": "Mint an ephemeral token for the Gemini Live API",
        "description": (
            'POST with an optional JSON body {"config": {...}} naming only the fields the '
            "policy lets the client set. Everything else comes from the server's policy."
        ),
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": body_properties,
                    }
                }
            },
        },
        "responses": responses,
    }


def usage_operation() -> dict[str, Any]:
    """The ``GET <path>/usage`` operation: the signed-in caller's minutes and suspension."""
    return {
        "summary": "The signed-in caller's Live minutes left and suspension",
        "description": (
            "The caller is whoever authorize says. Same-origin pages only: no CORS "
            "preflight is answered (a page elsewhere reads budget from its token answers)."
        ),
        "responses": {
            "200": {
                "description": "Every budget's minutes left, and any suspension.",
                "content": {"application/json": {"schema": _USAGE_SCHEMA}},
            },
            "401": _error(401, _ERRORS[401]),
            "403": _error(403, "A foreign origin, or authorize raised Denied(403)."),
            "405": _error(405, "Not GET."),
            "503": {
                **_error(503, "The storage is down; see Retry-After."),
                "headers": _RETRY_AFTER,
            },
        },
    }


def openapi_document(
    policy: object,
    renewal: bool,
    path: str,
    budgets: Sequence[str] = (),
    suspensions: bool = False,
) -> dict[str, Any]:
    """A whole OpenAPI 3.1 document with the token endpoint at ``path`` (see `operation`),
    and ``<path>/usage`` when the broker checks suspensions (it has budgets, or
    ``suspensions=True``)."""
    op = operation(policy, renewal, budgets, suspensions)
    route = "/" + path.strip("/")
    paths: dict[str, Any] = {route: {"post": {"operationId": "mint_token", **op}}}
    if suspensions:
        paths[route.rstrip("/") + "/usage"] = {
            "get": {"operationId": "get_usage", **usage_operation()}
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "gemini-tokens broker", "version": __version__},
        "paths": paths,
    }
