"""The service's answer -> an `EphemeralToken`: the last step of the data path.

The answer is the AuthToken resource (wire.md, "Response"). Only ``name`` is certain; every
other field falls back to what was sent. A token name is a secret and is checked before it
is kept: it is shown in reprs (as ``auth_tokens/***``) and handed to browsers, so a hostile
or broken server must not smuggle control characters or megabytes through it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import Any

from gemini_tokens._converters import setup_from_wire
from gemini_tokens._errors import InvalidResponseError, ValidationError
from gemini_tokens._models import EphemeralToken, TokenRequest
from gemini_tokens._times import parse_time

__all__ = ["MAX_NAME_LENGTH", "parse_time", "parse_token"]

#: The longest token name accepted (the service's are about 60 characters).
MAX_NAME_LENGTH = 256
_NAME_PREFIX = "auth_tokens/"


def _time(payload: Mapping[str, Any], sent: Mapping[str, Any], key: str) -> dt.datetime | None:
    """The answer's time ``key``; None (the request's) when it is missing or what was sent."""
    text = payload.get(key)
    return None if text == sent.get(key) else parse_time(text)


def _proto_int(value: Any) -> int | None:
    """An integer as proto3 JSON writes it: a number or a decimal string; else None."""
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] == "-" else text
        return int(text) if digits.isascii() and digits.isdigit() and len(text) < 20 else None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _check_name(name: Any, status: int) -> str:
    """The token name, or `InvalidResponseError` (whose message never quotes it)."""
    if not isinstance(name, str) or not name:
        raise InvalidResponseError(
            f"the service answered {status} without a token name", status_code=status
        )
    if len(name) > MAX_NAME_LENGTH:
        problem = f"is longer than {MAX_NAME_LENGTH} characters"
    elif not (name.isascii() and name.isprintable()) or " " in name:
        problem = "is not printable ASCII"
    elif not name.startswith(_NAME_PREFIX) or len(name) == len(_NAME_PREFIX):
        problem = f"does not have the form {_NAME_PREFIX}<id>"
    else:
        return name
    raise InvalidResponseError(
        f"the service answered {status} with a token name that {problem}; not a token",
        status_code=status,
    )


def parse_token(
    payload: Any,
    request: TokenRequest,
    sent: Mapping[str, Any],
    *,
    status: int,
    base_url: str,
    api_version: str,
) -> EphemeralToken:
    """The token in a 2xx answer's JSON.

    Args:
        payload: The answer, parsed JSON.
        request: The request it answers.
        sent: The body that was sent (`_converters.body_for`): its setup and mask stand in
            for what the answer does not repeat.
        status: The answer's HTTP status, for the error.
        base_url: Where it was minted (for `EphemeralToken.live_url`).
        api_version: The API version it was minted on.

    Raises:
        InvalidResponseError: the answer is not a token (not an object, no usable name).
    """
    if not isinstance(payload, Mapping):
        raise InvalidResponseError(
            f"the service answered {status} without a token (its JSON is not an object)",
            status_code=status,
        )
    name = _check_name(payload.get("name"), status)
    constraints = request.constraints
    setup = sent.get("bidiGenerateContentSetup")
    echo = payload.get("bidiGenerateContentSetup")
    if echo == setup:
        # The usual answer repeats what was sent: that is already parsed (the request), and
        # the token keeps the constraints as the caller wrote them (a bare model name, not
        # the wire's "models/..."). Not a cache, a comparison. Parsing the echo again would
        # cost about 5 µs, 3 % of AsyncClient's CPU per call (docs/performance.md, 2026-12-01).
        pass
    elif isinstance(echo, Mapping):
        # An odd echo must not lose a minted token: keep what was asked for then.
        with contextlib.suppress(ValidationError, TypeError, ValueError, RecursionError):
            constraints, setup = setup_from_wire(echo), echo
    mask = payload.get("fieldMask")
    if not isinstance(mask, str):
        mask = sent.get("fieldMask")
    # The paths, stripped, without empty ones.
    locked = tuple(filter(None, map(str.strip, mask.split(",")))) if isinstance(mask, str) else None
    uses = _proto_int(payload.get("uses"))
    return EphemeralToken(
        name=name,
        expire_time=_time(payload, sent, "expireTime") or request.expire_time,
        new_session_expire_time=(
            _time(payload, sent, "newSessionExpireTime") or request.new_session_expire_time
        ),
        uses=request.uses if uses is None else uses,
        live_connect_constraints=constraints,
        locked_fields=locked,
        setup_json=setup,
        base_url=base_url,
        api_version=api_version,
    )
