"""`AsyncClient`: the one implementation. Everything else (the sync `Client`, the one-shot
helpers, the CLI) runs these coroutines.

The data path reads top to bottom in `AsyncClient.create`: options -> validated `TokenRequest`
-> wire body -> HTTP with retries -> parsed `EphemeralToken`.

aiohttp is imported on first use, not at ``import gemini_tokens``: a web app pays for it once,
a CLI ``--help`` never does.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
from typing import TYPE_CHECKING, Any, NoReturn

from gemini_tokens._config import (
    DEFAULT_API_VERSION,
    MAX_RESPONSE_BYTES,
    Timeout,
    resolve_api_key,
    resolve_base_url,
    resolve_timeout,
)
from gemini_tokens._converters import body_for, token_from_response
from gemini_tokens._errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    InvalidResponseError,
    error_from_response,
)
from gemini_tokens._models import EphemeralToken, LiveConnectConstraints
from gemini_tokens._request import TokenRequest, build_request, reject_unknown
from gemini_tokens._retry import RetryPolicy, call_with_retries
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


def _parse_retry_after(value: str | None) -> float | None:
    """``Retry-After``: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import datetime as dt
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


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
        timeout: A `Timeout`, or a number of seconds for the whole attempt.
        max_retries: Retries after the first attempt on 408, 429, 5xx and connection errors.
        max_retry_wait: A server ``Retry-After`` longer than this is not slept; the error is
            raised with ``retry_after`` set instead.
        session: An ``aiohttp.ClientSession`` to share (an aiohttp app's own). The client does
            not close a session it was given.
        allow_insecure_http: Allow ``http://`` to a non-loopback host.

    Raises:
        ConfigurationError: no API key, or an unusable base URL.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float | Timeout | None = None,
        max_retries: int = 2,
        max_retry_wait: float = 20.0,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        self._api_key = resolve_api_key(api_key)
        self._base_url = resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        if not isinstance(api_version, str) or not api_version.strip("/ "):
            raise ConfigurationError("api_version must be a non-empty string such as 'v1alpha'")
        self._api_version = api_version.strip("/ ")
        self._url = f"{self._base_url}/{self._api_version}/auth_tokens"
        self._timeout = resolve_timeout(timeout)
        try:
            self._policy = RetryPolicy(max_retries=max_retries, max_retry_wait=max_retry_wait)
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

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self._base_url!r}, api_version={self._api_version!r})"

    @property
    def base_url(self) -> str:
        """The service root requests go to."""
        return self._base_url

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
            deadline: Seconds that all attempts and backoff sleeps together may take.

        Returns:
            The token. Hand ``token.name`` (or ``token.to_dict()``) to the client that opens
            the Live session.

        Raises:
            ValidationError: an option breaks a rule; nothing was sent.
            APIStatusError: the service refused (see its subclasses).
            APIConnectionError: no answer (``APITimeoutError`` if time ran out).
            InvalidResponseError: a 2xx answer without a usable token.
        """
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
                policy = RetryPolicy(
                    max_retries=max_retries, max_retry_wait=self._policy.max_retry_wait
                )
            except ValueError:
                from gemini_tokens._errors import ValidationError

                raise ValidationError("max_retries", "must be an integer >= 0") from None
        if deadline is not None and (
            isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline <= 0
        ):
            from gemini_tokens._errors import ValidationError

            raise ValidationError("deadline", "must be a positive number of seconds")
        return await self._send(request, policy, deadline)

    async def _send(
        self, request: TokenRequest, policy: RetryPolicy, deadline: float | None
    ) -> EphemeralToken:
        body = json.dumps(body_for(request), separators=(",", ":")).encode()
        payload = await call_with_retries(
            lambda remaining: self._attempt(body, remaining), policy, deadline=deadline
        )
        token = token_from_response(
            payload, request, base_url=self._base_url, api_version=self._api_version
        )
        if token is None:
            raise InvalidResponseError("the service answered 2xx without a token name")
        return token

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._closed:
            raise ConfigurationError("this client is closed; create a new one")
        loop = asyncio.get_running_loop()
        if os.getpid() != self._pid:
            # A forked child: the parent's pool is not ours to use or to close.
            if self._session is not None and self._owns_session:
                _FORK_ORPHANS.extend((self._session, self._session.connector))
                self._session.detach()
                self._session = None
            self._pid = os.getpid()
            self._loop = None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=_connector_class()(limit=100, ttl_dns_cache=300)
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

    async def _attempt(self, body: bytes, remaining: float | None) -> Any:
        """One POST. Returns the parsed JSON of a 2xx answer; raises a typed error otherwise."""
        import aiohttp

        session = self._get_session()
        total = self._timeout.total if remaining is None else min(self._timeout.total, remaining)
        timeout = aiohttp.ClientTimeout(total=total, connect=min(self._timeout.connect, total))
        try:
            async with session.post(
                self._url,
                data=body,
                headers=self._headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                raw, complete = await _read_limited(response)
                status = response.status
                content_type = response.headers.get("Content-Type", "")
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            raise APITimeoutError(
                f"no complete answer from the token service within {total:g}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise APIConnectionError(
                f"could not reach the token service: {type(exc).__name__}: {exc}".replace(
                    self._api_key, "***"
                )
            ) from None
        if not 200 <= status < 300:
            if not complete:
                raw = b""
            raise error_from_response(
                status,
                raw,
                content_type=content_type,
                retry_after_header=retry_after,
                redact=(self._api_key,),
            )
        if not complete:
            raise InvalidResponseError(
                f"the response body exceeds {MAX_RESPONSE_BYTES} bytes; not a token",
                status_code=status,
            )
        try:
            return json.loads(raw)
        except ValueError:
            raise InvalidResponseError(
                f"the service answered {status} with a body that is not JSON",
                status_code=status,
            ) from None


async def _read_limited(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Read at most MAX_RESPONSE_BYTES; ``complete`` is False if the body was larger."""
    length = response.content_length
    if length is not None and length > MAX_RESPONSE_BYTES:
        return b"", False
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
