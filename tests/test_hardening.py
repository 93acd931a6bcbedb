"""The security and operations review's points ("serve at parity and hardened"), one test or
a few each, against the emulator and real servers on 127.0.0.1 where the point is about one:

- #3: a lone surrogate anywhere in a body is a 400 with a message that can be encoded;
- #4: an out-of-range number of any size (or NaN, Infinity) is a 400 naming the field;
- #2: ``max_session_minutes`` caps a token minted without renewal too;
- #6: a minted answer's repr hides its body (token name, session);
- #8: a POST with ``Sec-Fetch-Site: cross-site`` (or ``same-site``) and no Origin is refused
  before ``authorize``;
- #11: a JWKS refresh without a usable key keeps the last good keys (logged and counted);
- #12: the service's access log records no header.

(#15, the emulator's Ctrl-C, is in test_emulator_cli.py.)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import gemini_tokens
from gemini_tokens import ValidationError
from gemini_tokens.broker import AuditEvent, BrokerRequest, Caller, Policy
from gemini_tokens.serve._app import build_app
from gemini_tokens.serve._build import build_broker
from gemini_tokens.serve._settings import parse_settings
from gemini_tokens.testing import Emulator
from tests.broker.helpers import (
    authorize,
    close_brokers,  # noqa: F401  (autouse fixtures)
    fast_retries,  # noqa: F401
    make_broker,
    policy,
    post,
)

from .jwks_server import (  # noqa: F401  (fixtures)
    AUDIENCE,
    ISSUER,
    IdentityProvider,
    JWKSServer,
    SigningKey,
    idp_fixture,
    jwks_fixture,
)
from .test_serve_jwt import FakeClock, authorizer, refused, request

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SECRET = "renewal-" + "k" * 40


def _error(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == response.status
    return error


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class Recorder:
    """An ``authorize`` hook that counts its calls (and lets alice in)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: BrokerRequest) -> Caller:
        self.calls += 1
        return await authorize(request)


# --- #3: lone surrogates --------------------------------------------------------------------

SURROGATES = [
    (rb'{"\ud800": 1}', "\\ud800"),
    (rb'{"config": {"\udfff": 1}}', "config.\\udfff"),
    (rb'{"config": {"speech_config": "\ud800"}}', "config.speech_config"),
    (rb'{"config": {"temperature": 0.5, "x": [1, {"\uDBFF": "\ud800"}]}}', "config.x[1].\\udbff"),
    (rb'{"renew": "v1.\ud800"}', "renew"),
]


@pytest.mark.parametrize(
    ("raw", "named"), SURROGATES, ids=["key", "nested", "value", "deep", "renew"]
)
@pytest.mark.parametrize("user", [None, "alice"], ids=["anonymous", "signed-in"])
async def test_a_lone_surrogate_is_a_400_with_a_message_that_can_be_encoded(
    gemini_emulator: Emulator, raw: bytes, named: str, user: str | None
) -> None:
    events: list[AuditEvent] = []
    calls = Recorder()
    broker = make_broker(authorize=calls, audit=events.append, renewal=True, secret=SECRET)
    response = await broker.handle(post(raw=raw, user=user))
    assert response.status == 400
    response.body.decode("utf-8")  # valid UTF-8: no surrogate reaches the wire
    message = _error(response)["message"]
    assert message.startswith(f"{named}:")
    assert "surrogate" in message
    message.encode("utf-8")
    assert calls.calls == 0  # a body that is not Unicode is refused before authorize
    (event,) = events
    assert (event.status, event.reason) == (400, "invalid_argument")
    assert event.detail == message


async def test_a_lone_surrogate_through_a_real_server(gemini_emulator: Emulator) -> None:
    from gemini_tokens.broker.aiohttp import add_routes

    app = web.Application()
    add_routes(app, make_broker(audit=lambda event: None), path="/token")
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        answer = await http.post(
            "/token",
            data=rb'{"\ud800": 1}',
            headers={"Content-Type": "application/json"},
        )
        assert answer.status == 400
        body = await answer.json()
        assert body["error"]["status"] == "INVALID_ARGUMENT"
        assert body["error"]["message"].startswith("\\ud800:")


# --- #4: numbers of any size ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"config": {"temperature": 1' + b"0" * 400 + b"}}",
        b'{"config": {"temperature": -1' + b"0" * 400 + b"}}",
        b'{"config": {"temperature": 1e400}}',
        b'{"config": {"temperature": 1e308}}',
        b'{"config": {"temperature": 1.5}}',
    ],
    ids=["huge-int", "huge-negative-int", "overflowing-float", "huge-float", "above"],
)
async def test_an_out_of_range_number_of_any_size_is_a_400_naming_the_field(
    gemini_emulator: Emulator, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_broker()
    with caplog.at_level(logging.WARNING):
        response = await broker.handle(post(raw=raw))
    assert response.status == 400
    assert _error(response)["message"] == "config.temperature: must be a number from 0 to 1"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
async def test_nan_and_infinity_are_not_json(gemini_emulator: Emulator, constant: bytes) -> None:
    calls = Recorder()
    broker = make_broker(authorize=calls)
    response = await broker.handle(post(raw=b'{"config": {"temperature": ' + constant + b"}}"))
    assert response.status == 400
    message = _error(response)["message"]
    assert message.startswith("body: must be JSON")
    assert constant.decode() in message
    assert calls.calls == 0


def test_a_policy_range_of_huge_numbers_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        Policy(client_may_set={"temperature": (0, 10**400)})
    assert info.value.field == "policy.client_may_set.temperature"
    with pytest.raises(ValidationError) as info:
        Policy(max_session_minutes=10**400)
    assert info.value.field == "policy.max_session_minutes"


# --- #2: max_session_minutes without renewal ------------------------------------------------


@pytest.mark.parametrize("renewal", [False, True], ids=["one-token", "renewal"])
async def test_max_session_minutes_caps_every_token(
    gemini_emulator: Emulator, renewal: bool
) -> None:
    options: dict[str, Any] = {"renewal": True, "secret": SECRET} if renewal else {}
    broker = make_broker(
        policy=policy(
            uses=1, expire_minutes=30, new_session_expire_minutes=5, max_session_minutes=1
        ),
        **options,
    )
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    response = await broker.handle(post())
    after = dt.datetime.now(dt.timezone.utc)
    assert response.status == 200, response.body
    data = response.json()
    issued = gemini_emulator.token(data["name"])
    assert issued is not None
    cap = dt.timedelta(minutes=1)
    for expire in (_parse(data["expireTime"]), issued.expire_time):
        assert before + cap - dt.timedelta(seconds=1) <= expire <= after + cap
    for new_session in (_parse(data["newSessionExpireTime"]), issued.new_session_expire_time):
        assert new_session <= issued.expire_time


def test_create_options_cap_the_times_at_max_session_minutes() -> None:
    capped = Policy(expire_minutes=30, new_session_expire_minutes=5, max_session_minutes=2)
    options = capped.create_options()
    assert (options["expire_minutes"], options["new_session_expire_minutes"]) == (2, 2)
    free = Policy(expire_minutes=30, new_session_expire_minutes=5, max_session_minutes=None)
    options = free.create_options()
    assert (options["expire_minutes"], options["new_session_expire_minutes"]) == (30, 5)


# --- #6: the repr of a minted answer --------------------------------------------------------


async def test_a_minted_answers_repr_hides_its_body(gemini_emulator: Emulator) -> None:
    broker = make_broker(renewal=True, secret=SECRET)
    response = await broker.handle(post())
    assert response.status == 200
    data = response.json()
    shown = repr(response)
    assert data["name"] not in shown
    assert data["session"] not in shown
    assert data["name"].removeprefix("auth_tokens/") not in shown
    assert f"{len(response.body)} bytes" in shown
    assert "status=200" in shown


# --- #8: Sec-Fetch-Site without Origin ------------------------------------------------------


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Cross-Site", "nonsense"])
async def test_a_cross_site_fetch_without_origin_is_refused_before_authorize(
    gemini_emulator: Emulator, site: str
) -> None:
    events: list[AuditEvent] = []
    calls = Recorder()
    broker = make_broker(authorize=calls, audit=events.append)
    response = await broker.handle(post(**{"Sec-Fetch-Site": site}))
    assert response.status == 403
    assert _error(response)["status"] == "PERMISSION_DENIED"
    assert calls.calls == 0
    assert [(e.status, e.reason) for e in events] == [(403, "origin_not_allowed")]


@pytest.mark.parametrize("site", ["same-origin", "none", None])
async def test_a_same_origin_or_user_initiated_fetch_goes_on(
    gemini_emulator: Emulator, site: str | None
) -> None:
    calls = Recorder()
    broker = make_broker(authorize=calls)
    extra = {} if site is None else {"Sec-Fetch-Site": site}
    response = await broker.handle(post(**extra))
    assert response.status == 200, response.body
    assert calls.calls == 1


async def test_an_allowed_origin_decides_over_sec_fetch_site(gemini_emulator: Emulator) -> None:
    from tests.broker.helpers import ORIGIN

    broker = make_broker()
    response = await broker.handle(post(origin=ORIGIN, **{"Sec-Fetch-Site": "cross-site"}))
    assert response.status == 200, response.body


# --- #11: a JWKS refresh without a usable key -----------------------------------------------

NO_USABLE_KEY = [
    (200, b'{"keys": []}'),
    (200, b"garbage, not JSON"),
    (500, b"internal error"),
    (503, b'{"keys": []}'),
    (200, b'{"keys": null}'),
    (200, b'{"keys": [{"kty": "RSA", "kid": "broken"}, 7]}'),
    (200, b"[]"),
    (200, b"[" * 100_000),
]


@pytest.mark.parametrize(
    "answer",
    NO_USABLE_KEY,
    ids=["empty", "garbage", "500", "503", "null", "broken-keys", "array", "deep"],
)
async def test_a_jwks_refresh_without_a_usable_key_keeps_the_last_good_keys(
    jwks: JWKSServer,
    idp: IdentityProvider,
    answer: tuple[int, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    auth = authorizer(jwks, clock, jwks_cache_seconds=100)
    good = idp.token()
    assert (await auth(request(good))).id == "user-1"
    jwks.answer = answer
    with caplog.at_level(logging.WARNING, logger="gemini_tokens.broker.jwt"):
        # Anyone can make the broker refresh: a made-up kid, once the minute is over.
        clock.now += 61
        assert "unknown" in await refused(auth, idp.token(key=SigningKey()))
        assert jwks.requests == 2
        assert (await auth(request(idp.token("amy")))).id == "amy"
        # The cache going stale makes another attempt, which fails the same way.
        clock.now += 200
        assert (await auth(request(good))).id == "user-1"
        assert jwks.requests == 3
    assert auth.keys.failed_refreshes == 2
    assert await auth.keys.check()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("keeping the 1 signing key" in r.getMessage() for r in warnings)
    assert good not in caplog.text
    # A usable set replaces the old one again (here, a rotation).
    new_key = SigningKey()
    jwks.answer = None
    jwks.rotate(new_key)
    clock.now += 61
    assert (await auth(request(idp.token("bo", key=new_key)))).id == "bo"
    assert "unknown" in await refused(auth, good)
    assert auth.keys.failed_refreshes == 2


async def test_a_jwks_without_a_usable_key_at_first_is_not_ready(
    jwks: JWKSServer, idp: IdentityProvider
) -> None:
    jwks.answer = (200, b'{"keys": []}')
    auth = authorizer(jwks)
    assert not await auth.keys.check()
    assert auth.keys.failed_refreshes == 1
    assert "unknown" in await refused(auth, idp.token())


# --- #12: no header in the access log -------------------------------------------------------

HS_SECRET = "0123456789abcdef0123456789abcdef-hs"
SERVE_TOML = f"""
[auth.jwt]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["HS256"]
hmac_secret = "{HS_SECRET}"

[policy]
model = "gemini-live-test"
uses = 1
"""


@pytest.fixture
async def served() -> AsyncIterator[TestClient]:
    async with Emulator() as emu:
        config = parse_settings(tomllib.loads(SERVE_TOML), source="test.toml", environ={})
        client = gemini_tokens.AsyncClient(emu.api_key, base_url=emu.base_url)
        broker, close_audit = build_broker(config, client=client)
        app = build_app(config, broker, client)
        http = TestClient(TestServer(app, host="127.0.0.1"))
        await http.start_server()
        try:
            yield http
        finally:
            await http.close()
            await client.close()
            close_audit()


async def test_the_access_log_records_no_header(
    served: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    claims = IdentityProvider().claims("una")
    bearer = jwt.encode(claims, HS_SECRET, algorithm="HS256")
    headers = {
        "Authorization": f"Bearer {bearer}",
        "User-Agent": "Agent/1.0 (secret-user-agent)",
        "Referer": "https://app.example.test/private-referer",
        "Cookie": "sid=cookie-value",
    }
    with caplog.at_level(logging.INFO, logger="gemini_tokens.serve.access"):
        minted = await served.post("/token", headers=headers)
        assert minted.status == 200
        health = await served.get("/healthz", headers=headers)
        assert health.status == 200
    records = [r for r in caplog.records if r.name == "gemini_tokens.serve.access"]
    entries = [json.loads(r.getMessage()) for r in records]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/token", 200),
        ("GET", "/healthz", 200),
    ]
    for entry in entries:
        assert set(entry) == {"method", "path", "status", "duration_ms", "remote"}
    for value in ("secret-user-agent", "Agent/1.0", "private-referer", "cookie-value", bearer):
        assert value not in caplog.text


# --- a surrogate pair is not a lone surrogate ------------------------------------------------


async def test_a_surrogate_pair_is_an_ordinary_character(gemini_emulator: Emulator) -> None:
    broker = make_broker()
    response = await broker.handle(post(raw=rb'{"\ud83d\ude00": 1}'))
    assert response.status == 400
    message = _error(response)["message"]
    assert message.startswith("\U0001f600: is not a field of the request")
