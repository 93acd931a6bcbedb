"""The HTTP contract as OpenAPI 3.1, from what a broker was given (its policy, renewal).

It knows nothing of `TokenBroker` itself: the broker (``broker.openapi()``) and the FastAPI
router hand it ``broker.policy`` and ``broker.renewal_enabled``.
"""

from __future__ import annotations

from typing import Any

from gemini_tokens import __version__, status_name
from gemini_tokens.broker._policy import Policy
from gemini_tokens.broker._types import MAX_BODY_BYTES

__all__ = ["openapi_document", "operation"]

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


def operation(policy: object, renewal: bool) -> dict[str, Any]:
    """The token endpoint's OpenAPI operation (summary, body, responses).

    ``policy`` is a broker's `Policy` (its choices become the body's schema) or its policy
    function; ``renewal`` whether the broker renews conversations.
    """
    retry_after = {
        "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
    }
    token_schema, body_properties = _TOKEN_SCHEMA, {"config": _config_schema(policy)}
    if renewal:
        token_schema = {
            **_TOKEN_SCHEMA,
            "properties": {**_TOKEN_SCHEMA["properties"], "session": _SESSION_SCHEMA},
        }
        body_properties["renew"] = {
            **_SESSION_SCHEMA,
            "description": "An earlier answer's session: mint the conversation's next token "
            "(not with config). 403 past Policy.max_session_minutes.",
        }
    responses: dict[str, Any] = {
        "200": {
            "description": "A token. Sent with Cache-Control: no-store.",
            "content": {"application/json": {"schema": token_schema}},
        }
    }
    for code, text in _ERRORS.items():
        entry: dict[str, Any] = {
            "description": f"{status_name(code)}: {text}",
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
        if code in (429, 503):
            entry["headers"] = retry_after
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


def openapi_document(policy: object, renewal: bool, path: str) -> dict[str, Any]:
    """A whole OpenAPI 3.1 document with the token endpoint at ``path`` (see `operation`)."""
    op = operation(policy, renewal)
    return {
        "openapi": "3.1.0",
        "info": {"title": "gemini-tokens broker", "version": __version__},
        "paths": {"/" + path.strip("/"): {"post": {"operationId": "mint_token", **op}}},
    }
