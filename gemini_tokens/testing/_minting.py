"""Minting: ``POST /v1alpha/auth_tokens`` checked and answered as the service does."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gemini_tokens.testing._core import (
    DEFAULT_EXPIRE,
    DEFAULT_NEW_SESSION_EXPIRE,
    MAX_AHEAD,
    parse_time,
    snake,
)
from gemini_tokens.testing._http_answers import TYPE, bad_request, json_response, status_body
from gemini_tokens.testing._proto_json import WireError, invalid_value, read_int, unknown_field
from gemini_tokens.testing._records import IssuedToken, RecordedRequest
from gemini_tokens.testing._setup import check_covered, parse_mask, parse_setup

if TYPE_CHECKING:
    from aiohttp import web

    from gemini_tokens.testing._state import EmulatorState

__all__ = ["create_token", "mint"]

_FIELDS = (
    "name",
    "uses",
    "expireTime",
    "newSessionExpireTime",
    "bidiGenerateContentSetup",
    "fieldMask",
)
# Each AuthToken field by its lowerCamelCase and its proto (snake_case) name.
_TOKEN_FIELDS = {**{f: f for f in _FIELDS}, **{snake(f): f for f in _FIELDS}}
_UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_KEY_INVALID = "API key not valid. Please pass a valid API key."


def create_token(
    state: EmulatorState, request: web.Request, record: RecordedRequest
) -> web.Response:
    """Answer ``POST /v1alpha/auth_tokens``: check the key, mint, store the token."""
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        if request.headers.get("Authorization"):
            return json_response(
                status_body(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 "
                    "access token, login cookie or other valid authentication credential.",
                    [
                        {
                            "@type": TYPE + "ErrorInfo",
                            "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                            "domain": "googleapis.com",
                        }
                    ],
                ),
                401,
            )
        return json_response(status_body(403, _UNREGISTERED), 403)
    if key != state.api_key:
        details: list[dict[str, Any]] = [
            {
                "@type": TYPE + "ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": TYPE + "LocalizedMessage", "locale": "en-US", "message": _KEY_INVALID},
        ]
        return json_response(status_body(400, _KEY_INVALID, details), 400)
    if record.raw.strip() and record.body is None:
        return bad_request(WireError("Invalid JSON payload received. Unexpected token."))
    try:
        token = mint({} if record.body is None else record.body, state.clock.now())
    except WireError as exc:
        return bad_request(exc)
    state.tokens[token.name] = token
    return json_response(token.to_wire())


def mint(body: Any, now: dt.datetime) -> IssuedToken:
    """Validate an AuthToken request body and make the token (not yet stored).

    Raises:
        WireError: what the service answers 400 INVALID_ARGUMENT.
    """
    if not isinstance(body, Mapping):
        raise WireError("Invalid JSON payload received. Expected an object.")
    fields: dict[str, Any] = {}
    for key, value in body.items():
        name = _TOKEN_FIELDS.get(str(key))
        if name is None:
            raise unknown_field(str(key), "")
        if name in fields:
            raise invalid_value(snake(name), "given twice (as camelCase and snake_case)")
        fields[name] = value
    uses = _parse_uses(fields.get("uses"))
    expire = _parse_future(fields.get("expireTime"), "expire_time", now)
    expire = expire or now + DEFAULT_EXPIRE
    new_session = _parse_future(fields.get("newSessionExpireTime"), "new_session_expire_time", now)
    new_session = new_session or min(now + DEFAULT_NEW_SESSION_EXPIRE, expire)
    raw_setup = fields.get("bidiGenerateContentSetup")
    setup = {} if raw_setup is None else parse_setup(raw_setup, "bidi_generate_content_setup")
    mask = parse_mask(fields.get("fieldMask"))
    check_covered(setup, mask)
    return IssuedToken(
        name="auth_tokens/" + secrets.token_urlsafe(32),
        uses=uses,
        expire_time=expire,
        new_session_expire_time=new_session,
        setup=setup,
        field_mask=mask,
        created_at=now,
    )


def _parse_uses(value: Any) -> int:
    if value is None:
        return 1
    uses = read_int(value, "uses")  # proto JSON: a number or a decimal string
    if uses < 0:
        raise WireError(f"uses must be 0 (no limit) or more; got {uses}.", "uses")
    return uses


def _parse_future(value: Any, field: str, now: dt.datetime) -> dt.datetime | None:
    if value is None:
        return None
    when = parse_time(value)
    if when is None:
        raise invalid_value(
            field, f"expected an RFC 3339 timestamp (google.protobuf.Timestamp), got {value!r}"
        )
    if when <= now:
        raise WireError(f"{field} must be in the future.", field)
    if when - now >= MAX_AHEAD:
        raise WireError(f"{field} must be less than 20 hours in the future.", field)
    return when
