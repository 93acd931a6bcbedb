"""Live-minute budgets and cut-offs: charging, cutting, exhaustion, renewals, concurrency,
suspensions; memory and a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from gemini_tokens import ConfigurationError
from gemini_tokens.broker import AuditEvent, BrokerRequest
from gemini_tokens.testing import Emulator
from tests.broker.helpers import (
    close_brokers,  # noqa: F401  (an autouse fixture)
    make_broker,
    policy,
    post,
)
from tests.broker.redis_server import needs_redis, redis_server

SECRET = secrets.token_urlsafe(32)


@contextlib.contextmanager
def storage(kind: str) -> Iterator[str]:
    if kind == "memory":
        yield "memory://"
        return
    with redis_server() as uri:
        yield uri


STORAGES = ["memory", pytest.param("redis", marks=needs_redis)]


def minutes_left(answer: dict[str, Any]) -> float:
    """The token's window, in minutes, on the broker's clock."""
    expire = dt.datetime.fromisoformat(answer["expireTime"].replace("Z", "+00:00"))
    now = dt.datetime.fromisoformat(answer["serverTime"].replace("Z", "+00:00"))
    return (expire - now).total_seconds() / 60


def get_usage(user: str = "alice") -> BrokerRequest:
    return BrokerRequest(
        method="GET",
        path="/token/usage",
        subpath="/usage",
        headers={"Host": "broker.example.com", "Authorization": f"Bearer {user}-token"},
    )


@pytest.mark.parametrize("kind", STORAGES)
async def test_tokens_are_charged_cut_and_then_refused(
    gemini_emulator: Emulator, kind: str
) -> None:
    events: list[AuditEvent] = []
    with storage(kind) as uri:
        broker = make_broker(
            live_minutes=["20/day", "600/month"], storage_uri=uri, audit=events.append
        )
        first = await broker.handle(post())
        assert first.status == 200
        body = first.json()
        assert 14.9 <= minutes_left(body) <= 15.01  # the policy's 15 minutes
        assert body["budget"]["remainingMinutes"] == 5
        resets = dt.datetime.fromisoformat(body["budget"]["resetsAt"].replace("Z", "+00:00"))
        assert (
            dt.timedelta(hours=23)
            < resets - dt.datetime.now(dt.timezone.utc)
            <= dt.timedelta(days=1)
        )
        # Five minutes left: the next token is cut to them.
        second = await broker.handle(post())
        assert second.status == 200
        assert 4.9 <= minutes_left(second.json()) <= 5.01
        assert second.json()["budget"]["remainingMinutes"] == 0
        expire = gemini_emulator.tokens[-1].expire_time
        assert expire <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
        # Nothing left: 429 with Retry-After until the first charge returns, a message to show.
        third = await broker.handle(post())
        assert third.status == 429
        error = third.json()["error"]
        assert error["status"] == "RESOURCE_EXHAUSTED"
        assert error["message"].startswith("no Live minutes left today")
        assert 86_000 <= int(third.header("Retry-After") or 0) <= 86_400
        # Another caller has a budget of their own.
        assert (await broker.handle(post(user="bob"))).json()["budget"]["remainingMinutes"] == 5
        assert len(gemini_emulator.tokens) == 3
        usage = await broker.usage("alice")
        assert [b.remaining_minutes for b in usage.budgets] == [0, 600 - 20]
        assert usage.suspension is None
        mine = await broker.handle(get_usage())
        assert mine.status == 200
        assert mine.json()["remainingMinutes"] == 0
        assert [b["remainingMinutes"] for b in mine.json()["budgets"]] == [0, 580]
    charged = [(e.outcome, e.reason, e.charged_minutes) for e in events]
    assert charged == [
        ("minted", "ok", 15),
        ("minted", "ok", 5),
        ("limited", "budget_exhausted", None),
        ("minted", "ok", 15),
    ]
    assert events[0].to_dict()["charged_minutes"] == 15


@pytest.mark.parametrize("kind", STORAGES)
async def test_a_global_budget_is_shared_by_every_caller(
    gemini_emulator: Emulator, kind: str
) -> None:
    with storage(kind) as uri:
        broker = make_broker(global_live_minutes=["30/hour"], storage_uri=uri)
        assert (await broker.handle(post())).status == 200
        assert (await broker.handle(post(user="bob"))).status == 200
        refused = await broker.handle(post(user="bob"))
        assert refused.status == 429
        message = refused.json()["error"]["message"]
        assert message.startswith("no Live minutes left this hour (everyone's budget")
        assert 3500 <= int(refused.header("Retry-After") or 0) <= 3600


@pytest.mark.parametrize("kind", STORAGES)
async def test_renewals_are_charged_like_first_tokens(gemini_emulator: Emulator, kind: str) -> None:
    events: list[AuditEvent] = []
    with storage(kind) as uri:
        broker = make_broker(
            live_minutes=["40/day"],
            storage_uri=uri,
            renewal=True,
            secret=SECRET,
            audit=events.append,
        )
        first = (await broker.handle(post())).json()
        assert first["budget"]["remainingMinutes"] == 25
        second = await broker.handle(post({"renew": first["session"]}))
        assert second.status == 200
        assert second.json()["budget"]["remainingMinutes"] == 10
        third = await broker.handle(post({"renew": first["session"]}))
        assert third.status == 200
        assert 9.9 <= minutes_left(third.json()) <= 10.01  # cut to what is left
        refused = await broker.handle(post({"renew": first["session"]}))
        assert refused.status == 429
        assert "no Live minutes left today" in refused.json()["error"]["message"]
    assert [(e.outcome, e.charged_minutes) for e in events] == [
        ("minted", 15),
        ("renewed", 15),
        ("renewed", 10),
        ("limited", None),
    ]
    assert events[-1].reason == "budget_exhausted"


@pytest.mark.parametrize("kind", STORAGES)
async def test_twenty_at_once_with_room_for_three_mint_exactly_three(
    gemini_emulator: Emulator, kind: str
) -> None:
    with storage(kind) as uri:
        # Two brokers on one storage: two replicas' worth (one process here; the serve test
        # runs two processes).
        options: dict[str, Any] = {"live_minutes": ["45/day"], "storage_uri": uri}
        replicas = [make_broker(**options), make_broker(**options)]
        if kind == "memory":
            replicas = replicas[:1]
        answers = await asyncio.gather(
            *(replicas[i % len(replicas)].handle(post()) for i in range(20))
        )
        statuses = sorted(a.status for a in answers)
        assert statuses == [200] * 3 + [429] * 17
        minted = [a.json() for a in answers if a.status == 200]
        assert all(14.9 <= minutes_left(m) <= 15.01 for m in minted)
        assert len(gemini_emulator.tokens) == 3
        assert [b.remaining_minutes for b in (await replicas[0].usage("alice")).budgets] == [0]


@needs_redis
async def test_a_lost_race_takes_what_is_left(gemini_emulator: Emulator) -> None:
    with redis_server() as uri:
        # Room for one whole token and 10 minutes: 2 tokens, the second cut to 10.
        options: dict[str, Any] = {"live_minutes": ["25/day"], "storage_uri": uri}
        replicas = [make_broker(**options), make_broker(**options)]
        answers = await asyncio.gather(*(replicas[i % 2].handle(post()) for i in range(10)))
        minted = sorted(round(minutes_left(a.json())) for a in answers if a.status == 200)
        assert minted == [10, 15]
        usage = await replicas[0].usage("alice")
        assert usage.budgets[0].remaining_minutes == 0


@pytest.mark.parametrize("kind", STORAGES)
async def test_a_suspension_refuses_first_tokens_and_renewals_on_every_replica(
    gemini_emulator: Emulator, kind: str
) -> None:
    events: list[AuditEvent] = []
    with storage(kind) as uri:
        options: dict[str, Any] = {
            "storage_uri": uri,
            "suspensions": True,
            "renewal": True,
            "secret": SECRET,
            "audit": events.append,
        }
        one = make_broker(**options)
        two = make_broker(**options) if kind == "redis" else one
        first = (await one.handle(post())).json()
        suspension = await one.suspend("alice", reason="abuse of the demo")
        assert suspension.until is None
        for broker in (one, two):
            refused = await broker.handle(post())
            assert refused.status == 403
            assert refused.json()["error"]["message"] == (
                "you may not start Live sessions: abuse of the demo"
            )
            renewal = await broker.handle(post({"renew": first["session"]}))
            assert renewal.status == 403
        assert (await two.handle(post(user="bob"))).status == 200
        usage = await two.usage("alice")
        assert usage.suspension is not None
        assert usage.suspension.reason == "abuse of the demo"
        assert (await two.handle(get_usage())).json()["suspended"]["reason"] == "abuse of the demo"
        assert await two.reinstate("alice") is True
        assert await two.reinstate("alice") is False
        assert (await one.handle(post())).status == 200
        # A suspension for a while ends by itself.
        await one.suspend("bob", duration=dt.timedelta(seconds=1), reason="cool down")
        assert (await two.handle(post(user="bob"))).status == 403
        await asyncio.sleep(1.2)
        assert (await two.handle(post(user="bob"))).status == 200
    # Checked before the mint: the refusals minted nothing.
    assert len(gemini_emulator.tokens) == 4
    refusals = [(e.outcome, e.reason) for e in events if e.status == 403]
    assert refusals == [("denied", "suspended")] * 5


async def test_bad_input_names_the_argument(gemini_emulator: Emulator) -> None:
    with pytest.raises(ConfigurationError, match="live_minutes: cannot parse 'lots'"):
        make_broker(live_minutes=["lots"])
    with pytest.raises(ConfigurationError, match="global_live_minutes"):
        make_broker(global_live_minutes=["60/fortnight"])
    with pytest.raises(ConfigurationError, match="suspensions"):
        make_broker(live_minutes=["60/day"], suspensions=False)
    broker = make_broker(live_minutes=["60/day"])
    with pytest.raises(ValueError, match="duration: must be positive"):
        await broker.suspend("alice", duration=-5, reason="x")
    with pytest.raises(ValueError, match="caller_id: must be a non-empty string"):
        await broker.suspend("", reason="x")
    with pytest.raises(ValueError, match="caller_id"):
        await broker.usage("")
    with pytest.raises(ValueError, match="reason"):
        await broker.suspend("alice", reason=" ")
    with pytest.raises(ValueError, match="reason: must be at most 500 characters"):
        await broker.suspend("alice", reason="x" * 501)
    with pytest.raises(ValueError, match="duration: must be a timedelta"):
        await broker.suspend("alice", duration="1h", reason="x")  # type: ignore[arg-type]
    plain = make_broker()
    with pytest.raises(ConfigurationError, match="suspensions: this broker does not check"):
        await plain.suspend("alice", reason="x")
    assert (await plain.handle(get_usage())).status == 404  # no usage route without budgets


async def test_the_usage_route_needs_a_signed_in_caller_and_get(gemini_emulator: Emulator) -> None:
    broker = make_broker(live_minutes=["60/day"])
    anonymous = BrokerRequest(method="GET", path="/token/usage", subpath="/usage", headers={})
    assert (await broker.handle(anonymous)).status == 401
    posted = BrokerRequest(method="POST", path="/token/usage", subpath="/usage", headers={})
    assert (await broker.handle(posted)).status == 405
    fresh = (await broker.handle(get_usage("bob"))).json()
    assert fresh["remainingMinutes"] == 60
    assert fresh["suspended"] is None


async def test_without_budgets_a_token_is_as_before(gemini_emulator: Emulator) -> None:
    broker = make_broker(policy=policy(expire_minutes=30))
    body = (await broker.handle(post())).json()
    assert "budget" not in body
    assert 29.9 <= minutes_left(body) <= 30.01


@pytest.mark.parametrize("kind", STORAGES)
async def test_the_previous_window_is_weighed_alike_in_memory_and_redis(
    gemini_emulator: Emulator, kind: str
) -> None:
    """A window starts with its first charge; once over, its minutes come back as the
    next window runs (weighed by what is left of it), then all of them."""
    with storage(kind) as uri:
        broker = make_broker(live_minutes=["10 per 1 second"], storage_uri=uri)
        first = await broker.handle(post())
        assert 9.9 <= minutes_left(first.json()) <= 10.01  # cut to the 10 minutes
        assert first.json()["budget"]["remainingMinutes"] == 0
        refused = await broker.handle(post())
        assert refused.status == 429
        assert refused.header("Retry-After") == "1"  # a minute comes back as the window ends
        await asyncio.sleep(1.5)  # half the next window to run: 10 x 0.5 still counted
        (half,) = (await broker.usage("alice")).budgets
        assert 3 <= half.remaining_minutes <= 7, half
        await asyncio.sleep(1.2)  # both windows over
        (after,) = (await broker.usage("alice")).budgets
        assert after.remaining_minutes == 10
        assert len(gemini_emulator.tokens) == 1


async def test_openapi_shows_the_budget_the_usage_route_and_the_refusals(
    gemini_emulator: Emulator,
) -> None:
    broker = make_broker(live_minutes=["60/day"], global_live_minutes=["20000/day"], audit=None)
    document = broker.openapi()
    post_op = document["paths"]["/token"]["post"]
    token = post_op["responses"]["200"]["content"]["application/json"]["schema"]
    budget = token["properties"]["budget"]
    assert set(budget["properties"]) == {"remainingMinutes", "resetsAt"}
    assert "budget_exhausted" in post_op["responses"]["429"]["description"]
    assert "60 per 1 day, 20000 per 1 day" in post_op["responses"]["429"]["description"]
    assert "suspended" in post_op["responses"]["403"]["description"]
    usage = document["paths"]["/token/usage"]["get"]
    schema = usage["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"remainingMinutes", "resetsAt", "budgets", "suspended"} <= set(schema["properties"])
    assert "Retry-After" in usage["responses"]["503"]["headers"]
    json.dumps(document)
    # Suspensions without budgets: the usage route and the 403, no budget nor 429 reason.
    only = make_broker(suspensions=True, audit=None).openapi("/api/token")
    assert set(only["paths"]) == {"/api/token", "/api/token/usage"}
    only_op = only["paths"]["/api/token"]["post"]
    assert (
        "budget"
        not in only_op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    )
    assert "suspended" in only_op["responses"]["403"]["description"]
    assert "budget_exhausted" not in only_op["responses"]["429"]["description"]
    # Neither: as before.
    plain = make_broker(audit=None).openapi()
    assert set(plain["paths"]) == {"/token"}
    plain_op = plain["paths"]["/token"]["post"]
    assert "suspended" not in plain_op["responses"]["403"]["description"]


async def test_the_fastapi_routers_openapi_shows_the_budget(gemini_emulator: Emulator) -> None:
    from fastapi import FastAPI

    from gemini_tokens.broker.fastapi import router

    app = FastAPI()
    app.include_router(router(make_broker(live_minutes=["60/day"]), path="/token"))
    operation = app.openapi()["paths"]["/token"]["post"]
    token = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert "budget" in token["properties"]
    assert "budget_exhausted" in operation["responses"]["429"]["description"]
    assert "suspended" in operation["responses"]["403"]["description"]
