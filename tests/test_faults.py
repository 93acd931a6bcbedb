"""Every fault the service (or a proxy) can produce ends bounded, typed and leak-free.

A real server on 127.0.0.1 (`fault_server`) misbehaves on purpose. For each fault: the
exception's type and fields, the attempts the server saw, the elapsed time against the
policy's worst case, and (through the ``faults`` fixture) no connection, thread, task or
finalizer warning left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any

import pytest

from gemini_tokens import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    EphemeralToken,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    Timeout,
    ValidationError,
)

from .conftest import API_KEY
from .fault_server import (  # noqa: F401  (fixtures)
    ALL_FAULTS,
    SLACK,
    Exchange,
    FaultServer,
    faults_fixture,
    no_stray_tasks_fixture,
    retry_info,
    rpc_status,
    token,
    worst_case,
)

pytestmark = pytest.mark.usefixtures("no_stray_tasks")

#: Fast, but a real policy: real (tiny) sleeps, real timeouts.
POLICY = RetryPolicy(max_retries=2, initial_backoff=0.01, backoff_factor=2.0, max_backoff=0.02)
TIMEOUT = Timeout(connect=0.5, total=0.3)


def client_for(server: FaultServer, **options: object) -> AsyncClient:
    settings: dict[str, object] = {"timeout": TIMEOUT, "retry": POLICY, **options}
    return AsyncClient(API_KEY, base_url=server.base_url, **settings)  # type: ignore[arg-type]


#: No call in this module may take longer, whatever the code under test does: a broken
#: policy (say, sleeping a 3600 s hint) must fail the test, not hang the suite.
GUARD = 15.0


async def create(client: AsyncClient, **options: Any) -> EphemeralToken:
    """``client.create(**options)``, bounded by `GUARD`."""
    return await asyncio.wait_for(client.create(**options), GUARD)


@dataclass(frozen=True)
class Expect:
    exc: type[APIError]
    attempts: int
    status_code: int | None = None
    retry_after: float | None = None
    reason: str | None = None
    message: str = ""


RETRIED = POLICY.max_retries + 1
EXPECTED: dict[str, Expect] = {
    "400": Expect(BadRequestError, 1, 400, message="bad field"),
    "400-api-key-invalid": Expect(AuthenticationError, 1, 400, reason="API_KEY_INVALID"),
    "401": Expect(AuthenticationError, 1, 401),
    "403": Expect(PermissionDeniedError, 1, 403),
    "404-empty-message": Expect(NotFoundError, 1, 404, message="no message"),
    "409": Expect(APIStatusError, 1, 409),
    "408": Expect(APIStatusError, RETRIED, 408),
    "429-retry-info": Expect(RateLimitError, RETRIED, 429, retry_after=0.01),
    "429-retry-after": Expect(RateLimitError, RETRIED, 429, retry_after=0.0),
    "429-long-retry-after": Expect(RateLimitError, 1, 429, retry_after=3600.0),
    "503-long-retry-info": Expect(ServerError, 1, 503, retry_after=3600.0),
    "500": Expect(ServerError, RETRIED, 500),
    "502": Expect(ServerError, RETRIED, 502),
    "503": Expect(ServerError, RETRIED, 503),
    "504": Expect(ServerError, RETRIED, 504),
    "502-html": Expect(ServerError, RETRIED, 502, message="non-JSON (text/html)"),
    "503-empty": Expect(ServerError, RETRIED, 503, message="empty response body"),
    "500-invalid-json": Expect(ServerError, RETRIED, 500, message="unparseable"),
    "200-html": Expect(InvalidResponseError, 1, 200, message="not JSON"),
    "200-empty": Expect(InvalidResponseError, 1, 200, message="not JSON"),
    "200-invalid-json": Expect(InvalidResponseError, 1, 200, message="not JSON"),
    "200-without-name": Expect(InvalidResponseError, 1, 200, message="without a token name"),
    "200-name-not-a-string": Expect(InvalidResponseError, 1, 200, message="without a token"),
    "200-json-array": Expect(InvalidResponseError, 1, 200, message="without a token"),
    "stall-before-headers": Expect(APITimeoutError, RETRIED, message="within 0.3s"),
    "stall-mid-body": Expect(APITimeoutError, RETRIED, message="within 0.3s"),
    "close-before-response": Expect(APIConnectionError, RETRIED),
    "close-mid-headers": Expect(APIConnectionError, RETRIED),
    "close-mid-body": Expect(APIConnectionError, RETRIED),
    "reset": Expect(APIConnectionError, RETRIED),
    "200-oversized": Expect(InvalidResponseError, 1, 200, message="exceeds"),
    "200-endless": Expect(InvalidResponseError, 1, 200, message="exceeds"),
    "503-oversized": Expect(ServerError, RETRIED, 503, message="too large"),
}


def test_every_fault_has_an_expectation() -> None:
    assert set(EXPECTED) == set(ALL_FAULTS)


@pytest.mark.parametrize("fault", list(EXPECTED))
async def test_fault_is_typed_bounded_and_counted(
    faults: FaultServer, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gemini_tokens")
    expect = EXPECTED[fault]
    faults.default = ALL_FAULTS[fault]()
    async with client_for(faults) as client:
        started = time.monotonic()
        with pytest.raises(APIError) as caught:
            await create(client)
        elapsed = time.monotonic() - started
    exc = caught.value
    assert type(exc) is expect.exc
    if expect.exc is APIConnectionError:
        assert not isinstance(exc, APITimeoutError)
    assert exc.attempts == expect.attempts
    assert faults.attempts == expect.attempts
    hints = [expect.retry_after] * expect.attempts if expect.retry_after is not None else []
    assert elapsed <= worst_case(POLICY, TIMEOUT, expect.attempts, hints=hints)
    assert expect.message in str(exc)
    if expect.status_code is not None:
        assert getattr(exc, "status_code", None) == expect.status_code
    if isinstance(exc, APIStatusError):
        assert exc.retry_after == expect.retry_after
        assert exc.reason == expect.reason
    if expect.attempts > 1:
        assert f"after {expect.attempts} attempts" in str(exc)

    # Every retry, and nothing else, was logged at INFO with attempt, status and delay.
    retries = [r for r in caplog.records if r.name == "gemini_tokens"]
    assert [r.levelno for r in retries] == [logging.INFO] * (expect.attempts - 1)
    assert [getattr(r, "attempt", None) for r in retries] == list(range(1, expect.attempts))
    for record in retries:
        status = getattr(record, "status", None)
        assert status == (expect.status_code or status)
        assert isinstance(status, (int, str))
        delay = getattr(record, "delay", None)
        assert isinstance(delay, float)
        assert 0 <= delay <= (expect.retry_after or POLICY.max_backoff)
        assert f"{delay:.2f}s" in record.getMessage()


RETRYABLE = [name for name, expect in EXPECTED.items() if expect.attempts > 1]


@pytest.mark.parametrize("fault", RETRYABLE)
async def test_a_blip_is_absorbed(faults: FaultServer, fault: str) -> None:
    """Two failures, then the service recovers: the caller just gets its token."""
    faults.script(ALL_FAULTS[fault](), ALL_FAULTS[fault]())
    async with client_for(faults) as client:
        started = time.monotonic()
        result = await create(client, uses=3)
        elapsed = time.monotonic() - started
    assert isinstance(result, EphemeralToken)
    assert result.name == faults.issued_names[-1]
    assert result.uses == 3
    assert faults.attempts == 3
    hint = EXPECTED[fault].retry_after
    assert elapsed <= worst_case(POLICY, TIMEOUT, 3, hints=[hint, hint] if hint is not None else [])
    # Every attempt sent the same request.
    assert len({r.body for r in faults.requests}) == 1


async def test_connections_are_reused_but_never_after_a_broken_answer(faults: FaultServer) -> None:
    async with client_for(faults) as client:
        await create(client)
        await create(client)
        assert faults.connections_opened == 1  # keep-alive works
        for fault in ("200-oversized", "close-mid-body", "stall-mid-body"):
            faults.script(ALL_FAULTS[fault]())
            opened = faults.connections_opened
            with contextlib.suppress(APIError):
                await create(client, max_retries=0)
            # A half-read body is never left on a pooled connection: the next call works.
            await create(client, max_retries=0)
            assert faults.connections_opened == opened + 1
        assert faults.connections_open == 1


async def test_an_oversized_body_is_not_read_whole(faults: FaultServer) -> None:
    faults.default = ALL_FAULTS["200-endless"]()
    async with client_for(faults, timeout=Timeout(connect=0.5, total=10.0)) as client:
        started = time.monotonic()
        with pytest.raises(InvalidResponseError):
            await create(client)
        elapsed = time.monotonic() - started
    # Refused long before the 10 s timeout, having taken only a little over the 1 MiB limit
    # (the rest is what fits in the loopback socket buffers).
    assert elapsed < 2.0
    assert faults.body_bytes_sent < 64 * 1024 * 1024


async def test_connection_refused_is_retried_and_typed() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = AsyncClient(API_KEY, base_url=f"http://127.0.0.1:{port}", retry=POLICY)
    async with client:
        started = time.monotonic()
        with pytest.raises(APIConnectionError) as caught:
            await create(client)
        elapsed = time.monotonic() - started
    assert not isinstance(caught.value, APITimeoutError)
    assert caught.value.attempts == RETRIED
    assert elapsed <= worst_case(POLICY, TIMEOUT, RETRIED)


async def test_connect_timeout_is_separate_from_total() -> None:
    """A listener whose accept queue is full never completes the handshake."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())  # fills the queue; later SYNs are dropped
        port = listener.getsockname()[1]
        timeout = Timeout(connect=0.2, total=5.0)
        policy = RetryPolicy(max_retries=1, initial_backoff=0.01, max_backoff=0.01)
        client = AsyncClient(
            API_KEY, base_url=f"http://127.0.0.1:{port}", timeout=timeout, retry=policy
        )
        async with client:
            started = time.monotonic()
            with pytest.raises(APITimeoutError, match=r"no connection .* within 0\.2s") as caught:
                await create(client)
            elapsed = time.monotonic() - started
    assert caught.value.attempts == 2
    # Bounded by the connect timeout, not the 5 s total.
    assert elapsed <= 2 * timeout.connect + policy.backoff_ceiling(1) + SLACK


async def test_per_call_max_retries(faults: FaultServer) -> None:
    faults.default = rpc_status(503)
    async with client_for(faults) as client:
        with pytest.raises(ServerError) as caught:
            await create(client, max_retries=0)
        assert caught.value.attempts == faults.attempts == 1
        with pytest.raises(ServerError) as caught:
            await create(client, max_retries=4)
        assert caught.value.attempts == 5
        assert faults.attempts == 6
        # The per-call override keeps the client's other settings (its short backoff).
        assert client.retry == POLICY


async def test_bad_per_call_retry_options_send_nothing(faults: FaultServer) -> None:
    async with client_for(faults) as client:
        for options in (
            {"max_retries": -1},
            {"max_retries": 1.5},
            {"max_retries": True},
            {"deadline": 0},
            {"deadline": -1},
            {"deadline": float("nan")},
            {"deadline": float("inf")},
            {"deadline": "5"},
        ):
            with pytest.raises(ValidationError):
                await create(client, **options)
    assert faults.attempts == 0


def test_bad_client_retry_settings_are_configuration_errors() -> None:
    for options in (
        {"max_retries": -1},
        {"max_retry_wait": -1.0},
        {"max_retry_wait": float("nan")},
        {"retry": {"max_retries": 1}},
    ):
        with pytest.raises(ConfigurationError):
            AsyncClient(API_KEY, **options)


def test_an_api_key_that_cannot_travel_in_a_header_is_refused_up_front() -> None:
    for key in ("key\nwith-newline", "kéy", "key\x00"):
        with pytest.raises(ConfigurationError, match="printable ASCII") as caught:
            AsyncClient(key)
        assert key not in str(caught.value)


def test_client_retry_settings_combine() -> None:
    base = RetryPolicy(max_retries=5, initial_backoff=0.1)
    client = AsyncClient(API_KEY, retry=base, max_retry_wait=3.0)
    assert client.retry == RetryPolicy(max_retries=5, initial_backoff=0.1, max_retry_wait=3.0)
    assert AsyncClient(API_KEY).retry == RetryPolicy()
    assert AsyncClient(API_KEY, max_retries=0).retry.max_retries == 0


async def test_deadline_bounds_attempts_and_sleeps_together(faults: FaultServer) -> None:
    faults.default = ALL_FAULTS["stall-before-headers"]()
    timeout = Timeout(connect=0.5, total=0.3)
    policy = RetryPolicy(max_retries=10, initial_backoff=0.05, max_backoff=0.05)
    async with client_for(faults, timeout=timeout, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as caught:
            await create(client, deadline=0.5)
        elapsed = time.monotonic() - started
    # Without the deadline, 11 attempts would take 3.8 s.
    assert 0.3 <= elapsed <= 0.5 + SLACK
    assert caught.value.attempts == faults.attempts
    assert 1 <= faults.attempts <= 2


async def test_a_hint_past_the_deadline_fails_at_once(faults: FaultServer) -> None:
    faults.default = rpc_status(503, retry_after="2")
    async with client_for(faults) as client:
        started = time.monotonic()
        with pytest.raises(ServerError) as caught:
            await create(client, deadline=1.0)
        elapsed = time.monotonic() - started
    assert caught.value.attempts == faults.attempts == 1
    assert caught.value.retry_after == 2.0
    assert elapsed <= TIMEOUT.total + SLACK


async def test_a_long_hint_is_raised_not_slept_so_a_handler_can_pass_it_on(
    faults: FaultServer,
) -> None:
    faults.default = rpc_status(429, retry_after="21")  # just over max_retry_wait (20 s)
    async with client_for(faults, retry=RetryPolicy()) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitError) as caught:
            await create(client)
        elapsed = time.monotonic() - started
    assert caught.value.retry_after == 21.0
    assert caught.value.attempts == 1
    assert elapsed <= TIMEOUT.total + SLACK


async def test_max_retry_wait_is_configurable(faults: FaultServer) -> None:
    faults.script(rpc_status(429, details=[retry_info("0.3s")]))
    async with client_for(faults, max_retry_wait=0.2) as client:
        with pytest.raises(RateLimitError) as caught:
            await create(client)
        assert caught.value.retry_after == pytest.approx(0.3)
        assert faults.attempts == 1
    faults.script(rpc_status(429, details=[retry_info("0.3s")]))
    async with client_for(faults, max_retry_wait=0.5) as client:
        await create(client)  # slept 0.3 s, then got its token
    assert faults.attempts == 3


async def test_server_hints_are_honoured(faults: FaultServer) -> None:
    """A hint wins over the (here much shorter) backoff: the client really waits for it."""
    faults.script(
        rpc_status(503, details=[retry_info("0.2s")]),
        rpc_status(429, retry_after="0.3"),
        # The header wins over RetryInfo when both are given.
        rpc_status(503, retry_after="0.1", details=[retry_info("30s")]),
    )
    policy = RetryPolicy(max_retries=3, initial_backoff=0.001, max_backoff=0.001)
    async with client_for(faults, retry=policy) as client:
        started = time.monotonic()
        await create(client)
        elapsed = time.monotonic() - started
    assert faults.attempts == 4
    assert 0.6 <= elapsed <= worst_case(policy, TIMEOUT, 4, hints=[0.2, 0.3, 0.1])


async def test_http_date_hints(faults: FaultServer) -> None:
    past = "Wed, 21 Oct 2015 07:28:00 GMT"  # already passed: retry at once
    faults.script(rpc_status(503, retry_after=past))
    async with client_for(faults) as client:
        await create(client)
    assert faults.attempts == 2
    future = "Fri, 01 Jan 2100 00:00:00 GMT"  # far beyond max_retry_wait: raised at once
    faults.default = rpc_status(503, retry_after=future)
    async with client_for(faults) as client:
        with pytest.raises(ServerError) as caught:
            await create(client)
    assert caught.value.attempts == 1
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 365 * 24 * 3600


async def test_real_backoff_stays_within_the_policy(
    faults: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real sleeps: with jitter pinned to its ceiling, the time spent is the ceilings' sum."""
    policy = RetryPolicy(max_retries=3, initial_backoff=0.1, backoff_factor=2.0, max_backoff=0.15)
    ceilings = [policy.backoff_ceiling(n) for n in (1, 2, 3)]
    assert ceilings == [0.1, 0.15, 0.15]
    drawn: list[tuple[float, float]] = []

    def worst(low: float, high: float) -> float:
        drawn.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", worst)
    faults.default = rpc_status(503)
    async with client_for(faults, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(ServerError):
            await create(client)
        elapsed = time.monotonic() - started
    assert drawn == [(0.0, c) for c in ceilings]
    assert sum(ceilings) <= elapsed <= worst_case(policy, TIMEOUT, 4)


async def test_default_policy_bound(faults: FaultServer) -> None:
    """The defaults (3 attempts, ceilings 0.5 s and 1 s) on a hard outage: bounded."""
    faults.default = rpc_status(500)
    policy = RetryPolicy()
    async with client_for(faults, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(ServerError) as caught:
            await create(client)
        elapsed = time.monotonic() - started
    assert caught.value.attempts == 3
    assert elapsed <= worst_case(policy, TIMEOUT, 3)


async def test_no_leak_when_the_client_is_never_used_again(faults: FaultServer) -> None:
    """A fault in the middle of a body, then close: the pool is emptied."""
    faults.script(ALL_FAULTS["stall-mid-body"]())
    client = client_for(faults)
    with pytest.raises(APITimeoutError):
        await create(client, max_retries=0)
    await client.close()
    assert await faults.until_idle()


async def test_cancelled_mid_stall_closes_the_connection(faults: FaultServer) -> None:
    faults.default = ALL_FAULTS["stall-before-headers"]()
    async with client_for(faults, timeout=Timeout(connect=0.5, total=30.0)) as client:
        task = asyncio.create_task(client.create())
        await faults.until_attempts(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The client dropped the half-used connection at once, not at close().
        assert await faults.until_idle(2.0)
        assert faults.attempts == 1


async def test_unknown_status_codes_are_not_retried(faults: FaultServer) -> None:
    faults.default = rpc_status(418)
    async with client_for(faults) as client:
        with pytest.raises(APIStatusError) as caught:
            await create(client)
    assert type(caught.value) is APIStatusError
    assert caught.value.status_code == 418
    assert faults.attempts == 1


async def test_a_redirect_is_not_followed(faults: FaultServer) -> None:
    """The API key must never be replayed to wherever a redirect points."""
    faults.default = rpc_status(302, headers={"Location": "http://127.0.0.1:9/steal"})
    async with client_for(faults) as client:
        with pytest.raises(APIStatusError) as caught:
            await create(client)
    assert caught.value.status_code == 302
    assert faults.attempts == 1


async def test_a_token_body_with_absurd_fields_still_gives_the_token(
    faults: FaultServer,
) -> None:
    """A 2xx with a name but absurd fields keeps the minted token (with what we asked for)."""
    faults.script(token(expireTime="0001-01-01T00:00:00+01:00"))
    async with client_for(faults) as client:
        outcome = await create(client)
    assert isinstance(outcome, EphemeralToken)
    assert outcome.expire_time is not None
    assert outcome.expire_time.year > 2000  # the expiry we asked for, not the absurd echo
    assert faults.attempts == 1


# -- the "Errors and retries" page's handler (examples/errors_handler.py) --------------------------

#: fault -> (status, Retry-After) that a web endpoint answers its own caller
HANDLER_ANSWERS: dict[str, tuple[int, str | None]] = {
    "400": (500, None),
    "400-api-key-invalid": (500, None),
    "401": (500, None),
    "403": (500, None),
    "404-empty-message": (500, None),
    "409": (500, None),
    "408": (503, "5"),
    "429-retry-info": (429, "1"),
    "429-retry-after": (429, "1"),
    "429-long-retry-after": (429, "3600"),
    "503-long-retry-info": (503, "3600"),
    "500": (503, "5"),
    "502": (503, "5"),
    "503": (503, "5"),
    "504": (503, "5"),
    "502-html": (503, "5"),
    "503-empty": (503, "5"),
    "500-invalid-json": (503, "5"),
    "200-html": (502, None),
    "200-empty": (502, None),
    "200-invalid-json": (502, None),
    "200-without-name": (502, None),
    "200-name-not-a-string": (502, None),
    "200-json-array": (502, None),
    "stall-before-headers": (503, "5"),
    "stall-mid-body": (503, "5"),
    "close-before-response": (503, "5"),
    "close-mid-headers": (503, "5"),
    "close-mid-body": (503, "5"),
    "reset": (503, "5"),
    "200-oversized": (502, None),
    "200-endless": (502, None),
    "503-oversized": (503, "5"),
}


def test_every_fault_has_a_handler_answer() -> None:
    assert set(HANDLER_ANSWERS) == set(ALL_FAULTS)


@pytest.mark.parametrize("fault", list(HANDLER_ANSWERS))
async def test_errors_handler_answers_every_fault(faults: FaultServer, fault: str) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from examples import errors_handler

    faults.default = ALL_FAULTS[fault]()
    status, retry_after = HANDLER_ANSWERS[fault]
    async with client_for(faults, max_retries=0) as client:
        with pytest.raises(APIError) as caught:
            await create(client)
        assert errors_handler.answer_for(caught.value) == (
            status,
            {} if retry_after is None else {"Retry-After": retry_after},
            errors_handler.answer_for(caught.value).text,
        )
        # The same through the aiohttp app's middleware, over HTTP.
        app = errors_handler.make_aiohttp_app(client)
        async with TestClient(TestServer(app, host="127.0.0.1")) as http:
            response = await http.post("/token")
            assert response.status == status
            assert response.headers.get("Retry-After") == retry_after
            assert (await response.json())["error"]


async def test_errors_handler_apps_mint_and_pass_retry_after_on(faults: FaultServer) -> None:
    import httpx
    from aiohttp.test_utils import TestClient, TestServer

    from examples import errors_handler

    async with client_for(faults) as client:
        # aiohttp: a blip is absorbed by the client's retries; the caller just gets a token.
        faults.script(rpc_status(503))
        app = errors_handler.make_aiohttp_app(client)
        async with TestClient(TestServer(app, host="127.0.0.1")) as http:
            response = await http.post("/token")
            assert response.status == 200
            assert (await response.json())["name"] == faults.issued_names[-1]
            faults.script(rpc_status(429, retry_after="42"))
            response = await http.post("/token")
            assert response.status == 429
            assert response.headers["Retry-After"] == "42"

        # FastAPI: the same, through its exception handler.
        transport = httpx.ASGITransport(app=errors_handler.make_fastapi_app(client))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            ok = await http.post("/token")
            assert ok.status_code == 200
            assert ok.json()["name"] == faults.issued_names[-1]
            faults.script(rpc_status(503, details=[retry_info("120s")]))
            busy = await http.post("/token")
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "120"
            assert busy.json() == {"error": "try again later"}
            faults.default = rpc_status(403)
            refused = await http.post("/token")
            assert refused.status_code == 500
            assert API_KEY not in refused.text


def test_errors_handler_logs_configuration_errors_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from examples import errors_handler
    from gemini_tokens._errors import error_from_response

    caplog.set_level(logging.ERROR)
    body = b'{"error": {"code": 400, "message": "key %s invalid", "status": "INVALID_ARGUMENT"}}'
    exc = error_from_response(400, body.replace(b"%s", API_KEY.encode()), redact=(API_KEY,))
    assert errors_handler.answer_for(exc).status == 500
    (record,) = caplog.records
    assert "INVALID_ARGUMENT" in record.getMessage()
    assert API_KEY not in record.getMessage()
    assert errors_handler.answer_for(ValidationError("uses", "bad")).status == 500


async def test_a_declared_oversized_body_is_refused_before_reading(faults: FaultServer) -> None:
    """Content-Length over the limit: refused at once, without waiting for a single byte."""

    async def declare_then_stall(ex: Exchange) -> bool:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        await ex.send(head + b"Content-Length: 2097152\r\n\r\n{")
        await ex.wait_for_client_to_leave()  # a client reading the body would time out
        return False

    faults.default = declare_then_stall
    async with client_for(faults, timeout=Timeout(connect=0.5, total=5.0)) as client:
        started = time.monotonic()
        with pytest.raises(InvalidResponseError, match="exceeds"):
            await create(client)
        assert time.monotonic() - started < SLACK
