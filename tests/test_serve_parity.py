"""``gemini-tokens serve`` at parity with the embedded broker, in a subprocess: renewal
(``[renewal]``, the cap, the limits, the audit), a shutdown that ends within
``shutdown_timeout`` (a decision stuck upstream cut off with a 503, audited), ``/readyz``
while draining, and ``--dev`` without a config file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gemini_tokens.testing import Emulator

from . import test_serve
from .jwks_server import (  # noqa: F401  (fixtures)
    IdentityProvider,
    JWKSServer,
    idp_fixture,
    jwks_fixture,
)
from .test_serve import config, post, run_cli

emulator = test_serve.emulator  # fixtures
start = test_serve.start

pytestmark = pytest.mark.slow

SECRET = "serve-renewal-secret-" + "s" * 40
ORIGIN = {"Origin": "https://app.example.test"}


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_session_is_renewed_through_the_service_until_its_cap(
    start: Any,
    jwks: JWKSServer,
    idp: IdentityProvider,
    emulator: Emulator,
    http: Any,
    tmp_path: Path,
) -> None:
    audit = tmp_path / "audit.jsonl"
    toml = config(
        jwks.url,
        extra=f"""
        [renewal]
        enabled = true
        rate_limits = ["1/hour"]

        [audit]
        sink = "jsonl"
        path = "{audit}"
        """,
    ).replace("expire_minutes = 15", "expire_minutes = 15\nmax_session_minutes = 0.15")
    serve = start(toml, GEMINI_TOKENS_BROKER_SECRET=SECRET)
    alice = idp.token("alice")

    status, _, first = await post(http, serve.url, alice, json={"config": {"temperature": 0.5}})
    assert status == 200, first
    session = first["session"]
    assert SECRET not in session
    # The same contract as the embedded broker: the next token of the conversation.
    status, _, renewed = await post(http, serve.url, alice, json={"renew": session})
    assert status == 200, renewed
    assert renewed["name"] != first["name"]
    assert renewed["session"] == session
    assert renewed["uses"] == 1
    cap = parse_time(first["serverTime"]) + dt.timedelta(minutes=0.15)
    assert parse_time(renewed["expireTime"]) <= cap
    token = emulator.token(renewed["name"])
    assert token is not None
    assert token.uses == 1
    # config may not come with renew; another caller may not renew alice's conversation.
    status, _, body = await post(
        http, serve.url, alice, json={"renew": session, "config": {"temperature": 0.1}}
    )
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    status, _, body = await post(http, serve.url, idp.token("bob"), json={"renew": session})
    assert (status, body["error"]["message"]) == (
        403,
        "this conversation belongs to another user; start a new one",
    )
    # [renewal] rate_limits, per caller.
    status, headers, body = await post(http, serve.url, alice, json={"renew": session})
    assert (status, body["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert int(headers["Retry-After"]) >= 1
    # The policy's max_session_minutes: 9 s, less than 5 s left is past it.
    await asyncio.sleep(max(0.0, (cap - dt.datetime.now(dt.timezone.utc)).total_seconds() - 4.5))
    status, _, body = await post(http, serve.url, alice, json={"renew": session})
    assert status == 403
    assert body["error"]["message"] == (
        "this conversation reached its limit of 0.15 minutes; start a new one"
    )
    assert len(emulator.tokens) == 2

    events = [(e["outcome"], e["reason"], e["status"]) for e in audit_lines(audit)]
    assert events == [
        ("minted", "ok", 200),
        ("renewed", "ok", 200),
        ("invalid", "invalid_argument", 400),
        ("denied", "session_not_yours", 403),
        ("limited", "renewal_limit", 429),
        ("denied", "session_cap", 403),
    ]
    assert SECRET not in audit.read_text() + serve.stderr
    assert session not in audit.read_text() + serve.stderr


async def test_renewal_without_the_secret_does_not_start(
    start: Any, jwks: JWKSServer, tmp_path: Path
) -> None:
    toml = config(jwks.url, extra="[renewal]\nenabled = true\n")
    with pytest.raises(AssertionError, match="serve did not start") as info:
        start(toml, GEMINI_TOKENS_BROKER_SECRET="")
    assert "renewal.enabled: needs the signing secret in GEMINI_TOKENS_BROKER_SECRET" in str(
        info.value
    )


def test_the_docs_renewal_error_is_what_check_prints(tmp_path: Path) -> None:
    docs = (Path(__file__).parent.parent / "docs" / "serve.md").read_text()
    block = docs.split("$ gemini-tokens serve --check --config broker.toml\n", 1)[1]
    shown = " ".join(block.split("```", 1)[0].split())
    (tmp_path / "broker.toml").write_text(
        config("https://id.example.test/jwks", extra="[renewal]\nenabled = true\n")
    )
    out = run_cli(
        "serve",
        "--check",
        "--config",
        "broker.toml",
        cwd=tmp_path,
        env={"GEMINI_TOKENS_BROKER_SECRET": ""},
    )
    assert out.returncode == 2
    assert out.stderr.strip() == shown


async def test_sigterm_cuts_off_a_request_stuck_upstream_within_the_timeout(
    start: Any,
    jwks: JWKSServer,
    idp: IdentityProvider,
    emulator: Emulator,
    http: Any,
    tmp_path: Path,
) -> None:
    """#10: the service exits 0 within shutdown_timeout + 1 s, not twice the timeout; the
    request it cut off is answered 503 with Retry-After and audited once. #13: /readyz says
    503 while draining to a connection already open; a new connection is refused."""
    timeout = 2.0
    audit = tmp_path / "audit.jsonl"
    toml = config(
        jwks.url,
        extra=f"""
        [upstream]
        timeout = 30
        max_retries = 0

        [audit]
        sink = "jsonl"
        path = "{audit}"
        """,
    ).replace("shutdown_timeout = 10", f"shutdown_timeout = {timeout}")
    serve = start(toml)
    jwt = idp.token()
    assert (await post(http, serve.url, jwt))[0] == 200  # keys fetched, client warm
    # A connection kept open, as a load balancer's or a browser's would be.
    kept = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    try:
        async with kept.get(serve.base + "/readyz") as response:
            assert response.status == 200
        emulator.delay_next(timeout + 6)  # stuck upstream past the whole shutdown
        stuck = asyncio.ensure_future(post(http, serve.url, jwt, headers=ORIGIN))
        deadline = time.monotonic() + 10
        while len([r for r in emulator.requests if "auth_tokens" in r.path]) < 2:
            assert time.monotonic() < deadline, "the request never reached the emulator"
            await asyncio.sleep(0.02)
        sigterm = time.monotonic()
        serve.terminate()
        await asyncio.sleep(0.3)
        async with kept.get(serve.base + "/readyz") as response:
            assert response.status == 503
            assert await response.json() == {"status": "draining"}
        async with aiohttp.ClientSession() as fresh:
            with pytest.raises(aiohttp.ClientConnectionError):
                await post(fresh, serve.url, jwt)
    finally:
        await kept.close()

    status, headers, body = await stuck
    answered = time.monotonic() - sigterm
    assert status == 503, body
    assert body["error"] == {
        "code": 503,
        "status": "UNAVAILABLE",
        "message": "the service is shutting down; try again",
    }
    assert int(headers["Retry-After"]) >= 1
    assert headers["Access-Control-Allow-Origin"] == ORIGIN["Origin"]
    assert timeout - 0.5 <= answered <= timeout + 1
    assert serve.process.wait(timeout + 5) == 0
    exited = time.monotonic() - sigterm
    assert exited <= timeout + 1, f"exited {exited:.2f}s after SIGTERM"
    assert serve.stop() == 0

    events = audit_lines(audit)
    assert [(e["outcome"], e["reason"], e["status"]) for e in events] == [
        ("minted", "ok", 200),
        ("upstream_error", "shutdown_cut_off", 503),
    ]
    assert events[1]["origin"] == ORIGIN["Origin"]
    assert events[1]["latency_ms"] >= timeout * 1000 - 500
    assert "cutting off 1 decision(s) still waiting after 2s" in serve.stderr


async def test_a_request_on_an_open_connection_while_draining_is_refused_and_audited(
    start: Any,
    jwks: JWKSServer,
    idp: IdentityProvider,
    emulator: Emulator,
    http: Any,
    tmp_path: Path,
) -> None:
    audit = tmp_path / "audit.jsonl"
    toml = config(jwks.url, extra=f'[audit]\nsink = "jsonl"\npath = "{audit}"\n')
    serve = start(toml)
    jwt = idp.token()
    emulator.delay_next(1.5)  # keeps the service draining a while
    in_flight = asyncio.ensure_future(post(http, serve.url, jwt))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as kept:
        async with kept.get(serve.base + "/healthz") as response:
            assert response.status == 200
        deadline = time.monotonic() + 10
        while not [r for r in emulator.requests if "auth_tokens" in r.path]:
            assert time.monotonic() < deadline, "the request never reached the emulator"
            await asyncio.sleep(0.02)
        serve.terminate()
        await asyncio.sleep(0.3)
        status, headers, body = await post(kept, serve.url, jwt, headers=ORIGIN)
    assert (status, body["error"]["message"]) == (503, "shutting down")
    assert headers["Retry-After"] == "1"
    assert headers["Access-Control-Allow-Origin"] == ORIGIN["Origin"]
    assert (await in_flight)[0] == 200
    assert serve.process.wait(15) == 0
    serve.stop()
    outcomes = sorted((e["outcome"], e["reason"], e["status"]) for e in audit_lines(audit))
    assert outcomes == [("limited", "shutting_down", 503), ("minted", "ok", 200)]


async def test_dev_without_a_config_file_mints_under_a_development_policy(
    start: Any, emulator: Emulator, http: Any
) -> None:
    """#14: no broker.toml, no --config: the --model, uses=1, 10 minutes, and the banner."""
    serve = start(None, "--dev", "--port", "0", "--model", "gemini-live-dev")
    assert serve.base.startswith("http://127.0.0.1:")
    origin = {"Origin": "http://localhost:5173"}
    status, headers, body = await post(http, serve.url, None, headers=origin)
    assert status == 200, body
    assert headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    token = emulator.token(body["name"])
    assert token is not None
    assert token.uses == 1
    assert token.setup["model"] == "models/gemini-live-dev"
    minutes = (parse_time(body["expireTime"]) - parse_time(body["serverTime"])).total_seconds()
    assert 9.9 * 60 <= minutes <= 10 * 60 + 1
    assert "DEVELOPMENT MODE" in serve.stderr
    assert "No config file: a DEVELOPMENT POLICY" in serve.stderr
    assert "model gemini-live-dev, uses=1, 10 minutes" in serve.stderr
    assert serve.stop() == 0
