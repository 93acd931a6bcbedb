"""The broker's small parts on their own: headers, requests, origins, WSGI translation."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest

import gemini_tokens
from gemini_tokens.broker import (
    AuditEvent,
    BrokerRequest,
    BrokerResponse,
    Caller,
    Headers,
    Policy,
    TokenBroker,
    log_audit_event,
)
from gemini_tokens.broker._cors import Origins
from gemini_tokens.broker._wsgi import request_from_environ
from tests.broker.helpers import MODEL


def test_headers_are_case_insensitive_and_hide_their_values() -> None:
    headers = Headers([("Authorization", "Bearer secret-1"), ("X-A", "1"), ("x-a", "2")])
    assert headers["authorization"] == "Bearer secret-1"
    assert headers.get("AUTHORIZATION") == "Bearer secret-1"
    assert headers["X-A"] == "1, 2"  # repeated headers joined, as RFC 9110 allows
    assert "x-a" in headers
    assert 3 not in headers
    assert sorted(headers) == ["Authorization", "X-A"]
    assert len(headers) == 2
    assert "secret-1" not in repr(headers)
    assert headers == Headers({"authorization": "Bearer secret-1", "x-a": "1, 2"})
    assert headers != {"authorization": "Bearer secret-1"}
    with pytest.raises(TypeError):
        hash(headers)


def test_request_cookies_origin_and_repr() -> None:
    request = BrokerRequest(
        method="post",
        headers={"Cookie": "session=abc; theme=dark", "Origin": "https://a.example"},
        native=object(),
    )
    assert request.method == "POST"
    assert request.cookies == {"session": "abc", "theme": "dark"}
    assert request.origin == "https://a.example"
    assert "abc" not in repr(request)
    assert BrokerRequest(method="POST", headers={"Cookie": 'bad="'}).cookies == {}
    assert BrokerRequest(method="POST").origin is None


def test_response_helpers() -> None:
    response = BrokerResponse(status=200, headers=(("X-One", "1"),), body=b'{"a": 1}')
    assert response.header("x-one") == "1"
    assert response.header("missing") is None
    assert response.json() == {"a": 1}


@pytest.mark.parametrize(
    ("allowed", "origin", "expected"),
    [
        (["https://app.example.com"], "https://app.example.com", True),
        (["https://app.example.com/"], "https://APP.example.com", True),
        (["https://app.example.com"], "https://app.example.com:443", True),
        (["http://localhost:5173"], "http://localhost:5173", True),
        (["http://localhost:5173"], "http://localhost:5174", False),
        (["https://app.example.com"], "http://app.example.com", False),
        (["https://app.example.com"], "null", False),
        (["https://app.example.com"], "https://app.example.com/path", False),
        (["http://[::1]:8080"], "http://[::1]:8080", True),
        ("https://app.example.com", "https://app.example.com", True),
        (["*"], "https://anything.example", True),
        ([], "https://app.example.com", False),
    ],
)
def test_origins(allowed: Any, origin: str, expected: bool) -> None:
    assert Origins(allowed).is_allowed(origin) is expected


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("https://b.example", "b.example", True),
        ("https://b.example", "b.example:443", True),
        ("http://b.example:8080", "b.example:8080", True),
        ("http://b.example", "b.example:8080", False),
        ("https://b.example", "", False),
        ("not an origin", "b.example", False),
    ],
)
def test_same_host(origin: str, host: str, same: bool) -> None:
    request = BrokerRequest(method="POST", headers={"Host": host} if host else {})
    assert Origins.is_same_host(origin, request) is same


def test_bad_origins_and_preflight_without_origin() -> None:
    for bad in ("app.example.com", "ftp://a.example", "https://", "https://a.example?x=1", 5):
        with pytest.raises(gemini_tokens.ConfigurationError):
            Origins([bad])  # type: ignore[list-item]
    status, headers = Origins(["https://a.example"]).preflight(BrokerRequest(method="OPTIONS"))
    assert status == 403
    assert headers == [("Vary", "Origin")]


def _environ(**extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/token",
        "PATH_INFO": "",
        "REMOTE_ADDR": "192.0.2.1",
        "HTTP_AUTHORIZATION": "Bearer x",
        "HTTP_X_FORWARDED_FOR": "203.0.113.1",
        "wsgi.url_scheme": "https",
    }
    environ.update(extra)
    return environ


def test_wsgi_translation() -> None:
    body = b'{"config": {}}'
    request = request_from_environ(
        _environ(
            CONTENT_TYPE="application/json",
            CONTENT_LENGTH=str(len(body)),
            **{"wsgi.input": io.BytesIO(body)},
        )
    )
    assert request.path == "/token"
    assert request.subpath == ""
    assert request.body == body
    assert request.headers["authorization"] == "Bearer x"
    assert request.headers["x-forwarded-for"] == "203.0.113.1"
    assert request.headers["content-type"] == "application/json"
    assert request.client_address == "192.0.2.1"
    assert request.scheme == "https"
    # A declared length over the limit is not read.
    big = request_from_environ(_environ(CONTENT_LENGTH=str(10**6), **{"wsgi.input": None}))
    assert big.body_too_large
    # No length: read only when the server marks the input's end.
    stream = io.BytesIO(b"x" * 20000)
    ended = request_from_environ(_environ(**{"wsgi.input": stream, "wsgi.input_terminated": True}))
    assert ended.body_too_large
    small = request_from_environ(
        _environ(**{"wsgi.input": io.BytesIO(b"{}"), "wsgi.input_terminated": True})
    )
    assert small.body == b"{}"
    unknown = request_from_environ(_environ(**{"wsgi.input": io.BytesIO(b"{}")}))
    assert unknown.body == b""
    assert request_from_environ(_environ(CONTENT_LENGTH="nope")).body == b""
    sub = request_from_environ(_environ(PATH_INFO="/client.js", REQUEST_METHOD="GET"))
    assert (sub.path, sub.subpath, sub.method) == ("/token/client.js", "/client.js", "GET")


def test_the_default_sink_levels(caplog: pytest.LogCaptureFixture) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    with caplog.at_level(logging.INFO, logger="gemini_tokens.audit"):
        log_audit_event(AuditEvent(time=now, outcome="minted", reason="ok", status=200))
        log_audit_event(
            AuditEvent(time=now, outcome="upstream_error", reason="upstream_down", status=503)
        )
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.WARNING]


def test_openapi_for_a_policy_function(gemini_emulator_sync: Any) -> None:
    broker = TokenBroker(authorize=lambda r: Caller(id="a"), policy=lambda c: Policy(model=MODEL))
    schema = broker.openapi()["paths"]["/token"]["post"]["requestBody"]["content"]
    config = schema["application/json"]["schema"]["properties"]["config"]
    assert config["type"] == "object"
    assert "properties" not in config
    assert "a policy function" in repr(broker)


def test_policy_defaults_and_choices_from_camel_case() -> None:
    from gemini_tokens.broker._policy import check_choices

    policy = Policy(model=MODEL, client_may_set={"speech_config": ("Kore", "Puck")})
    assert policy.create_options()["live_connect_constraints"] == {"model": MODEL}
    assert policy.create_options()["lock_additional_fields"] is None
    assert check_choices(policy, {"speechConfig": "Kore"}) == {"speech_config": "Kore"}
    with pytest.raises(gemini_tokens.ValidationError, match="given twice"):
        check_choices(policy, {"speechConfig": "Kore", "speech_config": "Puck"})
    assert Policy().create_options()["live_connect_constraints"] is None
    for bad in ({"config": "x"}, {"client_may_set": "x"}, {"lock_additional_fields": "model"}):
        with pytest.raises(gemini_tokens.ValidationError):
            Policy(**bad)
    with pytest.raises(gemini_tokens.ValidationError, match="not a config field"):
        Policy(client_may_set={"not-an-identifier": [1]})
