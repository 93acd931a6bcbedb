"""`AsyncClient`: the one implementation. Everything else (the sync `Client`, the one-shot
helpers, the CLI) runs these coroutines.

The data path reads top to bottom in `AsyncClient.create`: options -> validated `TokenRequest`
-> wire body -> HTTP with retries -> parsed `EphemeralToken`.

aiohttp (with `_transport`, the HTTP side) is imported when the first client is made, not at
``import gemini_tokens``: a CLI ``--help`` never pays for it, and the first ``create()`` does
not import on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import platform
import weakref
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import attrs

from gemini_tokens import _instrumentation
from gemini_tokens._config import (
    DEFAULT_API_VERSION,
    MAX_RESPONSE_BYTES,
    Timeout,
    resolve_api_key,
    resolve_base_url,
    resolve_proxy,
    resolve_timeout,
    resolve_verify,
)
from gemini_tokens._converters import body_bytes, body_for
from gemini_tokens._errors import (
    APIError,
    ConfigurationError,
    InvalidResponseError,
    ValidationError,
    error_from_response,
)
from gemini_tokens._models import EphemeralToken, LiveConnectConstraints, TokenRequest
from gemini_tokens._parse import parse_token
from gemini_tokens._request import build_request, reject_unknown
from gemini_tokens._retry import RetryPolicy, call_with_retries, parse_retry_after
from gemini_tokens._version import __version__

if TYPE_CHECKING:
    import datetime as dt
    import ssl
    import types
    from collections.abc import AsyncGenerator, Mapping, Sequence
    from types import TracebackType

    import aiohttp

    from gemini_tokens._config import Verify
    from gemini_tokens._transport import Reply, Transport

__all__ = ["AsyncClient"]

_USER_AGENT = f"gemini-tokens/{__version__} python/{platform.python_version()}"

# Objects inherited from the parent after os.fork(). They belong to the parent's event loop
# and must never be closed here: closing would unregister the parent's sockets from the epoll
# instance parent and child share. Keeping a reference stops their finalizers from running.
_FORK_ORPHANS: list[object] = []


@functools.cache
def _load_transport() -> types.ModuleType:
    """Import aiohttp (with `_transport`) and build the wire converters, once per process.

    Done when a client is made, so that the first ``create()`` imports and builds nothing
    on the caller's event loop (importing aiohttp alone takes about 100 ms).
    """
    from gemini_tokens import _transport
    from gemini_tokens._converters import converters

    converters()  # the cattrs converters the first create() with constraints would build
    _instrumentation.enabled()  # imports opentelemetry, where installed (about 20 ms)
    return _transport


async def _close_with_loop(
    client: weakref.ref[AsyncClient], session: aiohttp.ClientSession
) -> AsyncGenerator[None, None]:
    """Close ``session`` when its event loop shuts down, or when the client closes it.

    Started on the session's loop, this generator is one of the loop's async generators,
    which ``asyncio.run()`` (and every loop shut down with ``shutdown_asyncgens()``)
    finalizes before closing the loop. So a client warmed up with ``asyncio.run()`` and then
    kept (a module-level client in a gunicorn master) leaves no unclosed session behind, and
    its next call, on a new loop, makes a new session.
    """
    try:
        yield
    finally:
        owner = client()
        if owner is not None and owner._session is session:
            owner._session = owner._loop = owner._guard = None
        await session.close()  # never closes a shared session's pool (see _transport)


class AsyncClient:
    """Mints ephemeral tokens; the async client.

    Use it as an async context manager, or call `close` when done. One client holds one
    connection pool; share it across requests (e.g. create it in your app's startup).

    Args:
        api_key: The Gemini API key. Default: ``GEMINI_API_KEY``, else ``GOOGLE_API_KEY``.
        base_url: The service's root. Default: ``GEMINI_BASE_URL``, else
            ``https://generativelanguage.googleapis.com``.
        api_version: Token creation exists only in ``v1alpha``.
        timeout: A `Timeout` (connect 10 s, total 30 s by default), or a number of seconds
            for the whole attempt. Applies to each attempt; ``create(deadline=...)`` bounds
            all attempts and sleeps together.
        max_retries: Retries after the first attempt on 408, 429, 5xx and connection errors
            (default 2, i.e. up to 3 attempts). Overrides ``retry.max_retries``.
        max_retry_wait: A server ``Retry-After`` longer than this many seconds (default 20)
            is not slept; the error is raised with ``retry_after`` set instead. Overrides
            ``retry.max_retry_wait``.
        retry: A whole `RetryPolicy` (backoff included). Default: ``RetryPolicy()``.
        session: An ``aiohttp.ClientSession`` whose connection pool to share (an aiohttp
            app's own). Only its pool is used: its settings (``raise_for_status``,
            ``base_url``, default headers, cookies, timeout, proxy) do not apply to the
            library's requests. The client does not close a session it was given.
        allow_insecure_http: Allow ``http://`` to a non-loopback host.
        proxy: The proxy to send requests through, e.g. ``"http://proxy.corp:3128"``
            (``user:password@`` for proxy authentication; a proxy that refuses them
            raises `ProxyAuthenticationError` at once, without retries). Default: the
            environment's when ``trust_env`` is true, else none.
        trust_env: Read ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` and ``NO_PROXY``
            (and their lower-case forms) when the client is made (default True).
        verify: How to verify the service's TLS certificate: True (the system's trusted
            CAs, honouring ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` as set when the client is
            made), the path of a CA bundle (PEM) to trust instead, an ``ssl.SSLContext``,
            or False (no verification; for tests only). Default: True, but with a shared
            ``session`` its connector's own TLS settings. A certificate that cannot be
            verified raises `CertificateVerificationError` at once, without retries.

    Raises:
        ConfigurationError: no API key, an unusable base URL or proxy, a bad ``verify``,
            or a bad retry setting (each message names the setting).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
        max_retry_wait: float | None = None,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
        proxy: str | None = None,
        trust_env: bool = True,
        verify: Verify | None = None,
    ) -> None:
        self._api_key = resolve_api_key(api_key)
        if not self._api_key.isascii() or not self._api_key.isprintable():
            # It travels in an HTTP header; fail here, not with a low-level error per request.
            raise ConfigurationError("api_key must be printable ASCII")
        self._base_url = resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        if not isinstance(api_version, str) or not api_version.strip("/ "):
            raise ConfigurationError("api_version must be a non-empty string such as 'v1alpha'")
        self._api_version = api_version.strip("/ ")
        self._url = f"{self._base_url}/{self._api_version}/auth_tokens"
        timeout_setting = resolve_timeout(timeout)
        proxy_url = resolve_proxy(proxy, trust_env=trust_env, url=self._url)
        if verify is not None:
            verify = resolve_verify(verify)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy")
        changes: dict[str, Any] = {}
        if max_retries is not None:
            changes["max_retries"] = max_retries
        if max_retry_wait is not None:
            changes["max_retry_wait"] = max_retry_wait
        try:
            self._policy = attrs.evolve(retry or RetryPolicy(), **changes)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._headers = {
            "x-goog-api-key": self._api_key,
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            "x-goog-api-client": f"gemini-tokens/{__version__}",
        }
        # Everything the request path needs is imported and built now (see _load_transport).
        transport = _load_transport()
        proxy_password = urlsplit(proxy_url).password if proxy_url else None
        self._http: Transport = transport.Transport(
            timeout=timeout_setting,
            tls=_tls_setting(transport, verify, session, self._url, proxy_url),
            proxy=proxy_url,
            secrets=(self._api_key, proxy_password or ""),
        )
        self._shared = session
        #: Our own session, on the given session's pool or on a new one; made on first use.
        self._session: aiohttp.ClientSession | None = None
        self._guard: AsyncGenerator[None, None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = os.getpid()
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self._base_url!r}, api_version={self._api_version!r})"

    @property
    def base_url(self) -> str:
        """The service root requests go to."""
        return self._base_url

    @property
    def retry(self) -> RetryPolicy:
        """The client's retry policy (``max_retries`` may be overridden per call)."""
        return self._policy

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._closed

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool (unless the session was given to us). Idempotent."""
        self._closed = True
        if os.getpid() != self._pid:
            self._orphan()  # the parent's session: not ours to close
        session, guard, loop = self._session, self._guard, self._loop
        self._session = self._guard = self._loop = None
        if session is None:
            return
        if guard is not None and loop is asyncio.get_running_loop():
            await guard.aclose()  # closes the session
        else:
            await session.close()

    async def create(
        self,
        *,
        uses: int = 1,
        expire_minutes: float | None = None,
        expire_time: dt.datetime | None = None,
        new_session_expire_minutes: float | None = None,
        new_session_expire_time: dt.datetime | None = None,
        live_connect_constraints: LiveConnectConstraints | Mapping[str, Any] | None = None,
        lock_additional_fields: Sequence[str] | None = None,
        max_retries: int | None = None,
        deadline: float | None = None,
        **unknown: NoReturn,
    ) -> EphemeralToken:
        """Mint an ephemeral token.

        Args:
            uses: Sessions the token may open; 0 means no limit.
            expire_minutes: Lifetime in minutes (default 30). Or give ``expire_time``.
            expire_time: An aware datetime less than 20 hours ahead.
            new_session_expire_minutes: Minutes during which new sessions may be opened
                (default 1, never beyond the expiry). Or give ``new_session_expire_time``.
            new_session_expire_time: An aware datetime, not after the expiry.
            live_connect_constraints: ``{"model": ..., "config": {...}}`` or a
                `LiveConnectConstraints`: the model and Live config the token is locked to.
            lock_additional_fields: None locks the whole constrained setup; ``[]`` locks only
                the fields set; a list of names also locks those (e.g. ``["temperature"]``).
            max_retries: Overrides the client's ``max_retries`` for this call.
            deadline: Seconds that all attempts and backoff sleeps together may take. When
                the next sleep would end past it, the last error is raised at once.

        Returns:
            The token. Hand ``token.name`` (or ``token.to_dict()``) to the client that opens
            the Live session.

        Raises:
            ValidationError: an option breaks a rule; nothing was sent.
            APIStatusError: the service refused (see its subclasses).
            APIConnectionError: no answer (``APITimeoutError`` if time ran out).
            InvalidResponseError: a 2xx answer without a usable token (never retried).

        Every `APIError` carries ``attempts``. Minting is not idempotent: a retry after a
        timeout may mint a second token; the unused one simply expires.
        """
        if unknown:
            reject_unknown(unknown)
        request = build_request(
            uses=uses,
            expire_minutes=expire_minutes,
            expire_time=expire_time,
            new_session_expire_minutes=new_session_expire_minutes,
            new_session_expire_time=new_session_expire_time,
            live_connect_constraints=live_connect_constraints,
            lock_additional_fields=lock_additional_fields,
        )
        policy = self._policy
        if max_retries is not None:
            try:
                policy = attrs.evolve(policy, max_retries=max_retries)
            except ValueError:
                raise ValidationError("max_retries", "must be an integer >= 0") from None
        if deadline is not None and (
            isinstance(deadline, bool)
            or not isinstance(deadline, (int, float))
            or not (math.isfinite(deadline) and deadline > 0)
        ):
            raise ValidationError("deadline", "must be a positive, finite number of seconds")
        body = body_for(request)
        data = body_bytes(body)
        model = None if request.constraints is None else request.constraints.model
        observer = _instrumentation.mint(model, request.uses)
        try:
            with observer:  # OpenTelemetry's span and metrics; nothing without it
                # A partial, not a nested coroutine: one coroutine frame fewer on every await.
                return await call_with_retries(
                    observer.wrap(functools.partial(self._attempt, data, request, body)),
                    policy,
                    deadline=deadline,
                )
        except APIError as exc:
            # The one place that cuts the chain: an aiohttp or JSON error below may quote the
            # request (the API key) or the response (a token), and ``from None`` only hides
            # it from tracebacks. (On Python 3.10 an exception caught in a coroutine can even
            # stay "being handled" after its except block and chain onto a later raise.)
            exc.__cause__ = exc.__context__ = None
            exc.__suppress_context__ = True
            raise

    async def _open_session(self) -> aiohttp.ClientSession:
        """The slow path of `_attempt`: check the client's state, and make its session."""
        loop = asyncio.get_running_loop()
        if self._closed:
            raise ConfigurationError("this client is closed; create a new one")
        if os.getpid() != self._pid:
            self._orphan()
        if self._session is not None and self._loop is not loop:
            if self._loop is not None and self._loop.is_closed():
                # asyncio.run() would have closed the session (see _close_with_loop).
                raise ConfigurationError(
                    "this AsyncClient's event loop was closed without shutting down its "
                    "async generators; use asyncio.run(), or run loop.shutdown_asyncgens() "
                    "before loop.close(), or create a new client"
                )
            raise ConfigurationError(
                "this AsyncClient is bound to the event loop it was first used on; "
                "create one client per event loop (or use the sync Client)"
            )
        if self._session is not None:  # pragma: no cover - the fast path in _attempt
            return self._session
        session = self._http.open_session(self._shared, self._headers)
        guard = _close_with_loop(weakref.ref(self), session)
        await guard.asend(None)  # runs to its yield: the loop now tracks it
        self._session, self._guard, self._loop = session, guard, loop
        return session

    def _orphan(self) -> None:
        """In a forked child: let go of the parent's session without closing it."""
        if self._session is not None:
            # The guard, a suspended generator of the parent's loop, is kept too: its
            # finalizer would wake that loop through the self-pipe parent and child share.
            _FORK_ORPHANS.extend((self._session, self._session.connector, self._guard))
            self._session.detach()
        self._session = self._guard = self._loop = None
        self._pid = os.getpid()

    async def _attempt(
        self,
        data: bytes,
        request: TokenRequest,
        body: Mapping[str, Any],
        remaining: float | None,
    ) -> EphemeralToken:
        """One POST, and the token in its answer; a typed error otherwise.

        The answer is parsed here, inside the attempt, so that its error carries
        ``attempts``; an unusable 2xx answer is never retried.
        """
        session = self._session
        # The usual case, checked first: a session made in this process, on this loop
        # (close() drops the session, so a closed client never gets past here).
        if (
            session is None
            or self._pid != os.getpid()
            or self._loop is not asyncio.get_running_loop()
        ):
            session = await self._open_session()  # raises if the client is closed
        reply = await self._http.post(session, self._url, data, self._http.timeout(remaining))
        status = reply.status
        if not 200 <= status < 300:
            raise error_from_response(
                status,
                reply.body,
                content_type=reply.content_type,
                retry_after_header=parse_retry_after(reply.retry_after),
                redact=(self._api_key,),
                too_large=not reply.complete,
            )
        if not reply.complete:
            raise InvalidResponseError(
                f"the response body exceeds {MAX_RESPONSE_BYTES} bytes; not a token",
                status_code=status,
            )
        token = _read_token(reply, request, body, self._base_url, self._api_version)
        if isinstance(token, str):  # raised here, where no local holds the answer
            raise InvalidResponseError(token, status_code=status)
        return token


def _read_token(
    reply: Reply, request: TokenRequest, sent: Mapping[str, Any], base_url: str, api_version: str
) -> EphemeralToken | str:
    """The token in a 2xx reply, or why there is none (the error's message).

    The raw answer and its JSON (the token's name in both) live only in this frame, which
    ends before any error is raised: an error tracker records the locals of the frames an
    exception passes through, and this one is never among them.
    """
    status = reply.status
    try:
        payload = json.loads(reply.body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return f"the service answered {status} with a body that is not JSON"
    try:
        return parse_token(
            payload, request, sent, status=status, base_url=base_url, api_version=api_version
        )
    except InvalidResponseError as exc:  # its message never quotes the answer
        return str(exc.args[0])
    except Exception:  # any surprise in a 2xx body is "not a usable token"
        return f"the service answered {status} with a token this library cannot read"


def _tls_setting(
    transport: types.ModuleType,
    verify: Verify | None,
    session: aiohttp.ClientSession | None,
    url: str,
    proxy: str | None,
) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=`` for the client's requests (True: the connector's own setting).

    Over plain http it is the connector's: a pooled connection then also serves a shared
    session's own requests.
    """
    if not (url.startswith("https://") or (proxy or "").startswith("https://")):
        return True
    if verify is None:
        if session is not None:
            return True  # a shared session's connector may carry the app's TLS settings
        verify = True
    setting: ssl.SSLContext | bool = transport.ssl_setting(verify)
    return setting
