"""The emulator's test controls over HTTP, under ``/_emulator/``: for loopback callers only.

What `Emulator.go_away` and `Emulator.go_away_next` do from Python, a test in any language
(a browser app's Playwright or vitest suite, a Node or Go client) does with an HTTP request
to a ``gemini-tokens emulator`` started from the shell:

- ``GET /_emulator/sessions``: ``{"open": N, "served": M}``, the Live sessions open now
  and every Live socket served so far (accepted or refused).
- ``POST /_emulator/go-away`` with ``{"timeLeft": 5, "after": 0}``: every open session
  gets ``goAway`` ``after`` seconds from now (`Emulator.go_away`); ``{"sessions": N}``.
- ``POST /_emulator/go-away-next`` with ``{"after": 0, "timeLeft": 5, "times": 1}``: the
  next ``times`` sessions to open get it ``after`` seconds after ``setupComplete``
  (`Emulator.go_away_next`); ``{"planned": N}``.

Every key of a body is optional, and so is the body; ``timeLeft`` defaults to the
emulator's ``go_away_time_left`` (``--go-away-time-left``).

The prefix cannot be mistaken for the service's own paths (``/v1alpha/...``,
``/v1beta/...``, ``/ws/...``, ``/upload/...``: no API version starts with an underscore).
These requests are test control, not traffic: they are not recorded in `Emulator.requests`
and no fault applies to them.

Who may call: the peer of the connection must be a loopback address (the socket's own peer,
not the bind address, since a container binds ``0.0.0.0``, nor a header a client could
write), and a browser page must come from a loopback origin (a page of another site, or a
DNS-rebinding name, is refused), else 403. Answers hold counts only, never a token name, a
handle or the key.
"""

from __future__ import annotations

import ipaddress
import json
import math
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gemini_tokens import is_loopback_host
from gemini_tokens.testing._http_answers import json_response, status_body
from gemini_tokens.testing._state import EmulatorState, GoAwayPlan

__all__ = ["PREFIX", "loopback_peer", "serve_control"]

#: Where the control routes live.
PREFIX = "/_emulator/"

_ROUTES = {
    "sessions": "GET",
    "go-away": "POST",
    "go-away-next": "POST",
}
_KEYS = {
    "go-away": ("timeLeft", "after"),
    "go-away-next": ("after", "timeLeft", "times"),
}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(status, message)


def loopback_peer(request: web.BaseRequest) -> bool:
    """Whether the connection's peer is a loopback address (127.0.0.0/8, ``::1``)."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if not isinstance(peer, (tuple, list)) or not peer:
        return False  # not a TCP peer we can name: refused
    try:
        address = ipaddress.ip_address(str(peer[0]).partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # 127.0.0.1 on a dual-stack socket
    return address.is_loopback


def _loopback_origin(origin: str | None) -> bool:
    """A request without ``Origin`` (curl, a test runner), or from a loopback page."""
    if origin is None:
        return True
    try:
        host = urlsplit(origin.strip()).hostname
    except ValueError:
        return False
    return bool(host) and is_loopback_host(host or "")


def _seconds(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise _Refused(400, f"{key}: must be a non-negative number of seconds; got {value!r}")
    return float(value)


def _times(body: dict[str, Any]) -> int:
    value = body.get("times", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise _Refused(400, f"times: must be a whole number from 1 to 10000; got {value!r}")
    return value


async def _body(request: web.BaseRequest, route: str) -> dict[str, Any]:
    raw = await request.read() if request.body_exists else b""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _Refused(400, "the body must be a JSON object, or empty") from None
    if not isinstance(body, dict):
        raise _Refused(400, "the body must be a JSON object, or empty")
    known = _KEYS[route]
    for key in body:
        if key not in known:
            raise _Refused(400, f"{key}: no such field; expected {', '.join(known)}")
    return body


async def _answer(state: EmulatorState, request: web.BaseRequest, route: str) -> dict[str, Any]:
    if route == "sessions":
        return {"open": len(state.open_sockets()), "served": len(state.sessions)}
    body = await _body(request, route)
    time_left = _seconds(body, "timeLeft", state.go_away_time_left)
    after = _seconds(body, "after", 0.0)
    if route == "go-away":
        sockets = state.open_sockets()
        for sock in sockets:  # on the emulator's loop already: no hop needed
            sock.go_away(time_left, after)
        return {"sessions": len(sockets)}
    times = _times(body)
    state.plan_go_away(GoAwayPlan(after, time_left), times)
    return {"planned": times}


def _cors(origin: str | None) -> dict[str, str]:
    # A test page on a loopback origin (a Vite dev server) may read the answers.
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}


async def serve_control(
    state: EmulatorState, request: web.BaseRequest, path: str
) -> web.StreamResponse:
    """Answer one request under `PREFIX` (``path`` is the request's, slashes collapsed)."""
    origin = request.headers.get("Origin")
    route = path[len(PREFIX) :]
    try:
        if not loopback_peer(request):
            raise _Refused(403, "The emulator's control routes answer loopback callers only.")
        if not _loopback_origin(origin):
            raise _Refused(403, "The emulator's control routes refuse pages of other origins.")
        method = _ROUTES.get(route)
        if method is None:
            routes = ", ".join(f"{m} {PREFIX}{r}" for r, m in _ROUTES.items())
            raise _Refused(404, f"No such control route; the emulator's are {routes}.")
        if request.method == "OPTIONS":  # a loopback page's CORS preflight
            headers = {
                **_cors(origin),
                "Access-Control-Allow-Methods": method,
                "Access-Control-Allow-Headers": "Content-Type",
            }
            return web.Response(status=204, headers=headers)
        if request.method != method:
            return json_response(
                status_body(405, f"{PREFIX}{route} takes {method}, not {request.method}."),
                405,
                {"Allow": method, **_cors(origin)},
            )
        return json_response(await _answer(state, request, route), 200, _cors(origin))
    except _Refused as refused:
        headers = _cors(origin) if refused.status != 403 else {}
        return json_response(status_body(refused.status, refused.message), refused.status, headers)
