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


# --- errors across process boundaries: pickle, copy, a JSON result backend --------------------


def _public_exception_classes() -> list[type[BaseException]]:
    import gemini_tokens._errors as errors

    found = [getattr(errors, name) for name in errors.__all__]
    return [c for c in found if isinstance(c, type) and issubclass(c, BaseException)]


def _samples() -> dict[type[BaseException], BaseException]:
    """One instance of every public exception, every field away from its default."""
    status_fields: dict[str, Any] = {
        "status_code": 429,
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
        "reason": "RATE_LIMIT_EXCEEDED",
        "retry_after": 7.5,
    }
    samples: dict[type[BaseException], BaseException] = {
        gemini_tokens.GeminiTokensError: gemini_tokens.GeminiTokensError("base"),
        gemini_tokens.ConfigurationError: gemini_tokens.ConfigurationError("no key"),
        gemini_tokens.ValidationError: gemini_tokens.ValidationError("uses", "must be >= 0"),
        gemini_tokens.APIError: gemini_tokens.APIError("went wrong", attempts=2),
        gemini_tokens.APIConnectionError: APIConnectionError("refused"),
        gemini_tokens.APITimeoutError: gemini_tokens.APITimeoutError("slow", attempts=3),
        gemini_tokens.CertificateVerificationError: gemini_tokens.CertificateVerificationError(
            "certificate of 127.0.0.1 could not be verified", attempts=1
        ),
        gemini_tokens.ProxyAuthenticationError: gemini_tokens.ProxyAuthenticationError(
            "the proxy http://127.0.0.1:3128 answered 407", attempts=1
        ),
        InvalidResponseError: InvalidResponseError("no name", status_code=201, attempts=1),
    }
    for cls in (
        APIStatusError,
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        RateLimitError,
        ServerError,
    ):
        samples[cls] = cls(f"{cls.__name__} message", **status_fields)
    samples[APIConnectionError].attempts = 3  # as the retry loop sets it, after the fact
    samples[ServerError].attempts = 2
    return samples


def _fields(exc: BaseException) -> dict[str, Any]:
    names = ("message", "status_code", "status", "details", "reason", "retry_after")
    names += ("attempts", "field", "rule", "field_violations")
    return {
        "type": type(exc),
        "args": exc.args,
        "str": str(exc),
        "repr": repr(exc),
        "vars": vars(exc),
        **{name: getattr(exc, name) for name in names if hasattr(exc, name)},
    }


def test_every_public_exception_has_a_round_trip_sample() -> None:
    assert set(_samples()) == set(_public_exception_classes())
    exported = {getattr(gemini_tokens, n) for n in gemini_tokens.__all__}
    assert set(_public_exception_classes()) <= exported


def _round_trips() -> dict[str, Any]:
    import copy
    import pickle

    trips: dict[str, Any] = {
        f"pickle-{protocol}": lambda e, p=protocol: pickle.loads(pickle.dumps(e, protocol=p))
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1)
    }
    trips["copy"] = copy.copy
    trips["deepcopy"] = copy.deepcopy
    # What Celery's JSON result backend does: the class by name, rebuilt from JSON args.
    trips["json-args"] = lambda e: type(e)(*json.loads(json.dumps(e.args)))
    return trips


@pytest.mark.parametrize("trip", list(_round_trips()))
@pytest.mark.parametrize("cls", _public_exception_classes(), ids=lambda c: c.__name__)
def test_exceptions_survive_pickle_and_copy_with_every_field(
    cls: type[BaseException], trip: str
) -> None:
    original = _samples()[cls]
    copied = _round_trips()[trip](original)
    assert copied is not original
    assert _fields(copied) == _fields(original)
    assert isinstance(copied, GeminiTokensError)


def test_retry_after_and_attempts_survive_a_pickle_of_a_real_error() -> None:
    import pickle

    body = status_body(
        429,
        "RESOURCE_EXHAUSTED",
        f"quota for key {API_KEY} exceeded",
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"},
    ).encode()
    error = error_from_response(429, body, redact=(API_KEY,))
    error.attempts = 3
    data = pickle.dumps(error)
    assert API_KEY.encode() not in data  # redacted before it was ever stored
    copied = pickle.loads(data)
    assert type(copied) is RateLimitError
    assert (copied.retry_after, copied.attempts, copied.status) == (12, 3, "RESOURCE_EXHAUSTED")
    assert str(copied) == str(error)
