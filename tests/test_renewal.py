"""Broker renewal (#15): the signed ``session``, ``{"renew": ...}``, the cap, limits, audit;
and ``<path>/client.js`` (the browser helper) from every adapter, and in the wheel."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import pathlib
import zipfile
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import gemini_tokens
from gemini_tokens.broker import (
    ASGIApp,
    AuditEvent,
    BrokerRequest,
    Caller,
    TokenBroker,
    WSGIApp,
    _session,
)
from gemini_tokens.testing import Emulator
from tests.broker.helpers import (
    ORIGIN,
    authorize,
    close_brokers,  # noqa: F401  (autouse fixtures)
    fast_retries,  # noqa: F401
    make_broker,
    policy,
    post,
)
from tests.broker.redis_server import needs_redis, redis_server

ROOT = pathlib.Path(__file__).resolve().parent.parent
HELPER = ROOT / "gemini_tokens" / "broker" / "static" / "gemini-tokens.js"
SECRET = "s3cret-" + "x" * 40
AUTH = {"Authorization": "Bearer alice-token"}

pytestmark = pytest.mark.filterwarnings(
    "ignore:Using `httpx` with `starlette.testclient` is deprecated"
)


def make(**options: Any) -> TokenBroker:
    options.setdefault("renewal", True)
    options.setdefault("secret", SECRET)
    return make_broker(**options)


def renew(session: Any, user: str | None = "alice", **body: Any) -> BrokerRequest:
    return post({"renew": session, **body}, user=user)


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def error_message(response: Any) -> str:
    error = response.json()["error"]
    assert error["code"] == response.status
    return str(error["message"])


# --- construction -----------------------------------------------------------------------------


def test_renewal_needs_a_secret(
    gemini_emulator_sync: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_TOKENS_BROKER_SECRET", raising=False)
    with pytest.raises(gemini_tokens.ConfigurationError, match="GEMINI_TOKENS_BROKER_SECRET"):
        TokenBroker(authorize=authorize, policy=policy(), renewal=True)
    with pytest.raises(gemini_tokens.ConfigurationError, match="secret: must be at least 32"):
        TokenBroker(authorize=authorize, policy=policy(), renewal=True, secret="short")
    with pytest.raises(gemini_tokens.ConfigurationError, match="secret: must be a string"):
        TokenBroker(authorize=authorize, policy=policy(), renewal=True, secret=42)  # type: ignore[arg-type]
    with pytest.raises(gemini_tokens.ConfigurationError, match="renewal_rate_limits"):
        TokenBroker(
            authorize=authorize,
            policy=policy(),
            renewal=True,
            secret=SECRET,
            renewal_rate_limits=["often"],
        )
    # Without renewal no secret is needed.
    TokenBroker(authorize=authorize, policy=policy())


async def test_the_secret_may_come_from_the_environment(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_TOKENS_BROKER_SECRET", SECRET)
    broker = make(secret=None)
    first = (await broker.handle(post())).json()
    assert (await broker.handle(renew(first["session"]))).status == 200
    # Another secret does not accept its sessions.
    monkeypatch.setenv("GEMINI_TOKENS_BROKER_SECRET", "another-" + "y" * 40)
    other = make(secret=None)
    refused = await other.handle(renew(first["session"]))
    assert refused.status == 403
    assert "not valid" in error_message(refused)


def test_max_session_minutes_is_checked() -> None:
    assert policy().max_session_minutes == 60
    assert policy(max_session_minutes=None).max_session_minutes is None
    for bad in (0, -1, "ten", float("nan"), True):
        with pytest.raises(gemini_tokens.ValidationError, match=r"policy\.max_session_minutes"):
            policy(max_session_minutes=bad)


def test_the_secret_is_in_no_repr(gemini_emulator_sync: Emulator) -> None:
    broker = TokenBroker(authorize=authorize, policy=policy(), renewal=True, secret=SECRET)
    assert SECRET not in repr(broker)
    assert SECRET not in repr(broker._renewal)


# --- the session and a renewal ----------------------------------------------------------------


async def test_a_minted_answer_carries_an_opaque_session(gemini_emulator: Emulator) -> None:
    broker = make()
    data = (await broker.handle(post())).json()
    session = data["session"]
    assert isinstance(session, str)
    assert session.startswith("v1.")
    # Opaque: the caller's id is not in it, only a keyed tag.
    payload = base64.urlsafe_b64decode(session.split(".")[1] + "==").decode()
    assert "alice" not in payload
    # Without renewal there is no session.
    plain = make(renewal=False)
    assert "session" not in (await plain.handle(post())).json()


async def test_renew_mints_the_next_token_with_the_same_policy_and_choices(
    gemini_emulator: Emulator,
) -> None:
    calls: list[str] = []

    async def counting(request: BrokerRequest) -> Caller:
        caller = await authorize(request)
        calls.append(caller.id)
        return caller

    events: list[AuditEvent] = []
    broker = make(authorize=counting, audit=events.append)
    first = (await broker.handle(post({"config": {"temperature": 0.3}}))).json()
    response = await broker.handle(renew(first["session"]))
    assert response.status == 200, response.body
    assert response.header("Cache-Control") == "no-store"
    second = response.json()
    assert second["name"] != first["name"]
    assert second["uses"] == 1  # the first had the policy's 2
    assert first["uses"] == 2
    assert second["bidiGenerateContentSetup"] == first["bidiGenerateContentSetup"]
    assert second["bidiGenerateContentSetup"]["generationConfig"]["temperature"] == 0.3
    assert second["fieldMask"] == first["fieldMask"]
    assert second["session"] == first["session"]
    assert {"liveUrl", "serverTime"} <= set(second)
    assert calls == ["alice", "alice"]  # authorize ran again
    assert [e.outcome for e in events] == ["minted", "renewed"]
    issued = gemini_emulator.token(second["name"])
    assert issued is not None
    assert issued.uses == 1


async def test_no_token_of_a_conversation_expires_past_its_cap(gemini_emulator: Emulator) -> None:
    broker = make(policy=policy(max_session_minutes=2, expire_minutes=15))
    first = (await broker.handle(post())).json()
    start = parse_time(first["serverTime"]).replace(microsecond=0)
    cap = start + dt.timedelta(minutes=2)
    assert parse_time(first["expireTime"]) <= cap
    assert parse_time(first["expireTime"]) > cap - dt.timedelta(seconds=2)
    second = (await broker.handle(renew(first["session"]))).json()
    assert parse_time(second["expireTime"]) <= cap
    assert parse_time(second["newSessionExpireTime"]) <= parse_time(second["expireTime"])


async def test_past_the_cap_a_renewal_is_refused_with_a_reason(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[AuditEvent] = []
    broker = make(policy=policy(max_session_minutes=10), audit=events.append)
    first = (await broker.handle(post())).json()
    start = parse_time(first["serverTime"]).replace(microsecond=0)

    # Just before the cap: allowed, and the token ends at the cap.
    monkeypatch.setattr(_session, "_utcnow", lambda: start + dt.timedelta(minutes=10, seconds=-30))
    ok = await broker.handle(renew(first["session"]))
    assert ok.status == 200, ok.body
    assert parse_time(ok.json()["expireTime"]) <= start + dt.timedelta(minutes=10)

    for late in (dt.timedelta(minutes=10, seconds=-2), dt.timedelta(minutes=11)):
        monkeypatch.setattr(_session, "_utcnow", lambda late=late: start + late)
        refused = await broker.handle(renew(first["session"]))
        assert refused.status == 403
        assert error_message(refused) == (
            "this conversation reached its limit of 10 minutes; start a new one"
        )
    assert [(e.outcome, e.reason) for e in events[-2:]] == [("denied", "session_cap")] * 2
    # A new conversation is still possible.
    monkeypatch.undo()
    assert (await broker.handle(post())).status == 200


async def test_another_callers_session_is_refused(gemini_emulator: Emulator) -> None:
    events: list[AuditEvent] = []
    broker = make(audit=events.append)
    alices = (await broker.handle(post())).json()["session"]
    refused = await broker.handle(renew(alices, user="bob"))
    assert refused.status == 403
    assert error_message(refused) == "this conversation belongs to another user; start a new one"
    assert (events[-1].outcome, events[-1].reason, events[-1].caller_id) == (
        "denied",
        "session_not_yours",
        "bob",
    )
    # authorize still comes first: a signed-out renewal is a 401, a banned user a 403.
    assert (await broker.handle(renew(alices, user=None))).status == 401
    banned = await broker.handle(renew(alices, user="eve"))
    assert error_message(banned) == "eve is banned"


def _tamper(session: str, change: Any) -> str:
    version, payload, mac = session.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    change(data)
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return f"{version}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{mac}"


async def test_forged_sessions_are_refused(gemini_emulator: Emulator) -> None:
    broker = make()
    session = (await broker.handle(post({"config": {"temperature": 0.3}}))).json()["session"]
    version, payload, mac = session.split(".")
    forged = [
        _tamper(session, lambda d: d.update(s=d["s"] + 3600)),  # a later start: a longer cap
        _tamper(session, lambda d: d.update(k={"temperature": 1.0})),  # other choices
        f"{version}.{payload}.{mac[:-2]}AA",
        f"v2.{payload}.{mac}",
        "v1.!!!.???",
        "v1.a.b",  # not base64 at all
        "v1..",
        "nonsense",
        payload,
    ]
    for value in forged:
        refused = await broker.handle(renew(value))
        assert refused.status == 403, value
        assert error_message(refused) == (
            "this conversation cannot be renewed: its session is not valid; start a new one"
        )


async def test_a_well_signed_but_malformed_session_is_refused(gemini_emulator: Emulator) -> None:
    broker = make()
    renewal = broker._renewal
    assert renewal is not None
    data = b'{"c": "x"}'  # signed with the broker's key, but not a session's payload
    value = "v1.{}.{}".format(
        base64.urlsafe_b64encode(data).decode().rstrip("="),
        base64.urlsafe_b64encode(renewal._mac(data)).decode().rstrip("="),
    )
    refused = await broker.handle(renew(value))
    assert refused.status == 403
    assert "not valid" in error_message(refused)


async def test_without_a_cap_renewals_go_on(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = make(policy=policy(max_session_minutes=None, expire_minutes=15))
    first = (await broker.handle(post())).json()
    start = parse_time(first["serverTime"])
    monkeypatch.setattr(_session, "_utcnow", lambda: start + dt.timedelta(hours=5))
    ok = await broker.handle(renew(first["session"]))
    assert ok.status == 200, ok.body


async def test_a_changed_policy_ends_renewals(gemini_emulator: Emulator) -> None:
    current = {"policy": policy()}
    broker = make(policy=lambda caller: current["policy"])
    session = (await broker.handle(post())).json()["session"]
    current["policy"] = policy(uses=1)
    refused = await broker.handle(renew(session))
    assert refused.status == 403
    assert "settings changed" in error_message(refused)


@pytest.mark.parametrize(
    "narrowed",
    [
        {"speech_config": ["Kore"], "temperature": (0.0, 1.0)},  # a voice dropped
        {"speech_config": ["Kore", "Puck"], "temperature": (0.0, 0.5)},  # a range shrunk
        {"speech_config": ["Kore", "Puck"]},  # a field no longer the client's
    ],
    ids=["voice-dropped", "range-shrunk", "field-revoked"],
)
async def test_a_narrowed_client_may_set_ends_renewals_of_revoked_choices(
    gemini_emulator: Emulator, narrowed: dict[str, Any]
) -> None:
    """docs/live-sessions.md: a conversation whose choices the policy no longer allows ends
    at its next renewal (403 session_policy_changed), not at its cap."""
    events: list[AuditEvent] = []
    current = {"policy": policy(max_session_minutes=None)}
    broker = make(policy=lambda caller: current["policy"], audit=events.append)
    chosen = {"speech_config": "Puck", "temperature": 0.9}
    first = (await broker.handle(post({"config": chosen}))).json()
    kept = (await broker.handle(post({"config": {"speech_config": "Kore"}}))).json()
    current["policy"] = policy(max_session_minutes=None, client_may_set=narrowed)
    refused = await broker.handle(renew(first["session"]))
    assert refused.status == 403
    assert "settings changed" in error_message(refused)
    assert events[-1].reason == "session_policy_changed"
    # A conversation whose choices are still allowed renews on.
    assert (await broker.handle(renew(kept["session"]))).status == 200


async def test_renew_body_rules(gemini_emulator: Emulator) -> None:
    broker = make()
    session = (await broker.handle(post())).json()["session"]
    with_config = await broker.handle(renew(session, config={"temperature": 0.5}))
    assert with_config.status == 400
    assert error_message(with_config).startswith("config: may not be given with renew")
    for bad in (None, 3, "", ["x"]):
        response = await broker.handle(renew(bad))
        assert response.status == 400, bad
        assert error_message(response).startswith("renew: must be the session string")
    # Without renewal, "renew" is not a field of the request.
    plain = make(renewal=False)
    refused = await plain.handle(renew(session))
    assert refused.status == 400
    assert error_message(refused).startswith("renew: is not a field")


async def test_renewals_count_against_their_own_limits(gemini_emulator: Emulator) -> None:
    events: list[AuditEvent] = []
    broker = make(rate_limits=["1/minute"], renewal_rate_limits=["2/minute"], audit=events.append)
    session = (await broker.handle(post())).json()["session"]
    assert (await broker.handle(post())).status == 429  # the mint limit is used up
    for _ in range(2):  # renewals are not counted against it
        assert (await broker.handle(renew(session))).status == 200
    limited = await broker.handle(renew(session))
    assert limited.status == 429
    retry_after = limited.header("Retry-After")
    assert retry_after is not None
    assert 1 <= int(retry_after) <= 60
    assert "too many renewals" in error_message(limited)
    assert (events[-1].outcome, events[-1].reason) == ("limited", "renewal_limit")
    # Bob's renewals are his own.
    bobs = (await broker.handle(post(user="bob"))).json()["session"]
    assert (await broker.handle(renew(bobs, user="bob"))).status == 200


@needs_redis
async def test_replicas_share_sessions_and_renewal_counts_through_redis(
    gemini_emulator: Emulator,
) -> None:
    with redis_server() as uri:
        one, two = (make(storage_uri=uri, renewal_rate_limits=["3/minute"]) for _ in range(2))
        session = (await one.handle(post())).json()["session"]
        # The other replica accepts the session (the same secret) and shares the count.
        statuses = [(await broker.handle(renew(session))).status for broker in (two, one, two)]
        assert statuses == [200, 200, 200]
        assert (await one.handle(renew(session))).status == 429
        assert (await two.handle(renew(session))).status == 429
        assert (await two.handle(post())).status == 200  # mints are counted apart
        for broker in (one, two):
            await broker.aclose()


async def test_renewals_count_against_the_global_limits(gemini_emulator: Emulator) -> None:
    broker = make(global_rate_limits=["2/minute"])
    session = (await broker.handle(post())).json()["session"]
    assert (await broker.handle(renew(session))).status == 200
    limited = await broker.handle(renew(session))
    assert limited.status == 429
    assert "everyone has reached" in error_message(limited)


async def test_renewal_fails_closed_when_the_limiter_is_down(
    gemini_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = make(renewal_rate_limits=["5/minute"])
    session = (await broker.handle(post())).json()["session"]

    async def down(*args: Any) -> None:
        raise ConnectionError("redis is gone")

    monkeypatch.setattr(broker._limiter, "_hit_all", down)
    refused = await broker.handle(renew(session))
    assert refused.status == 503
    assert refused.header("Retry-After") == "5"
    allowing = make(renewal_rate_limits=["5/minute"], on_limiter_error="allow")
    session = (await allowing.handle(post())).json()["session"]
    monkeypatch.setattr(allowing._limiter, "_hit_all", down)
    assert (await allowing.handle(renew(session))).status == 200


async def test_no_secret_or_session_in_audit_or_logs(
    gemini_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = make(audit=None, renewal_rate_limits=["2/minute"])  # the default logging sink
    first = (await broker.handle(post())).json()
    session = first["session"]
    for _ in range(3):
        await broker.handle(renew(session))
    await broker.handle(renew(session, user="bob"))
    await broker.handle(renew(session[:-3] + "abc"))
    records = [r.getMessage() for r in caplog.records]
    assert sum('"outcome":"renewed"' in r for r in records) == 2
    assert len([r for r in caplog.records if r.name == "gemini_tokens.audit"]) == 6
    text = "\n".join(records)
    mac = session.split(".")[2]
    for secret in (SECRET, session, mac, first["name"], gemini_emulator.api_key):
        assert secret not in text


@pytest.mark.parametrize("count_as_use", [False, True], ids=["resume-free", "resume-is-a-use"])
async def test_the_renewed_token_resumes_the_conversation(count_as_use: bool) -> None:
    """The loop the browser helper runs, with the emulator: resume on a renewed uses=1 token.

    Also where resuming counts as a use (as users report of the service): the renewed token
    has its one use left for it.
    """
    from gemini_tokens.broker.aiohttp import add_routes

    async with Emulator(count_resumption_as_use=count_as_use) as emu:
        client = gemini_tokens.AsyncClient(emu.api_key, base_url=emu.base_url)
        broker = make(
            policy=policy(config={"response_modalities": ["TEXT"]}, uses=1), client=client
        )
        app = web.Application()
        add_routes(app, broker)
        try:
            await _resume_through(app)
        finally:
            await client.close()
        accepted = [s for s in emu.sessions if s.accepted]
        assert [s.resumed for s in accepted] == [False, True]
        assert all(s.counted_as_use is (i == 0 or count_as_use) for i, s in enumerate(accepted))


async def _resume_through(app: web.Application) -> None:
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        first = await (await http.post("/token", headers=AUTH)).json()
        async with http.session.ws_connect(first["liveUrl"]) as ws:
            model = first["bidiGenerateContentSetup"]["model"]
            await ws.send_json({"setup": {"model": model, "sessionResumption": {}}})
            handle = None
            await ws.send_json(
                {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "one"}]}],
                                   "turnComplete": True}}
            )  # fmt: skip
            done = False
            while not done or not handle:  # the handle sent after the turn holds it
                msg = json.loads((await ws.receive(timeout=10)).data)
                update = msg.get("sessionResumptionUpdate") or {}
                handle = update.get("newHandle") if done else None
                done = done or bool((msg.get("serverContent") or {}).get("turnComplete"))
        assert handle
        answer = await http.post(
            "/token", headers={**AUTH, "Content-Type": "application/json"},
            data=json.dumps({"renew": first["session"]}),
        )  # fmt: skip
        second = await answer.json()
        assert answer.status == 200, second
        async with http.session.ws_connect(second["liveUrl"]) as ws:
            await ws.send_json(
                {"setup": {"model": second["bidiGenerateContentSetup"]["model"],
                           "sessionResumption": {"handle": handle}}}
            )  # fmt: skip
            await ws.send_json(
                {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "two"}]}],
                                   "turnComplete": True}}
            )  # fmt: skip
            texts = []
            while True:
                msg = json.loads((await ws.receive(timeout=10)).data)
                for part in ((msg.get("serverContent") or {}).get("modelTurn") or {}).get(
                    "parts", []
                ):
                    texts.append(part.get("text", ""))
                if (msg.get("serverContent") or {}).get("turnComplete"):
                    break
        assert any('earlier turns: "one"' in t for t in texts), texts


# --- client.js ------------------------------------------------------------------------------


def _check_js(status: int, headers: Any, body: bytes) -> str:
    assert status == 200
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert headers["Cache-Control"] == "public, max-age=3600"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body == HELPER.read_bytes()
    etag: str = headers["ETag"]
    assert etag.startswith('"')
    return etag


async def test_client_js_in_aiohttp(gemini_emulator: Emulator) -> None:
    from gemini_tokens.broker.aiohttp import add_routes

    app = web.Application()
    add_routes(app, make(renewal=False), path="/api/token")
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        ok = await http.get("/api/token/client.js")
        etag = _check_js(ok.status, ok.headers, await ok.read())
        again = await http.get("/api/token/client.js", headers={"If-None-Match": etag})
        assert again.status == 304
        assert await again.read() == b""
        other = await http.get("/api/token/client.js", headers={"If-None-Match": '"x"'})
        assert other.status == 200
        star = await http.get("/api/token/client.js", headers={"If-None-Match": "*"})
        assert star.status == 304
        posted = await http.post("/api/token/client.js")
        assert posted.status == 405
        assert posted.headers["Allow"] == "GET, HEAD"
        head = await http.head("/api/token/client.js")
        assert head.status == 200
        cors = await http.get("/api/token/client.js", headers={"Origin": ORIGIN})
        assert cors.headers["Access-Control-Allow-Origin"] == ORIGIN
        foreign = await http.get("/api/token/client.js", headers={"Origin": "https://x.example"})
        assert "Access-Control-Allow-Origin" not in foreign.headers


def test_client_js_in_starlette_and_fastapi(gemini_emulator_sync: Emulator) -> None:
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient as StarletteClient

    from gemini_tokens.broker.fastapi import router

    broker = TokenBroker(authorize=authorize, policy=policy(), audit=lambda e: None)
    starlette = Starlette(routes=[Mount("/token", app=ASGIApp(broker))], lifespan=broker.lifespan)
    with StarletteClient(starlette, base_url="http://127.0.0.1") as http:
        ok = http.get("/token/client.js")
        etag = _check_js(ok.status_code, ok.headers, ok.content)
        assert http.get("/token/client.js", headers={"If-None-Match": etag}).status_code == 304
    api = FastAPI()
    api.include_router(router(broker, path="/token"))
    with StarletteClient(api, base_url="http://127.0.0.1") as http:
        ok = http.get("/token/client.js")
        _check_js(ok.status_code, ok.headers, ok.content)


def test_client_js_in_flask_through_wsgi(gemini_emulator_sync: Emulator) -> None:
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    broker = TokenBroker(authorize=lambda r: Caller(id="a"), policy=policy(), audit=lambda e: None)
    token_app = WSGIApp(broker)
    app = Flask(__name__)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/token": token_app})  # type: ignore[method-assign]
    try:
        ok = app.test_client().get("/token/client.js")
        _check_js(ok.status_code, ok.headers, ok.data)
    finally:
        token_app.close()


def test_the_helper_ships_in_the_wheel(tmp_path: pathlib.Path) -> None:
    builders = pytest.importorskip(
        "hatchling.builders.wheel", reason="needs hatchling: pip install -e '.[test]'"
    )
    wheel = next(iter(builders.WheelBuilder(str(ROOT)).build(directory=str(tmp_path))))
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("gemini_tokens/broker/static/gemini-tokens.js")
    assert shipped == HELPER.read_bytes()


async def test_the_served_helper_is_the_packaged_file() -> None:
    from gemini_tokens.broker._static import client_js

    assert client_js() == HELPER.read_bytes()


def test_openapi_shows_renew_and_session(gemini_emulator_sync: Emulator) -> None:
    broker = TokenBroker(
        authorize=authorize, policy=policy(), renewal=True, secret=SECRET, audit=None
    )
    post_op = broker.openapi()["paths"]["/token"]["post"]
    body = post_op["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"config", "renew"}
    token = post_op["responses"]["200"]["content"]["application/json"]["schema"]
    assert "session" in token["properties"]
    plain = TokenBroker(authorize=authorize, policy=policy(), audit=None)
    plain_op = plain.openapi()["paths"]["/token"]["post"]
    plain_body = plain_op["requestBody"]["content"]["application/json"]["schema"]
    assert set(plain_body["properties"]) == {"config"}


def test_a_parsed_renewal_body_hides_its_session() -> None:
    """A frame-locals recorder sees the parsed body of a renewal: not its session value."""
    from gemini_tokens.broker._body import parse_body

    session = "v1." + "S3SSION" * 8
    parsed = parse_body(renew(session), frozenset({"config", "renew"}))
    assert parsed.extra == {"renew": session}
    assert session not in repr(parsed)
