"""Error bodies from the service (and from proxies) become typed exceptions (aioresponses)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aioresponses import aioresponses

import gemini_tokens
from gemini_tokens import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    GeminiTokensError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from gemini_tokens._errors import error_from_response

from ._aioresponses_compat import mocked_responses
from .conftest import API_KEY

BASE = "http://127.0.0.1:9"  # never reached: aioresponses intercepts every request
URL = f"{BASE}/v1alpha/auth_tokens"


def status_body(code: int, status: str, message: str, *details: dict[str, Any]) -> str:
    return json.dumps(
        {"error": {"code": code, "message": message, "status": status, "details": list(details)}}
    )


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with mocked_responses() as m:
        yield m


async def _create(**options: Any) -> gemini_tokens.EphemeralToken:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=BASE, max_retries=0) as client:
        return await client.create(**options)


CASES: list[tuple[int, str, type[APIStatusError], dict[str, Any]]] = [
    (
        400,
        status_body(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
        ),
        AuthenticationError,
        {"status": "INVALID_ARGUMENT", "reason": "API_KEY_INVALID"},
    ),
    (
        400,
        status_body(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'expire_time'",
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "expire_time", "description": "too far ahead"}],
            },
        ),
        BadRequestError,
        {"status": "INVALID_ARGUMENT", "reason": None},
    ),
    (
        401,
        status_body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
        AuthenticationError,
        {"status": "UNAUTHENTICATED"},
    ),
    (
        403,
        status_body(403, "PERMISSION_DENIED", "Generative Language API has not been used"),
        PermissionDeniedError,
        {"status": "PERMISSION_DENIED"},
    ),
    (404, status_body(404, "NOT_FOUND", ""), NotFoundError, {"status": "NOT_FOUND"}),
    (
        429,
        status_body(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded",
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"},
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaMetric": "m", "quotaId": "q"}],
            },
        ),
        RateLimitError,
        {"status": "RESOURCE_EXHAUSTED", "retry_after": 1.5},
    ),
    (500, status_body(500, "INTERNAL", "Internal error"), ServerError, {"status": "INTERNAL"}),
    (
        503,
        "<html><body><h1>503 Service Unavailable</h1></body></html>",
        ServerError,
        {"status": None},
    ),
    (502, "", ServerError, {"status": None, "message": "empty response body"}),
    (418, "I'm a teapot", APIStatusError, {"status": None}),
]


@pytest.mark.parametrize(
    ("code", "body", "cls", "fields"), CASES, ids=[f"{c[0]}-{c[2].__name__}" for c in CASES]
)
async def test_status_errors(
    mocked: aioresponses,
    code: int,
    body: str,
    cls: type[APIStatusError],
    fields: dict[str, Any],
) -> None:
    content_type = "text/html" if body.startswith("<") else "application/json"
    mocked.post(URL, status=code, body=body, content_type=content_type)
    with pytest.raises(cls) as info:
        await _create()
    error = info.value
    assert type(error) is cls
    assert error.status_code == code
    assert error.attempts == 1
    for name, value in fields.items():
        assert getattr(error, name) == value, name
    assert error.message  # a useful message even for HTML or an empty body
    text = str(error)
    assert str(code) in text
    assert API_KEY not in text
    assert API_KEY not in repr(error)
    assert isinstance(error, GeminiTokensError)


def test_html_body_message_says_not_json() -> None:
    error = error_from_response(502, b"<html>Bad gateway</html>", content_type="text/html")
    assert "non-JSON" in error.message
    assert "text/html" in error.message


def test_field_violations_and_details_are_exposed() -> None:
    body = status_body(
        400,
        "INVALID_ARGUMENT",
        "bad",
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "uses", "description": "must be >= 0"}],
        },
        {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
    ).encode()
    error = error_from_response(400, body)
    assert error.field_violations == [("uses", "must be >= 0")]
    assert len(error.details) == 2


def test_echoed_secret_is_redacted() -> None:
    body = status_body(400, "INVALID_ARGUMENT", f"key {API_KEY} is bad").encode()
    error = error_from_response(400, body, redact=(API_KEY,))
    assert API_KEY not in str(error)
    assert "***" in error.message


def test_retry_after_header_wins_over_retry_info() -> None:
    body = status_body(
        429,
        "RESOURCE_EXHAUSTED",
        "slow down",
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"},
    ).encode()
    assert error_from_response(429, body, retry_after_header=2.0).retry_after == 2.0
    assert error_from_response(429, body).retry_after == 9.0


@pytest.mark.parametrize(
    "payload",
    [
        "not json at all",
        json.dumps({"expireTime": "2031-01-01T00:00:00Z"}),
        json.dumps({"name": ""}),
        json.dumps({"name": 7}),
        json.dumps(["auth_tokens/x"]),
    ],
)
async def test_2xx_without_a_token(mocked: aioresponses, payload: str) -> None:
    mocked.post(URL, status=200, body=payload, content_type="application/json")
    with pytest.raises(InvalidResponseError):
        await _create()


async def test_unknown_response_fields_are_tolerated(mocked: aioresponses) -> None:
    mocked.post(
        URL,
        status=200,
        payload={
            "name": "auth_tokens/xyz",
            "uses": 4,
            "expireTime": "2031-05-06T07:08:09.123456789Z",
            "somethingNew": {"a": 1},
            "bidiGenerateContentSetup": {
                "model": "models/m",
                "generationConfig": {"temperature": 0.3, "fancyNewKnob": 1},
                "brandNewField": True,
            },
            "fieldMask": "model,generationConfig.temperature",
        },
    )
    token = await _create(uses=4)
    assert token.uses == 4
    assert token.expire_time is not None
    assert token.expire_time.year == 2031
    assert token.expire_time.microsecond == 123456
    assert token.locked_fields == ("model", "generationConfig.temperature")
    assert token.live_connect_constraints is not None
    assert token.live_connect_constraints.model == "models/m"
    assert token.live_connect_constraints.config is not None
    assert token.live_connect_constraints.config.temperature == 0.3


async def test_connection_error_is_typed(mocked: aioresponses) -> None:
    import aiohttp

    mocked.post(URL, exception=aiohttp.ClientConnectionError("boom"))
    with pytest.raises(APIConnectionError) as info:
        await _create()
    assert "boom" in str(info.value)
