"""The broker's decision (`TokenBroker.handle`) against the emulator: the HTTP contract."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.parse
from typing import Any

import pytest

import gemini_tokens
from gemini_tokens.broker import (
    MAX_BODY_BYTES,
    AuditEvent,
    BrokerRequest,
    Caller,
    Denied,
    Policy,
    TokenBroker,
)
from gemini_tokens.testing import Emulator
from tests.broker.helpers import (
    MODEL,
    ORIGIN,
    authorize,
    close_brokers,  # noqa: F401  (autouse fixtures)
    fast_retries,  # noqa: F401
    make_broker,
    policy,
    post,
)


def make(emu: Emulator, **options: Any) -> TokenBroker:
    return make_broker(**options)


def error_of(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "status", "message"}
    assert error["code"] == response.status
    return error


# --- 200 ------------------------------------------------------------------------------------


async def test_mints_a_token_locked_to_the_policy(gemini_emulator: Emulator) -> None:
    broker = make(gemini_emulator)
    response = await broker.handle(post())
    assert response.status == 200
    assert response.header("Cache-Control") == "no-store"
    assert response.header("Content-Type") == "application/json"
    data = response.json()
    issued = gemini_emulator.token(data["name"])
    assert issued is not None
    assert data["uses"] == 2
    assert data["bidiGenerateContentSetup"] == {
        "model": f"models/{MODEL}",
        "generationConfig": {"responseModalities": ["AUDIO"]},
    }
    assert set(data["fieldMask"].split(",")) == {"model", "generationConfig.responseModalities"}
    assert urllib.parse.unquote(data["liveUrl"]).endswith(f"access_token={data['name']}")
    assert data["serverTime"].endswith("Z")
    expected = {"name", "expireTime", "newSessionExpireTime", "uses", "bidiGenerateContentSetup"}
    assert expected <= set(data)
    assert gemini_emulator.api_key not in response.body.decode()
    await broker.aclose()


async def test_the_answer_is_token_to_dict_plus_live_url_and_server_time(
    gemini_emulator: Emulator,
) -> None:
    broker = make(gemini_emulator, policy=Policy(model=MODEL))
    data = (await broker.handle(post())).json()
    rest = {k: v for k, v in data.items() if k not in ("liveUrl", "serverTime")}
    assert rest["name"].startswith("auth_tokens/")
    assert "fieldMask" not in rest  # lock_additional_fields=None: the whole setup locked
    assert rest["bidiGenerateContentSetup"] == {"model": f"models/{MODEL}"}
    await broker.aclose()


async def test_client_choices_within_the_policy_are_minted(gemini_emulator: Emulator) -> None:
    broker = make(gemini_emulator)
    for temperature in (0.0, 0.5, 1, 1.0):
        body = {"config": {"temperature": temperature, "speech_config": "Puck"}}
        response = await broker.handle(post(body))
        assert response.status == 200, response.body
        setup = response.json()["bidiGenerateContentSetup"]["generationConfig"]
        assert setup["temperature"] == temperature
        voice = setup["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"]
        assert voice == "Puck"
        assert setup["responseModalities"] == ["AUDIO"]
    # camelCase, as a browser writes it, names the same field.
    response = await broker.handle(post({"config": {"speechConfig": "Kore"}}))
    assert response.status == 200
    await broker.aclose()


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"config": {"top_k": 3}}, "config.top_k", "may not be set by the client"),
        ({"config": {"model": "other"}}, "config.model", "may not be set by the client"),
        ({"config": {"response_modalities": ["TEXT"]}}, "config.response_modalities", "may not"),
        ({"config": {"temperature": 1.01}}, "config.temperature", "from 0 to 1"),
        ({"config": {"temperature": -0.1}}, "config.temperature", "from 0 to 1"),
        ({"config": {"temperature": True}}, "config.temperature", "from 0 to 1"),
        ({"config": {"temperature": "0.5"}}, "config.temperature", "from 0 to 1"),
        ({"config": {"speech_config": "Zephyr"}}, "config.speech_config", "one of: 'Kore'"),
        ({"config": {"speech_config": ["Kore"]}}, "config.speech_config", "one of"),
        ({"config": []}, "config", "must be a JSON object"),
        ({"config": "x"}, "config", "must be a JSON object"),
        ({"uses": 5}, "uses", "is not a field of the request"),
        ([1, 2], "body", "must be a JSON object, not an array"),
        ("text", "body", "not a string"),
    ],
)
async def test_refused_choices_name_the_field_and_mint_nothing(
    gemini_emulator: Emulator, body: Any, field: str, rule: str
) -> None:
    broker = make(gemini_emulator)
    response = await broker.handle(post(body))
    assert response.status == 400
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith(f"{field}: ")
    assert rule in error["message"]
    assert gemini_emulator.tokens == []
    await broker.aclose()


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "words"),
    [
        (b"{not json", "application/json", 400, "body: must be JSON"),
        (b"\xff\xfe{}", "application/json", 400, "body: must be JSON"),
        (b'{"config": {}}', "text/plain", 415, "Content-Type: must be application/json"),
        (b'{"config": {}}', None, 415, "Content-Type"),
        (b'{"config": {}}', "application/json; charset=latin-1", 415, "utf-8"),
        (b" " * (MAX_BODY_BYTES + 1), "application/json", 413, f"at most {MAX_BODY_BYTES}"),
    ],
)
async def test_body_rules(
    gemini_emulator: Emulator, raw: bytes, content_type: str | None, status: int, words: str
) -> None:
    broker = make(gemini_emulator)
    response = await broker.handle(post(raw=raw, content_type=content_type))
    assert response.status == status
    assert words in error_of(response)["message"]
    assert gemini_emulator.tokens == []
    await broker.aclose()


async def test_body_limits_and_accepted_forms(gemini_emulator: Emulator) -> None:
    broker = make(gemini_emulator)
    # Exactly 16 KiB of JSON is accepted; the adapters' "not read whole" flag is a 413.
    padded = b'{"config": {}}'.ljust(MAX_BODY_BYTES, b" ")
    assert (await broker.handle(post(raw=padded))).status == 200
    too_large = BrokerRequest(method="POST", body_too_large=True)
    assert (await broker.handle(too_large)).status == 413
    # An empty body needs no content type; charset=utf-8 is fine.
    assert (await broker.handle(post(content_type=None))).status == 200
    utf8 = post(raw=b"{}", content_type="application/json; charset=UTF-8")
    assert (await broker.handle(utf8)).status == 200
    await broker.aclose()


async def test_other_methods_are_405_and_other_paths_404(gemini_emulator: Emulator) -> None:
    broker = make(gemini_emulator)
    for method in ("GET", "PUT", "DELETE"):
        response = await broker.handle(BrokerRequest(method=method, path="/token"))
        assert response.status == 405
        assert response.header("Allow") == "POST, OPTIONS"
        assert error_of(response)["status"] == "UNIMPLEMENTED"
    missing = await broker.handle(BrokerRequest(method="POST", subpath="/nope"))
    assert missing.status == 404
    assert error_of(missing)["status"] == "NOT_FOUND"
    assert (await broker.handle(post())).status == 200  # and "/" is the endpoint too
    slash = await broker.handle(
        BrokerRequest(method="POST", subpath="/", headers={"Authorization": "Bearer alice-token"})
    )
    assert slash.status == 200
    await broker.aclose()


# --- authorize ----------------------------------------------------------------------------


async def test_denied_callers(gemini_emulator: Emulator) -> None:
    broker = make(gemini_emulator)
    anonymous = await broker.handle(post(user=None))
    assert anonymous.status == 401
    assert error_of(anonymous) == {
        "code": 401,
        "status": "UNAUTHENTICATED",
        "message": "sign in first",
    }
    banned = await broker.handle(post(user="eve"))
    assert banned.status == 403
    assert error_of(banned)["status"] == "PERMISSION_DENIED"
    assert error_of(banned)["message"] == "eve is banned"
    assert gemini_emulator.tokens == []
    await broker.aclose()


async def test_sync_authorize_runs_off_the_event_loop(gemini_emulator: Emulator) -> None:
    threads: list[threading.Thread] = []

    def sync_authorize(request: BrokerRequest) -> Caller:
        threads.append(threading.current_thread())
        return Caller(id="sync-user")

    broker = make(gemini_emulator, authorize=sync_authorize)
    assert (await broker.handle(post())).status == 200
    assert threads
    assert threads[0] is not threading.current_thread()
    await broker.aclose()


@pytest.mark.parametrize("kind", ["raises", "returns"])
async def test_a_broken_authorize_is_a_generic_500_with_an_error_log(
    gemini_emulator: Emulator, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    async def broken(request: BrokerRequest) -> Any:
        if kind == "raises":
            raise RuntimeError("database password is hunter2")
        return "alice"

    broker = make(gemini_emulator, authorize=broken)
    with caplog.at_level(logging.ERROR, logger="gemini_tokens.broker"):
        response = await broker.handle(post())
    assert response.status == 500
    error = error_of(response)
    assert error["status"] == "INTERNAL"
    assert "hunter2" not in response.body.decode()
    assert "not your fault" in error["message"]
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert gemini_emulator.tokens == []
    await broker.aclose()


async def test_policy_function_per_caller(gemini_emulator: Emulator) -> None:
    seen: list[str] = []

    async def per_plan(caller: Caller) -> Policy:
        seen.append(caller.id)
        uses = 5 if caller.attributes["plan"] == "pro" else 1
        return policy(uses=uses)

    def sync_per_plan(caller: Caller) -> Policy:
        if caller.id == "bob":
            raise Denied(403, "upgrade to talk")
        return policy(uses=3)

    broker = make(gemini_emulator, policy=per_plan)
    assert (await broker.handle(post(user="alice"))).json()["uses"] == 5
    assert (await broker.handle(post(user="bob"))).json()["uses"] == 1
    assert seen == ["alice", "bob"]
    await broker.aclose()

    broker = make(gemini_emulator, policy=sync_per_plan)
    assert (await broker.handle(post(user="alice"))).json()["uses"] == 3
    refused = await broker.handle(post(user="bob"))
    assert refused.status == 403
    assert error_of(refused)["message"] == "upgrade to talk"
    await broker.aclose()


async def test_a_policy_function_returning_garbage_is_500(gemini_emulator: Emulator) -> None:
    broker = make(gemini_emulator, policy=lambda caller: {"model": MODEL})
    response = await broker.handle(post())
    assert response.status == 500
    await broker.aclose()


# --- CORS ---------------------------------------------------------------------------------


async def test_preflight_for_allowed_origins_only(gemini_emulator: Emulator) -> None:
    broker = make(gemini_emulator)
    ask = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    ok = await broker.handle(BrokerRequest(method="OPTIONS", headers=ask))
    assert ok.status == 204
    assert ok.header("Access-Control-Allow-Origin") == ORIGIN
    assert ok.header("Access-Control-Allow-Methods") == "POST"
    assert ok.header("Access-Control-Allow-Headers") == "authorization, content-type"
    assert ok.header("Access-Control-Allow-Credentials") == "true"
    assert ok.header("Vary") == "Origin"
    foreign = await broker.handle(
        BrokerRequest(method="OPTIONS", headers={**ask, "Origin": "https://evil.example"})
    )
    assert foreign.status == 403
    assert foreign.header("Access-Control-Allow-Origin") is None
    assert foreign.header("Vary") == "Origin"
    wrong_method = await broker.handle(
        BrokerRequest(method="OPTIONS", headers={**ask, "Access-Control-Request-Method": "PUT"})
    )
    assert wrong_method.status == 403
    await broker.aclose()


async def test_foreign_origin_post_is_refused_before_authorize(gemini_emulator: Emulator) -> None:
    calls: list[BrokerRequest] = []

    async def counting(request: BrokerRequest) -> Caller:
        calls.append(request)
        return await authorize(request)

    events: list[AuditEvent] = []
    broker = make(gemini_emulator, authorize=counting, audit=events.append)
    for origin in ("https://evil.example", "null", "https://app.example.com.evil.example"):
        response = await broker.handle(post(origin=origin))
        assert response.status == 403
        assert error_of(response)["status"] == "PERMISSION_DENIED"
        assert response.header("Access-Control-Allow-Origin") is None
    assert calls == []
    assert [e.reason for e in events] == ["origin_not_allowed"] * 3
    assert gemini_emulator.tokens == []

    allowed = await broker.handle(post(origin=ORIGIN))
    assert allowed.status == 200
    assert allowed.header("Access-Control-Allow-Origin") == ORIGIN
    assert allowed.header("Vary") == "Origin"
    assert allowed.header("Access-Control-Expose-Headers") == "Retry-After"
    # The page's own host, and a request with no Origin at all (curl, a server), may post.
    same = await broker.handle(post(origin="https://broker.example.com"))
    assert same.status == 200
    assert same.header("Access-Control-Allow-Origin") is None
    same_port = post(origin="http://127.0.0.1:8080", host="127.0.0.1:8080")
    assert (await broker.handle(same_port)).status == 200
    other_port = post(origin="http://127.0.0.1:9999", host="127.0.0.1:8080")
    assert (await broker.handle(other_port)).status == 403
    assert (await broker.handle(post())).status == 200
    await broker.aclose()


# --- upstream failures ---------------------------------------------------------------------


async def test_upstream_rate_limit_is_503_with_retry_after(gemini_emulator: Emulator) -> None:
    broker = make(gemini_emulator)
    gemini_emulator.fail_next(status=429, retry_after=30)
    response = await broker.handle(post())
    assert response.status == 503
    assert response.header("Retry-After") == "30"
    assert error_of(response)["status"] == "UNAVAILABLE"
    await broker.aclose()


async def test_upstream_down_after_retries_is_503(gemini_emulator: Emulator) -> None:
    broker = make(gemini_emulator)
    gemini_emulator.fail_next(status=503, times=3)  # the client's 3 attempts
    response = await broker.handle(post())
    assert response.status == 503
    assert int(response.header("Retry-After") or 0) >= 1
    assert len([r for r in gemini_emulator.requests if r.path.endswith("auth_tokens")]) == 3
    await broker.aclose()


async def test_unreachable_service_is_503(gemini_emulator: Emulator) -> None:
    client = gemini_tokens.AsyncClient("k", base_url="http://127.0.0.1:9", max_retries=0, timeout=2)
    broker = make(gemini_emulator, client=client)
    response = await broker.handle(post())
    assert response.status == 503
    assert int(response.header("Retry-After") or "0") >= 1
    await client.close()


@pytest.mark.parametrize("fault", ["bad_key", "refused_policy", "not_a_token"])
async def test_server_side_faults_are_a_generic_500(
    gemini_emulator: Emulator, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    key = gemini_emulator.api_key
    client = gemini_tokens.AsyncClient(
        "wrong-key-123456" if fault == "bad_key" else key, base_url=gemini_emulator.base_url
    )
    if fault == "refused_policy":
        gemini_emulator.fail_next(
            status=400,
            body={"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "UPSTREAM-TEXT"}},
        )
    elif fault == "not_a_token":
        gemini_emulator.fail_next(status=200, body={"nothing": "UPSTREAM-TEXT"})
    broker = make(gemini_emulator, client=client)
    with caplog.at_level(logging.ERROR, logger="gemini_tokens.broker"):
        response = await broker.handle(post())
    assert response.status == 500
    text = response.body.decode()
    assert "UPSTREAM-TEXT" not in text
    assert "API_KEY" not in text
    assert "wrong-key-123456" not in text
    assert key not in text
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "wrong-key-123456" not in errors[0].getMessage()
    await client.close()


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"rate_limits": ["5/minit"]}, "rate_limits: cannot parse '5/minit'"),
        ({"rate_limits": [5]}, "rate_limits: 5 is not a rate limit"),
        ({"global_rate_limits": "lots"}, "global_rate_limits: cannot parse"),
        ({"storage_uri": "mongodb://x"}, "storage_uri: unknown scheme 'mongodb'"),
        ({"storage_uri": "nonsense"}, "storage_uri: 'nonsense' is not a URI"),
        ({"allowed_origins": ["app.example.com"]}, "allowed_origins: 'app.example.com'"),
        ({"allowed_origins": ["https://a.example/path"]}, "is not an origin"),
        ({"on_limiter_error": "maybe"}, "on_limiter_error"),
        ({"authorize": None}, "authorize"),
        ({"policy": {"model": MODEL}}, "policy"),
        ({"audit": "log"}, "audit"),
        ({"client": object()}, "client"),
    ],
)
def test_bad_settings_raise_at_construction(
    gemini_emulator_sync: Emulator, options: dict[str, Any], words: str
) -> None:
    settings: dict[str, Any] = {"authorize": authorize, "policy": policy(), **options}
    with pytest.raises(gemini_tokens.ConfigurationError) as info:
        TokenBroker(**settings)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"config": {"temprature": 0.5}}, "policy.config.temprature"),
        ({"uses": -1}, "policy.uses"),
        ({"expire_minutes": 60 * 24}, "policy.expire_minutes"),
        ({"lock_additional_fields": ["nonsense_field"]}, "policy.lock_additional_fields"),
        ({"client_may_set": {"temperature": (1.0, 0.0)}}, "policy.client_may_set.temperature"),
        ({"client_may_set": {"temperature": []}}, "policy.client_may_set.temperature"),
        ({"client_may_set": {"temperature": 0.5}}, "policy.client_may_set.temperature"),
        ({"client_may_set": {"top_kk": [1]}}, "policy.client_may_set.top_kk"),
        ({"client_may_set": {"response_modalities": [["SMELL"]]}}, "policy.client_may_set"),
    ],
)
def test_a_policy_create_would_refuse_raises_when_made(options: dict[str, Any], field: str) -> None:
    with pytest.raises(gemini_tokens.ValidationError) as info:
        policy(**options)
    assert info.value.field.startswith(field), info.value


def test_no_api_key_raises_at_construction() -> None:
    with pytest.raises(gemini_tokens.ConfigurationError, match="API key"):
        TokenBroker(authorize=authorize, policy=policy())


def test_denied_and_caller_check_their_values() -> None:
    with pytest.raises(ValueError, match="401 or 403"):
        Denied(500, "x")
    with pytest.raises(ValueError, match="non-empty"):
        Caller(id="")
    assert str(Denied(401)) == "401: sign in first"


# --- openapi ------------------------------------------------------------------------------


def test_openapi_publishes_the_contract(gemini_emulator_sync: Emulator) -> None:
    broker = TokenBroker(authorize=authorize, policy=policy())
    document = broker.openapi("/api/token")
    assert document["openapi"].startswith("3.1")
    operation = document["paths"]["/api/token"]["post"]
    config = operation["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "config"
    ]
    assert config["properties"]["speech_config"] == {"enum": ["Kore", "Puck"]}
    assert config["properties"]["temperature"] == {
        "type": "number",
        "minimum": 0.0,
        "maximum": 1.0,
    }
    codes = {"200", "400", "401", "403", "405", "413", "415", "429", "500", "503"}
    assert codes <= set(operation["responses"])
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert "Retry-After" in operation["responses"]["503"]["headers"]
    assert "RESOURCE_EXHAUSTED" in operation["responses"]["429"]["description"]
    json.dumps(document)  # JSON-ready


def test_repr_shows_no_secrets(gemini_emulator_sync: Emulator) -> None:
    broker = TokenBroker(authorize=authorize, policy=policy())
    text = repr(broker) + repr(post())
    assert gemini_emulator_sync.api_key not in text
    assert "alice-token" not in text


async def test_concurrent_requests_each_get_their_own_token(gemini_emulator: Emulator) -> None:
    broker = make(gemini_emulator)
    responses = await asyncio.gather(*(broker.handle(post()) for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    assert len({r.json()["name"] for r in responses}) == 20
    await broker.aclose()
