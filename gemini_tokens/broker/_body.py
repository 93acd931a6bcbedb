"""The request body: content type, size and JSON shape, before anything else is decided."""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterator
from typing import Any

import attrs

from gemini_tokens.broker._http import Refusal
from gemini_tokens.broker._types import MAX_BODY_BYTES, BrokerRequest

__all__ = ["BODY_KEYS", "ParsedBody", "parse_body", "shown"]

#: The top-level keys a body may have (renewal adds its own).
BODY_KEYS: frozenset[str] = frozenset({"config"})

#: A JSON escape that decodes to half of a surrogate pair; only a body with one is walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@attrs.frozen
class ParsedBody:
    """A body that passed the contract's shape rules.

    Attributes:
        config: The ``config`` object, or None when not given.
        extra: Any other allowed top-level key (``renew``, whose session value is a
            secret: kept out of the repr).
    """

    config: dict[str, Any] | None = None
    extra: dict[str, Any] = attrs.field(factory=dict, repr=False)


def _invalid(field: str, rule: str) -> Refusal:
    message = f"{field}: {rule}" if field else rule
    return Refusal(400, "invalid", "invalid_argument", message)


class _NotJSONNumber(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity``: Python's json reads them, JSON has none."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _refuse_constant(name: str) -> Any:
    raise _NotJSONNumber(name)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(text: str) -> str:
    """``text`` as a message may carry it: a lone surrogate as its ``\\udxxx`` escape.

    A string from JSON may hold half of a surrogate pair (``"\\ud800"``), which no UTF-8
    answer, log line or audit sink can encode.
    """
    if _is_unicode(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _strings(payload: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every key and string value of ``payload`` with its dotted path (keys shown safely).

    Iterative: a body may nest as deep as the JSON parser allows.
    """
    pending: collections.deque[tuple[str, Any]] = collections.deque([("", payload)])
    while pending:
        path, value = pending.popleft()
        if isinstance(value, str):
            yield path, value
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{shown(key)}" if path else shown(key)
                yield child, key
                pending.append((child, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def _check_unicode(text: str, payload: dict[str, Any]) -> None:
    """Refuse a lone surrogate anywhere in the body, naming where (before ``authorize``)."""
    if _SURROGATE_ESCAPE.search(text) is None:
        return
    for path, value in _strings(payload):
        if not _is_unicode(value):
            raise _invalid(
                path, "must be valid Unicode, not a lone surrogate (\\ud800 to \\udfff unpaired)"
            )


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def parse_body(request: BrokerRequest, keys: frozenset[str] = BODY_KEYS) -> ParsedBody:
    """Check the body's size, content type and JSON shape.

    An empty body is an empty request (``{}``). Otherwise it must be ``application/json``
    (UTF-8), at most ``MAX_BODY_BYTES``, and a JSON object whose keys are in ``keys``, with
    no ``NaN`` or ``Infinity`` and no lone surrogate (``"\\ud800"``) in any key or string.

    A body cut short (``body_incomplete``: the client left before sending all it announced)
    is a 400 ``body_incomplete``: what did arrive is not the request the client meant.

    Raises:
        Refusal: 413, 415 or 400, naming the field.
    """
    if request.body_incomplete:
        message = "body: incomplete (the connection ended before all of it arrived)"
        raise Refusal(400, "invalid", "body_incomplete", message)
    if request.body_too_large or len(request.body) > MAX_BODY_BYTES:
        raise Refusal(
            413, "invalid", "body_too_large", f"body: must be at most {MAX_BODY_BYTES} bytes"
        )
    if not request.body.strip():
        return ParsedBody()
    media, _, params = request.headers.get("content-type", "").partition(";")
    if media.strip().lower() != "application/json":
        raise Refusal(
            415, "invalid", "unsupported_media_type", "Content-Type: must be application/json"
        )
    charset = params.strip().lower()
    if charset and charset.replace(" ", "") not in ("charset=utf-8", 'charset="utf-8"'):
        raise Refusal(
            415, "invalid", "unsupported_media_type", "Content-Type: the charset must be utf-8"
        )
    try:
        text = request.body.decode("utf-8")
        payload = json.loads(text, parse_constant=_refuse_constant)
    except _NotJSONNumber as exc:
        raise _invalid("body", f"must be JSON; {exc.name} is not a JSON number") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _invalid("body", "must be JSON (UTF-8)") from None
    if not isinstance(payload, dict):
        raise _invalid("body", f"must be a JSON object, not {_json_type(payload)}")
    _check_unicode(text, payload)
    for key in payload:
        if key not in keys:
            allowed = ", ".join(sorted(keys))
            raise _invalid(key, f"is not a field of the request (allowed: {allowed})")
    config = payload.get("config")
    if "config" in payload and not isinstance(config, dict):
        raise _invalid("config", "must be a JSON object")
    extra = {k: v for k, v in payload.items() if k != "config"}
    return ParsedBody(config=config, extra=extra)
