"""`AsyncClient`: the one implementation. Everything else (the sync `Client`, the one-shot
helpers, the CLI) runs these coroutines.

The data path reads top to bottom in `AsyncClient.create`: options -> validated `TokenRequest`
-> wire body -> HTTP with retries -> parsed `EphemeralToken`.

aiohttp is imported on first use, not at ``import gemini_tokens``: a web app pays for it once,
a CLI ``--help`` never does.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import platform
from typing import TYPE_CHECKING, Any, NoReturn

import attrs

from gemini_tokens import _instrumentation
from gemini_tokens._config import (
    DEFAULT_API_VERSION,
    MAX_RESPONSE_BYTES,
    Timeout,
    resolve_api_key,
    resolve_base_url,
    resolve_timeout,
)
from gemini_tokens._converters import body_bytes, token_from_response
from gemini_tokens._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ConfigurationError,
    InvalidResponseError,
    ValidationError,
    error_from_response,
    redact_secrets,
)
from gemini_tokens._models import EphemeralToken, LiveConnectConstraints
from gemini_tokens._request import TokenRequest, build_request, reject_unknown
from gemini_tokens._retry import RetryPolicy, call_with_retries, parse_retry_after
from gemini_tokens._version import __version__

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    import aiohttp

__all__ = ["AsyncClient"]

_USER_AGENT = f"gemini-tokens/{__version__} python/{platform.python_version()}"

# Objects inherited from the parent after os.fork(). They belong to the parent's event loop
# and must never be closed here: closing would unregister the parent's sockets from the epoll
# instance parent and child share. Keeping a reference stops their finalizers from running.
_FORK_ORPHANS: list[object] = []


class _Process:
    """This process's id, refreshed in a forked child (``os.getpid()`` is a system call)."""

    pid = os.getpid()


def _refresh_pid() -> None:
    _Process.pid = os.getpid()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_refresh_pid)


@functools.cache  # one class, made on first use (aiohttp is imported lazily)
def _connector_class() -> type[aiohttp.TCPConnector]:
    import aiohttp

    class ForkAwareConnector(aiohttp.TCPConnector):
        """A connector whose finalizer does nothing in a forked child (see _FORK_ORPHANS)."""

        def __init__(self, **kwargs: Any) -> None:
            self._gt_pid = os.getpid()
            super().__init__(**kwargs)

        def __del__(self, _warnings: Any = None) -> None:
            if os.getpid() == self._gt_pid:
                super().__del__()

    return ForkAwareConnector


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
        session: An ``aiohttp.ClientSession`` to share (an aiohttp app's own). The client does
            not close a session it was given.
        allow_insecure_http: Allow ``http://`` to a non-loopback host.

    Raises:
        ConfigurationError: no API key, an unusable base URL, or a bad retry setting.
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
        self._timeout = resolve_timeout(timeout)
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
        self._session = session
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = os.getpid()
        self._closed = False
        self._client_timeout: aiohttp.ClientTimeout | None = None

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
        session, self._session = self._session, None
        if session is not None and self._owns_session and os.getpid() == self._pid:
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
        body = _encode_request(request)
        model = None if request.constraints is None else request.constraints.model
        observer = _instrumentation.mint(model, request.uses)
        try:
            with observer:  # OpenTelemetry's span and metrics; nothing without it
                # A partial, not a nested coroutine: one coroutine frame fewer on every await.
                return await call_with_retries(
                    observer.wrap(functools.partial(self._attempt, body, request)),
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

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        # The usual case, checked first: a pool made in this process, on this loop (close()
        # drops the session, so a closed client never gets past here).
        if session is not None and self._loop is loop and self._pid == _Process.pid:
            return session
        if self._closed:
            raise ConfigurationError("this client is closed; create a new one")
        if os.getpid() != self._pid:
            # A forked child: the parent's pool is not ours to use or to close.
            if self._session is not None and self._owns_session:
                _FORK_ORPHANS.extend((self._session, self._session.connector))
                self._session.detach()
                self._session = None
            self._pid = os.getpid()
            self._loop = None
        if self._session is None:
            import aiohttp

            # Our headers become the session's defaults: aiohttp then skips merging a
            # per-request dict on every call.
            self._session = aiohttp.ClientSession(
                connector=_connector_class()(limit=100, ttl_dns_cache=300),
                headers=self._headers,
            )
            self._owns_session = True
            self._loop = loop
        elif self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise ConfigurationError(
                "this AsyncClient is bound to the event loop it was first used on; "
                "create one client per event loop (or use the sync Client)"
            )
        return self._session

    def _timeout_for(self, remaining: float | None) -> aiohttp.ClientTimeout:
        """The attempt's aiohttp timeout: the client's, shortened to the deadline's rest."""
        timeout = self._client_timeout
        if remaining is None and timeout is not None:
            return timeout  # the same for every call without a deadline
        import aiohttp

        total = self._timeout.total if remaining is None else min(self._timeout.total, remaining)
        timeout = aiohttp.ClientTimeout(total=total, connect=min(self._timeout.connect, total))
        if remaining is None:
            self._client_timeout = timeout
        return timeout

    async def _attempt(
        self, body: bytes, request: TokenRequest, remaining: float | None
    ) -> EphemeralToken:
        """One POST, and the token in its answer; a typed error otherwise.

        The answer is parsed here, inside the attempt, so that its error carries
        ``attempts``; an unusable 2xx answer is never retried.
        """
        import aiohttp

        session = self._get_session()  # raises if the client is closed
        timeout = self._timeout_for(remaining)
        try:
            async with session.post(
                self._url,
                data=body,
                headers=None if self._owns_session else self._headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                # A body over MAX_RESPONSE_BYTES is never read whole: a declared length
                # over it is refused unread, an undeclared one one byte past it. (The
                # connection is then closed, not reused: the rest is still on it.)
                length = response.content_length
                if length is None:
                    raw, complete = await _read_undeclared(response)
                elif length <= MAX_RESPONSE_BYTES:
                    raw, complete = await response.read(), True  # the usual answer
                else:
                    raw, complete = b"", False
                status = response.status
        except asyncio.TimeoutError as exc:
            connect_error = getattr(aiohttp, "ConnectionTimeoutError", ())
            if isinstance(exc, connect_error):
                message = f"no connection to the token service within {timeout.connect:g}s"
            else:
                message = f"no complete answer from the token service within {timeout.total:g}s"
            raise APITimeoutError(message) from None
        except aiohttp.ClientError as exc:
            # aiohttp's message may quote what the server sent (a broken header line ...).
            text = redact_secrets(f"{type(exc).__name__}: {exc}", (self._api_key,))
            raise APIConnectionError(f"could not reach the token service: {text}") from None
        if not 200 <= status < 300:
            # (The headers stay readable after the response is released.)
            headers = response.headers
            raise error_from_response(
                status,
                raw,
                content_type=headers.get("Content-Type", ""),
                retry_after_header=parse_retry_after(headers.get("Retry-After")),
                redact=(self._api_key,),
                too_large=not complete,
            )
        if not complete:
            raise InvalidResponseError(
                f"the response body exceeds {MAX_RESPONSE_BYTES} bytes; not a token",
                status_code=status,
            )
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            raise InvalidResponseError(
                f"the service answered {status} with a body that is not JSON", status_code=status
            ) from None
        try:
            token = token_from_response(
                payload, request, base_url=self._base_url, api_version=self._api_version
            )
        except Exception:  # any surprise in a 2xx body is "not a usable token"
            raise InvalidResponseError(
                f"the service answered {status} with a token this library cannot read",
                status_code=status,
            ) from None
        if token is None:
            raise InvalidResponseError(
                f"the service answered {status} without a token name", status_code=status
            )
        return token


def _encode_request(request: TokenRequest) -> bytes:
    """The request body as JSON, or a `ValidationError` (before anything is sent).

    Free-form options (``avatar_config``, tool settings, JSON schemas) are passed through
    as given; a value JSON cannot carry (a set, bytes, NaN, a cycle) must not escape as a
    TypeError, nor go out as invalid JSON.
    """
    try:
        return body_bytes(request)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(
            "live_connect_constraints",
            "must hold only JSON values (str, int, float, bool, None, lists, dicts); "
            f"{type(exc).__name__}: {exc}",
        ) from None


async def _read_undeclared(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Read a body of undeclared length, stopping one byte past MAX_RESPONSE_BYTES.

    ``complete`` is False when the body was larger (and then nothing is returned).
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await response.content.read(MAX_RESPONSE_BYTES + 1 - size)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return b"", False
