"""The emulator's loopback-only test controls: ``/_emulator/go-away``, ``go-away-next``...

Driven over HTTP against an emulator on 127.0.0.1, as a test in another language drives
``gemini-tokens emulator``; the refusal of a peer that is not on loopback is checked at unit
level (a mocked request whose transport names the peer: no traffic to that address).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from gemini_tokens.testing import Clock, Emulator, LiveSession
from gemini_tokens.testing._control import loopback_peer, serve_control
from gemini_tokens.testing._state import EmulatorState

from .conftest import mint

MODEL = "gemini-live-2.5-flash-preview"
DEADLINE = "Deadline expired before operation could complete."


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.data, msg.extra)
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def open_session(
    emu: Emulator, http: aiohttp.ClientSession, uses: int = 1
) -> aiohttp.ClientWebSocketResponse:
    """A Live session opened with a fresh token, past its ``setupComplete``."""
    token = await mint(emu, uses=uses, live_connect_constraints={"model": MODEL})
    ws = await http.ws_connect(token.live_url())
    await ws.send_json({"setup": {"model": MODEL}})
    assert "setupComplete" in await next_json(ws)
    return ws


async def control(
    http: aiohttp.ClientSession,
    emu: Emulator,
    method: str,
    route: str,
    body: Any = None,
    **options: Any,
) -> tuple[int, Any, str]:
    """Call a control route: the status, the JSON answer and its text."""
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    async with http.request(
        method, f"{emu.base_url}/_emulator/{route}", data=data, **options
    ) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None), text


# -- go-away: the open sessions ------------------------------------------------------------


async def test_go_away_reaches_every_open_session(emu: Emulator, http: Any) -> None:
    first = await open_session(emu, http)
    second = await open_session(emu, http)
    assert (await control(http, emu, "GET", "sessions"))[:2] == (200, {"open": 2, "served": 2})

    status, answer, text = await control(http, emu, "POST", "go-away", {"timeLeft": 0.2})

    assert (status, answer) == (200, {"sessions": 2})
    for ws in (first, second):
        assert await next_json(ws) == {"goAway": {"timeLeft": "0.2s"}}
        msg = await ws.receive(timeout=5)  # closed once timeLeft has passed
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (ws.close_code, msg.extra) == (1011, DEADLINE)
    assert [session.go_away for session in emu.sessions] == [0.2, 0.2]
    assert (await control(http, emu, "GET", "sessions"))[:2] == (200, {"open": 0, "served": 2})
    # Counts only: no token name, and the control requests are not recorded as traffic.
    assert "auth_tokens" not in text
    live = "/ws/google.ai.generativelanguage.v1alpha.GenerativeService."
    live += "BidiGenerateContentConstrained"
    assert [r.path for r in emu.requests] == ["/v1alpha/auth_tokens", live] * 2


async def test_no_body_announces_the_emulators_time_left(http: Any) -> None:
    async with Emulator(go_away_time_left=1.5) as emu:
        ws = await open_session(emu, http)
        assert (await control(http, emu, "POST", "go-away"))[:2] == (200, {"sessions": 1})
        assert await next_json(ws) == {"goAway": {"timeLeft": "1.5s"}}
        await ws.close()


async def test_after_delays_the_go_away(emu: Emulator, http: Any) -> None:
    ws = await open_session(emu, http)
    started = time.monotonic()
    answer = await control(http, emu, "POST", "go-away", {"after": 0.4, "timeLeft": 0})
    assert answer[:2] == (200, {"sessions": 1})  # answered at once
    assert await next_json(ws) == {"goAway": {"timeLeft": "0s"}}
    assert time.monotonic() - started >= 0.35
    await ws.receive(timeout=5)
    assert ws.close_code == 1011


async def test_no_open_session_is_zero(emu: Emulator, http: Any) -> None:
    assert (await control(http, emu, "POST", "go-away", {}))[:2] == (200, {"sessions": 0})


# -- go-away-next: the next sessions -------------------------------------------------------


async def test_go_away_next_plans_for_the_next_sessions(emu: Emulator, http: Any) -> None:
    body = {"after": 0, "timeLeft": 0.1, "times": 1}
    assert (await control(http, emu, "POST", "go-away-next", body))[:2] == (
        200,
        {"planned": 1},
    )
    planned = await open_session(emu, http)
    assert await next_json(planned) == {"goAway": {"timeLeft": "0.1s"}}
    await planned.receive(timeout=5)
    assert planned.close_code == 1011
    # Only the next one: the session after it is not told to go away.
    unplanned = await open_session(emu, http)
    with pytest.raises(asyncio.TimeoutError):
        await unplanned.receive(timeout=0.5)
    await unplanned.close()
    assert [session.go_away for session in emu.sessions] == [0.1, None]


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        ("go-away", {"timeLeft": -1}, "timeLeft: must be a non-negative number of seconds"),
        ("go-away", {"timeLeft": True}, "timeLeft: must be a non-negative number of seconds"),
        ("go-away", {"after": "1"}, "after: must be a non-negative number of seconds"),
        ("go-away", {"time_left": 1}, "time_left: no such field; expected timeLeft, after"),
        ("go-away", "[1]", "the body must be a JSON object, or empty"),
        ("go-away", "not json", "the body must be a JSON object, or empty"),
        ("go-away-next", {"times": 0}, "times: must be a whole number from 1 to 10000"),
        ("go-away-next", {"times": 1.5}, "times: must be a whole number from 1 to 10000"),
        ("go-away-next", {"after": float("nan")}, "after: must be a non-negative number"),
    ],
)
async def test_a_bad_body_is_400_naming_the_field_and_the_rule(
    emu: Emulator, http: Any, route: str, body: Any, message: str
) -> None:
    ws = await open_session(emu, http)
    status, answer, _ = await control(http, emu, "POST", route, body)
    assert status == 400
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    assert answer["error"]["message"].startswith(message), answer
    with pytest.raises(asyncio.TimeoutError):  # nothing was sent
        await ws.receive(timeout=0.3)
    assert emu.sessions[0].go_away is None
    await ws.close()


async def test_wrong_method_and_unknown_route(emu: Emulator, http: Any) -> None:
    status, answer, _ = await control(http, emu, "GET", "go-away")
    assert (status, answer["error"]["status"]) == (405, "UNIMPLEMENTED")
    status, answer, _ = await control(http, emu, "POST", "sessions")
    assert status == 405
    status, answer, _ = await control(http, emu, "POST", "go-away-now")
    assert status == 404
    assert "POST /_emulator/go-away," in answer["error"]["message"]


async def test_the_control_routes_are_absent_from_the_real_api_paths(
    emu: Emulator, http: Any
) -> None:
    ws = await open_session(emu, http)
    for path in (
        "/v1alpha/_emulator/go-away",
        "/v1beta/_emulator/go-away",
        "/ws/_emulator/go-away",
        "/_emulator",
        "/emulator/go-away",
    ):
        async with http.post(emu.base_url + path) as response:
            assert response.status == 404, path
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive(timeout=0.3)
    assert emu.sessions[0].go_away is None
    await ws.close()
    # Still the real paths of the service: minting is served as before.
    assert (await mint(emu)).name.startswith("auth_tokens/")


async def test_faults_do_not_apply_to_control_requests(emu: Emulator, http: Any) -> None:
    emu.fail_next(503)
    assert (await control(http, emu, "GET", "sessions"))[0] == 200
    async with http.post(f"{emu.base_url}/v1alpha/auth_tokens", json={}) as response:
        assert response.status == 503  # the fault waited for the service's traffic


async def test_a_page_of_another_origin_is_refused(emu: Emulator, http: Any) -> None:
    ws = await open_session(emu, http)
    for origin in ("https://example.com", "http://127.0.0.1.example.com:8080", "null"):
        status, answer, _ = await control(http, emu, "POST", "go-away", headers={"Origin": origin})
        assert (status, answer["error"]["status"]) == (403, "PERMISSION_DENIED"), origin
    assert emu.sessions[0].go_away is None
    # A test page served from loopback (a dev server) may call it and read the answer.
    origin = "http://localhost:5173"
    status, _, _ = await control(http, emu, "OPTIONS", "go-away", headers={"Origin": origin})
    assert status == 204
    async with http.post(
        f"{emu.base_url}/_emulator/go-away", headers={"Origin": origin}
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert await response.json() == {"sessions": 1}
    assert await next_json(ws) == {"goAway": {"timeLeft": "5s"}}
    await ws.close()


# -- the peer, at unit level ---------------------------------------------------------------


class FakeSocket:
    """An open, accepted Live socket that records the goAway it is told to send."""

    def __init__(self) -> None:
        self.record = LiveSession(method="BidiGenerateContentConstrained", api_version="v1alpha")
        self.record.accepted = True
        self.record.token_name = "auth_tokens/secret-name"
        self.closed = False
        self.told: list[tuple[float, float]] = []

    def go_away(self, time_left: float, after: float = 0.0) -> None:
        self.told.append((time_left, after))

    async def close(self, code: int, reason: str) -> None:  # pragma: no cover - unused
        self.closed = True


def _request(method: str, route: str, peer: Any, headers: Any = None) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        peer if name == "peername" else default
    )
    return make_mocked_request(method, f"/_emulator/{route}", headers, transport=transport)


def _state_with_a_session() -> tuple[EmulatorState, FakeSocket]:
    state = EmulatorState(api_key="emulator-key", clock=Clock())
    sock = FakeSocket()
    state.sessions.append(sock.record)
    state.sockets.add(sock)
    return state, sock


@pytest.mark.parametrize(
    "peer",
    [
        ("10.0.0.1", 52000),
        ("192.168.1.20", 52000),
        ("0.0.0.0", 52000),
        ("::ffff:10.0.0.1", 52000, 0, 0),
        ("2001:db8::1", 52000, 0, 0),
        ("fe80::1%eth0", 52000, 0, 2),
        None,  # no TCP peer to name
        "/run/emulator.sock",
    ],
    ids=str,
)
@pytest.mark.parametrize(
    ("method", "route"), [("POST", "go-away"), ("POST", "go-away-next"), ("GET", "sessions")]
)
async def test_a_peer_not_on_loopback_is_refused(peer: Any, method: str, route: str) -> None:
    state, sock = _state_with_a_session()
    request = _request(method, route, peer)
    assert not loopback_peer(request)

    response = await serve_control(state, request, f"/_emulator/{route}")

    assert response.status == 403
    body = json.loads(response.body)  # type: ignore[attr-defined]
    assert body["error"] == {
        "code": 403,
        "message": "The emulator's control routes answer loopback callers only.",
        "status": "PERMISSION_DENIED",
    }
    assert "Access-Control-Allow-Origin" not in response.headers
    assert sock.told == []
    assert not state.planned


@pytest.mark.parametrize(
    "peer",
    [
        ("127.0.0.1", 52000),
        ("127.10.20.30", 52000),
        ("::1", 52000, 0, 0),
        ("::ffff:127.0.0.1", 52000, 0, 0),  # a dual-stack socket's IPv4 loopback
    ],
    ids=str,
)
async def test_a_loopback_peer_is_served(peer: Any) -> None:
    state, sock = _state_with_a_session()
    request = _request("POST", "go-away", peer)
    assert loopback_peer(request)

    response = await serve_control(state, request, "/_emulator/go-away")

    assert response.status == 200
    text = response.body.decode()  # type: ignore[attr-defined]
    assert json.loads(text) == {"sessions": 1}
    assert "auth_tokens" not in text  # never the session's token name
    assert sock.told == [(5.0, 0.0)]


async def test_the_peer_is_the_sockets_not_a_forwarding_header() -> None:
    state, sock = _state_with_a_session()
    headers = {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1", "Host": "127.0.0.1"}
    request = _request("POST", "go-away", ("10.0.0.1", 52000), headers)
    response = await serve_control(state, request, "/_emulator/go-away")
    assert response.status == 403
    assert sock.told == []


def test_the_default_time_left_is_checked_without_go_away_after() -> None:
    # It is also the control route's default timeLeft, so it is checked on its own.
    with pytest.raises(ValueError, match="go_away_time_left must be a non-negative number"):
        Emulator(go_away_time_left=-1)
