"""`Emulator`: a local stand-in for the token service and the Live API.

One aiohttp application answers ``POST /v1alpha/auth_tokens`` (`_minting`, validated as the
service does) and the Live API WebSocket (`_live`), on 127.0.0.1 and a free port. It keeps
records (`tokens`, `requests`, `sessions`), has a clock a test can advance, and can be told
to fail, stall or drop the next requests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import re
import secrets
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from gemini_tokens.testing._clock import Clock
from gemini_tokens.testing._core import ConfigurationError, live_url
from gemini_tokens.testing._http_answers import DROP, Fail, json_response, status_body
from gemini_tokens.testing._minting import create_token
from gemini_tokens.testing._records import IssuedToken, LiveSession, RecordedRequest
from gemini_tokens.testing._state import EmulatorState, GoAwayPlan

if TYPE_CHECKING:
    import ssl
    from types import TracebackType

    from aiohttp import web

    from gemini_tokens.testing._tls import ThrowawayCA

__all__ = ["Emulator", "status_body"]

E = TypeVar("E", bound="Emulator")

_WS_PATH = re.compile(
    r"/ws/google\.ai\.generativelanguage\.(v1alpha|v1beta)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)"
)
_TOKEN_PATH = re.compile(r"/(v[0-9][a-z0-9]*)/auth_tokens")


class Emulator:
    """A faithful local stand-in for the token service and the Live API.

    Use it as ``async with Emulator() as emu:`` on your test's event loop, or, from sync code,
    ``with Emulator.running() as emu:`` (it then runs on its own loop in its own thread).
    Point a client at ``emu.base_url`` with ``emu.api_key``::

        async with Emulator() as emu:
            async with gemini_tokens.AsyncClient(emu.api_key, base_url=emu.base_url) as client:
                token = await client.create(live_connect_constraints={"model": "m"})
            assert emu.tokens[0].setup == {"model": "models/m"}

    What it serves:

    - ``POST /v1alpha/auth_tokens``: checks ``x-goog-api-key`` (400 ``API_KEY_INVALID`` for a
      wrong key, 403 for none, 401 for a bearer credential), validates the body as the service
      does (unknown fields, times in the past or 20 h or more ahead, negative ``uses``, invalid
      or uncovering field masks: 400 with ``BadRequest`` details), applies the defaults
      (``uses`` 1, expiry in 30 minutes, new sessions for 60 seconds) and answers the AuthToken
      with a random ``auth_tokens/...`` name. Another API version: 404.
    - the Live API WebSocket: the ``BidiGenerateContentConstrained`` method takes a token as
      the ``access_token`` query parameter or an ``Authorization: Token ...`` header and
      enforces it, closing the socket after the client's first message with the service's
      codes: unknown token 1008 "Auth token not found.", expired 1008 "Auth token has
      expired." (also on the next message of an open session), past ``newSessionExpireTime``
      1008, used up 1011 "Token has been used too many times", first message not ``setup``,
      a second ``setup`` or an invalid field 1007. The effective setup follows the locking
      rules (no mask: the token's setup whole; a mask: the masked paths from the token, the
      rest from the client). The plain ``BidiGenerateContent`` method takes the API key and
      refuses tokens (1008 "Method doesn't allow unregistered callers ..."). A
      ``clientContent`` text turn gets a deterministic text reply stating the effective
      model, modalities and temperature, then ``turnComplete``; a session whose modalities
      include ``AUDIO`` gets audio (``audio/pcm;rate=24000``) and, when asked for, output
      transcription; streamed ``realtimeInput`` audio is answered once the client ends it.
    - Reading: bodies and messages are read by proto3's JSON rules (camelCase or
      snake_case names, integers as numbers or decimal strings, enums by their exact name),
      strictly otherwise (unknown fields, wrong types, out-of-range values refused).
    - Long sessions: with ``sessionResumption`` in the setup it issues handles; resuming
      with one restores the conversation (later replies tell the earlier turns) and is
      refused (1011) while the old socket is open. It sends ``goAway {timeLeft}`` and then
      closes (1011) when told: `go_away`, `go_away_next` or ``go_away_after``.
    - Test controls for callers on loopback only, so that a test in another language can
      do the same (``gemini-tokens emulator`` serves them too): ``POST /_emulator/go-away``
      (`go_away`), ``POST /_emulator/go-away-next`` (`go_away_next`) and
      ``GET /_emulator/sessions`` (how many are open). Not the service's, not recorded in
      `requests`, untouched by faults; a caller that is not on loopback gets 403.

    Args:
        api_key: The key it accepts. Default: a random one (see `api_key`).
        host: The address to bind; loopback by default.
        port: The port; 0 picks a free one.
        tls: Serve https and wss with a throwaway CA made at start (needs ``trustme``); see
            `ca_file` and `ssl_context`.
        clock: The clock token times are checked against. Default: real time, advanced by
            `advance`.
        count_resumption_as_use: Count resuming a session with a handle as a use, as users
            report the service doing (the documentation says it is not a use).
        go_away_after: Send every session ``goAway`` this many seconds (real time) after
            ``setupComplete``; None (the default) never does. See `go_away`.
        go_away_time_left: The ``timeLeft`` those ``goAway`` messages announce, in seconds:
            the socket is closed (1011) that long after, unless the client closed it first.
            Also the ``timeLeft`` of a ``/_emulator/go-away`` request that names none.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        clock: Clock | None = None,
        count_resumption_as_use: bool = False,
        go_away_after: float | None = None,
        go_away_time_left: float = 5.0,
    ) -> None:
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
            raise ConfigurationError("api_key must be a non-empty string")
        time_left = _seconds(go_away_time_left, "go_away_time_left")
        plan = None
        if go_away_after is not None:
            plan = GoAwayPlan(_seconds(go_away_after, "go_away_after"), time_left)
        self._host = host
        self._port = port
        self._tls = tls
        self._state = EmulatorState(
            api_key=api_key.strip() if api_key else "emulator-" + secrets.token_urlsafe(18),
            clock=clock if clock is not None else Clock(),
            count_resumption_as_use=count_resumption_as_use,
            go_away=plan,
            go_away_time_left=time_left,
        )
        self._requests: list[RecordedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._faults: collections.deque[Fail | str] = collections.deque()
        self._delays: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._ca: ThrowawayCA | None = None
        self._stopping: asyncio.Event | None = None
        self._base_url: str | None = None

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return f"Emulator({where}, tls={self._tls}, tokens={len(self._state.tokens)})"

    # -- lifetime ----------------------------------------------------------------------------

    async def start(self: E) -> E:
        """Start serving on the running event loop. Returns the emulator.

        Raises:
            ConfigurationError: already started, or ``tls=True`` without ``trustme``.
            OSError: the port cannot be bound.
        """
        from aiohttp import web

        if self._runner is not None:
            raise ConfigurationError("this emulator is already running")
        ssl_context = None
        if self._tls:
            from gemini_tokens.testing._tls import ThrowawayCA

            self._ca = ThrowawayCA()
            ssl_context = self._ca.server_context()
        self._stopping = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_shutdown.append(self._close_websockets)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            if self._ca is not None:
                self._ca.close()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._base_url = f"{'https' if self._tls else 'http'}://{netloc}"
        return self

    async def stop(self) -> None:
        """Close every Live socket (1001), stop serving and delete the CA file. Idempotent."""
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                if self._stopping is not None:
                    self._stopping.set()
                await runner.cleanup()
        finally:
            if self._ca is not None:
                self._ca.close()

    async def __aenter__(self: E) -> E:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def running(cls: type[E], **options: Any) -> Iterator[E]:
        """Run an emulator on its own event loop in its own thread, for sync code.

        Takes the same options as `Emulator`. On exit the emulator is stopped and the thread
        joined::

            with Emulator.running() as emu:
                with gemini_tokens.Client(emu.api_key, base_url=emu.base_url) as client:
                    client.create()
        """
        emu = cls(**options)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name="gemini-tokens-emulator", daemon=True
        )
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(emu.start(), loop).result(30)
            yield emu
        finally:
            try:
                asyncio.run_coroutine_threadsafe(_shutdown(emu, loop), loop).result(30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(30)
                loop.close()

    # -- what tests use ----------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The API key the emulator accepts."""
        return self._state.api_key

    @property
    def clock(self) -> Clock:
        """The clock token times are checked against (see `advance`)."""
        return self._state.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._state.clock = clock

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https://`` with ``tls=True``).

        Raises:
            ConfigurationError: not started.
        """
        if self._base_url is None:
            raise ConfigurationError("the emulator is not started")
        return self._base_url

    @property
    def tls(self) -> bool:
        """Whether it serves https and wss."""
        return self._tls

    @property
    def ca_file(self) -> str:
        """The path of the throwaway CA's certificate (PEM), while running with ``tls=True``.

        Point ``SSL_CERT_FILE`` at it for clients that read it (the official SDK does). The
        file is deleted when the emulator stops.

        Raises:
            ConfigurationError: ``tls`` is off, or the emulator is not running.
        """
        if self._ca is None or self._ca.ca_file is None:
            raise ConfigurationError("ca_file exists only while running with tls=True")
        return self._ca.ca_file

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the emulator's CA.

        Raises:
            ConfigurationError: ``tls`` is off, or the emulator was never started.
        """
        if self._ca is None:
            raise ConfigurationError("ssl_context() needs a started Emulator(tls=True)")
        return self._ca.client_context()

    @property
    def tokens(self) -> list[IssuedToken]:
        """The tokens minted so far, oldest first."""
        return list(self._state.tokens.values())

    def token(self, name: str) -> IssuedToken | None:
        """The minted token with this name, if any."""
        return self._state.tokens.get(name)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every HTTP request received (token requests and Live handshakes), oldest first."""
        return list(self._requests)

    @property
    def sessions(self) -> list[LiveSession]:
        """Every Live WebSocket served, accepted or refused, oldest first."""
        return list(self._state.sessions)

    def live_url(self, token_name: str | None = None, *, api_version: str = "v1alpha") -> str:
        """A Live API WebSocket URL on this emulator.

        With a token name: the ``BidiGenerateContentConstrained`` URL with ``access_token``
        (what a browser opens). Without: the ``BidiGenerateContent`` URL with the API key.
        """
        if token_name is not None:
            return live_url(self.base_url, api_version, token_name)
        scheme = "wss" if self._tls else "ws"
        return (
            f"{scheme}{self.base_url[self.base_url.index(':') :]}/ws/google.ai.generativelanguage."
            f"{api_version}.GenerativeService.BidiGenerateContent?key={quote(self.api_key)}"
        )

    def advance(self, *, hours: float = 0, minutes: float = 0, seconds: float = 0) -> dt.datetime:
        """Move the emulator's clock forward (tokens expire without sleeping); returns now.

        The service sees the client's later requests as from a clock that is behind: a token
        minted afterwards with times computed from the real clock may be refused as "in the past".
        """
        return self.clock.advance(hours=hours, minutes=minutes, seconds=seconds)

    def fail_next(
        self,
        status: int = 503,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: Mapping[str, Any] | str | bytes | None = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` instead of serving them.

        Args:
            status: The HTTP status (a 2xx with an odd ``body`` tests "not a token" handling).
            times: How many requests in a row.
            retry_after: Seconds, sent as ``Retry-After`` and, in the default body, as
                ``RetryInfo.retryDelay``.
            body: The body: None for a ``google.rpc.Status`` matching ``status``, a mapping
                for JSON, or text/bytes sent as is (``"<html>..."`` is sent as HTML, like a
                proxy's error page).

        Faults apply to the next requests of any kind, in arrival order: token requests and
        Live API handshakes alike.
        """
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError("status must be an HTTP status from 200 to 599")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        fault = Fail(status, retry_after, body)
        with self._lock:
            self._faults.extend([fault] * times)

    def delay_next(self, seconds: float) -> None:
        """Stall the next request ``seconds`` (real time) before serving it."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError("seconds must be a non-negative number")
        with self._lock:
            self._delays.append(float(seconds))

    def drop_next(self, times: int = 1) -> None:
        """Close the connection of the next ``times`` requests without answering."""
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        with self._lock:
            self._faults.extend([DROP] * times)

    def clear_faults(self) -> None:
        """Forget the faults and delays not yet applied."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()
        with self._state.lock:
            self._state.planned.clear()

    # -- session lifetime --------------------------------------------------------------------

    def go_away(self, session: LiveSession | None = None, *, time_left: float = 5.0) -> int:
        """Tell open Live sessions to go away now, as the service does before closing them.

        Each gets ``{"goAway": {"timeLeft": "<time_left>s"}}`` and, unless the client closes
        first, is closed ``time_left`` seconds (real time) later with 1011 "Deadline expired
        before operation could complete.". Its resumption handles stay valid, so the client
        can resume the conversation on a new socket. Safe to call from any thread; the
        message is sent on the emulator's loop right after.

        Args:
            session: The session (from `sessions`) to send it to; None for every open one.
            time_left: The seconds announced and waited before closing.

        Returns:
            How many open sessions it was sent to.

        Raises:
            ConfigurationError: the emulator is not running.
            ValueError: ``time_left`` is negative or not a number.
        """
        seconds = _seconds(time_left, "time_left")
        loop = self._loop
        if self._runner is None or loop is None:
            raise ConfigurationError("go_away() needs a running emulator")
        sockets = self._state.open_sockets(session)
        for sock in sockets:
            loop.call_soon_threadsafe(sock.go_away, seconds)
        return len(sockets)

    def go_away_next(self, *, after: float, time_left: float = 5.0, times: int = 1) -> None:
        """Plan a ``goAway`` for each of the next ``times`` sessions to open.

        Such a session gets ``goAway {timeLeft}`` ``after`` seconds (real time) after its
        ``setupComplete``, and is closed ``time_left`` seconds later (see `go_away`). Plans
        are used in order, before the emulator-wide ``go_away_after``; `clear_faults`
        forgets those not yet used.

        Raises:
            ValueError: a negative time, or ``times`` not a positive integer.
        """
        plan = GoAwayPlan(_seconds(after, "after"), _seconds(time_left, "time_left"))
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        self._state.plan_go_away(plan, times)

    # -- serving -----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web
        from multidict import CIMultiDict, CIMultiDictProxy

        # SDKs build "//ws/..." from a base URL ending in a slash; the service tolerates it.
        path = re.sub(r"/{2,}", "/", request.path)
        if path.startswith("/_emulator/"):
            from gemini_tokens.testing._control import serve_control

            # Test control, not traffic: neither recorded nor touched by faults.
            return await serve_control(self._state, request, path)
        raw = await request.read() if request.body_exists else b""
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            raw=raw,
            body=body,
        )
        self._requests.append(record)
        with self._lock:
            delay = self._delays.popleft() if self._delays else None
            fault = self._faults.popleft() if self._faults else None
        if delay:
            await self._sleep(delay)
        if fault == DROP:
            record.fault = "drop"
            request.protocol.force_close()
            return web.Response(status=500)  # never written: the connection is closed
        if isinstance(fault, Fail):
            record.fault = "fail"
            record.status = fault.status
            return fault.response()
        response = await self._route(request, path, record)
        record.status = response.status
        return response

    async def _sleep(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _route(
        self, request: web.Request, path: str, record: RecordedRequest
    ) -> web.StreamResponse:
        match = _WS_PATH.fullmatch(path)
        if match:
            from gemini_tokens.testing._live import serve_live

            return await serve_live(self._state, request, match[2], match[1])
        match = _TOKEN_PATH.fullmatch(path)
        if match and match[1] == "v1alpha" and request.method == "POST":
            return create_token(self._state, request, record)
        if match:
            # Token creation exists only in v1alpha; the service's 404 has an empty message.
            return json_response(status_body(404, ""), 404)
        return json_response(
            status_body(
                404,
                f"The emulator serves POST /v1alpha/auth_tokens and the Live API WebSocket, "
                f"not {request.method} {path}.",
            ),
            404,
        )

    async def _close_websockets(self, app: web.Application) -> None:
        from gemini_tokens.testing._live import GOING_AWAY

        sockets = [sock for sock in list(self._state.sockets) if not sock.closed]
        await asyncio.gather(
            *(sock.close(1001, GOING_AWAY) for sock in sockets), return_exceptions=True
        )


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number of seconds")
    return float(value)


async def _shutdown(emu: Emulator, loop: asyncio.AbstractEventLoop) -> None:
    """Stop the emulator, then leave its private loop with nothing running."""
    await emu.stop()
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks(loop) if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()
