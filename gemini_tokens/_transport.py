"""The HTTP side of a client, on aiohttp: its session, TLS trust and proxy, and one POST.

This module is imported when a client is made, not at ``import gemini_tokens`` (a CLI
``--help`` never pays for aiohttp) and not on the request path: the first ``create()``
imports and builds nothing, so it does not hold up the caller's event loop.

The library's requests are immune to the settings of a session a user shares with it
(``raise_for_status``, ``base_url``, default headers such as ``Authorization``, cookies,
``auto_decompress``, a default ``timeout`` or proxy, middlewares): only the session's
connection pool is shared, under a session of our own (`open_session`).

Trust is read when the client is made. aiohttp builds its default TLS context when it is
imported, so ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` set later would be ignored; here the
context is made from the environment of the moment (`ssl_setting`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import attrs

from gemini_tokens._config import MAX_RESPONSE_BYTES, Timeout
from gemini_tokens._errors import (
    APIConnectionError,
    APITimeoutError,
    CertificateVerificationError,
    ConfigurationError,
    ProxyAuthenticationError,
    redact_secrets,
)

if TYPE_CHECKING:
    from gemini_tokens._config import Verify

__all__ = ["Reply", "Transport", "ssl_setting"]

_CA_HINT = (
    "If a TLS-inspecting proxy or a private CA signs it, give the client that CA: "
    "verify='/path/to/ca.pem', or set SSL_CERT_FILE=/path/to/ca.pem (any client, the CLI)"
)


_PROXY_AUTH_HINT = (
    "Give the proxy the right user and password in its URL: "
    "proxy='http://user:password@host:port', or the same URL in HTTPS_PROXY "
    "(HTTP_PROXY for an http:// base URL)"
)

#: The proxy's answer to a request without the credentials it wants (RFC 9110, 15.5.8).
#: The token service never sends it: through a proxy, it is the proxy's.
_PROXY_AUTH_REQUIRED = 407


_SHARED_CLOSED = (
    "the aiohttp session given as session= is closed; "
    "close the AsyncClient before its session, or give it an open one"
)


class _ForkAwareConnector(aiohttp.TCPConnector):
    """A connector whose finalizer does nothing in a forked child.

    Objects inherited from the parent after ``os.fork()`` belong to the parent's event
    loop: closing them would unregister the parent's sockets from the epoll instance parent
    and child share (see ``_client._FORK_ORPHANS``).
    """

    def __init__(self, **kwargs: Any) -> None:
        self._gt_pid = os.getpid()
        super().__init__(**kwargs)

    def __del__(self, _warnings: Any = None) -> None:
        if os.getpid() == self._gt_pid:
            super().__del__()


@functools.lru_cache(maxsize=8)
def _context(
    cafile: str | None, capath: str | None, env: tuple[str | None, str | None], stamp: object
) -> ssl.SSLContext:
    """A verifying client context. Cached: loading a CA bundle takes milliseconds.

    ``env`` (``SSL_CERT_FILE``, ``SSL_CERT_DIR``) and ``stamp`` (the bundle's modification
    time and size) are part of the key only, so that a changed setting makes a new context.
    """
    del env, stamp
    ctx = ssl.create_default_context(cafile=cafile, capath=capath)
    ctx.options |= ssl.OP_NO_COMPRESSION  # as aiohttp's own default context
    return ctx


def ssl_setting(verify: Verify) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=`` for a validated ``verify=`` setting, with the trust of the moment.

    True: the system's trusted CAs, read now (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` as set
    now); a path: only the CAs of that PEM bundle (or hashed directory); a context: as
    given; False: no verification.

    Raises:
        ConfigurationError: the CA bundle cannot be loaded.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        return False
    env = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    if verify is True:
        return _context(None, None, env, None)
    path = os.fspath(verify)
    try:
        info = os.stat(path)
        is_dir = os.path.isdir(path)
        return _context(
            None if is_dir else path,
            path if is_dir else None,
            env,
            (info.st_mtime_ns, info.st_size),
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigurationError(
            f"verify: the CA bundle {path!r} cannot be loaded (it must hold PEM "
            f"certificates): {type(exc).__name__}: {exc}"
        ) from None


@attrs.frozen
class Reply:
    """What one POST got back: its status, the headers we read, and its body.

    ``complete`` is False when the body was larger than `MAX_RESPONSE_BYTES` (and then
    ``body`` is empty: it was not read). ``body`` is not in the repr: a 2xx body holds a
    token's name, and an error tracker records the repr of each local of a failing frame.
    """

    status: int
    content_type: str
    retry_after: str | None
    body: bytes = attrs.field(repr=False)
    complete: bool


class Transport:
    """One client's HTTP settings (timeouts, TLS, proxy) and the POST it makes.

    Args:
        timeout: Per attempt.
        tls: aiohttp's ``ssl=`` for every request (see `ssl_setting`).
        proxy: The proxy URL (credentials included), or None for a direct connection.
        secrets: Blanked out of every message (the API key, the proxy's password).
    """

    def __init__(
        self,
        *,
        timeout: Timeout,
        tls: ssl.SSLContext | bool,
        proxy: str | None,
        secrets: Sequence[str],
    ) -> None:
        self._timeout = timeout
        self._ssl = tls
        self._proxy = proxy
        self._secrets = tuple(s for s in secrets if s)
        self._default_timeout = self._make_timeout(None)
        if proxy is None:
            self._via = ""
        else:
            parts = urlsplit(proxy)
            self._via = f" through the proxy {parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    @property
    def proxy(self) -> str | None:
        """The proxy URL requests go through (may hold credentials: never show it)."""
        return self._proxy

    def open_session(
        self, shared: aiohttp.ClientSession | None, headers: Mapping[str, str]
    ) -> aiohttp.ClientSession:
        """A session of our own, on the running loop: on a new pool, or on ``shared``'s pool.

        Only the pool (the connector) of a shared session is used, never its settings, so
        the library's requests keep their own semantics. Close the result with
        ``await session.close()``: that never closes a shared pool.

        Raises:
            ConfigurationError: ``shared`` is closed.
        """
        if shared is not None:
            if shared.closed or shared.connector is None:
                raise ConfigurationError(_SHARED_CLOSED)
            connector: aiohttp.BaseConnector = shared.connector
        else:
            connector = _ForkAwareConnector(limit=100, ttl_dns_cache=300)
        # Our headers become the session's defaults: aiohttp then skips merging a
        # per-request dict on every call. Cookies are neither kept nor sent. The
        # environment's proxies were read when the client was made; .netrc is never
        # read (the API key authenticates).
        return aiohttp.ClientSession(
            connector=connector,
            connector_owner=shared is None,
            headers=dict(headers),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            raise_for_status=False,
            auto_decompress=True,
        )

    def _make_timeout(self, remaining: float | None) -> aiohttp.ClientTimeout:
        total = self._timeout.total if remaining is None else min(self._timeout.total, remaining)
        return aiohttp.ClientTimeout(total=total, connect=min(self._timeout.connect, total))

    def timeout(self, remaining: float | None) -> aiohttp.ClientTimeout:
        """The attempt's timeout: the client's, shortened to the deadline's rest."""
        if remaining is None:
            return self._default_timeout  # the same for every call without a deadline
        return self._make_timeout(remaining)

    async def post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: bytes,
        timeout: aiohttp.ClientTimeout,
    ) -> Reply:
        """One POST of ``body``; its reply, whatever the status.

        Raises:
            APITimeoutError: the connect or the total timeout expired.
            CertificateVerificationError: the server's certificate could not be verified.
            ProxyAuthenticationError: the proxy answered 407 (to the CONNECT of an https
                target, or to the forwarded request for an http one).
            APIConnectionError: any other failure to get a whole answer.
            ConfigurationError: the pool (a shared session's) was closed.
        """
        if session.closed:  # only a shared session's pool can be closed under us
            raise ConfigurationError(_SHARED_CLOSED)
        try:
            async with session.post(
                url,
                data=body,
                timeout=timeout,
                allow_redirects=False,
                proxy=self._proxy,
                ssl=self._ssl,
            ) as response:
                if response.status == _PROXY_AUTH_REQUIRED and self._proxy is not None:
                    # An http:// target: the proxy forwards the request, and answers
                    # itself when it wants credentials. (Released unread on the way out.)
                    raise self._proxy_refused()
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
                # (The headers stay readable after the response is released.)
                headers = response.headers
                return Reply(
                    status=response.status,
                    content_type=headers.get("Content-Type", ""),
                    retry_after=headers.get("Retry-After"),
                    body=raw,
                    complete=complete,
                )
        except asyncio.TimeoutError as exc:
            connect_error = getattr(aiohttp, "ConnectionTimeoutError", ())
            if isinstance(exc, connect_error):
                message = f"no connection to the token service{self._via} within "
                message += f"{timeout.connect:g}s"
            else:
                message = f"no complete answer from the token service within {timeout.total:g}s"
            raise APITimeoutError(message) from None
        except aiohttp.ClientError as exc:
            if isinstance(exc, aiohttp.ClientHttpProxyError) and exc.status == _PROXY_AUTH_REQUIRED:
                raise self._proxy_refused() from None  # the CONNECT of an https:// target
            problem = _certificate_problem(exc)
            if problem is not None:
                host = urlsplit(url).hostname
                text = redact_secrets(problem, self._secrets)
                raise CertificateVerificationError(
                    f"the TLS certificate of {host} could not be verified ({text}); "
                    f"not retried. {_CA_HINT}"
                ) from None
            # aiohttp's message may quote what the server sent (a broken header line ...).
            text = redact_secrets(f"{type(exc).__name__}: {exc}", self._secrets)
            raise APIConnectionError(
                f"could not reach the token service{self._via}: {text}"
            ) from None

    def _proxy_refused(self) -> ProxyAuthenticationError:
        """The error for a 407 from the proxy: names it, never its credentials."""
        message = (
            f"could not reach the token service{self._via}: the proxy answered "
            f"407 Proxy Authentication Required (its credentials are missing or wrong); "
            f"not retried. {_PROXY_AUTH_HINT}"
        )
        return ProxyAuthenticationError(redact_secrets(message, self._secrets))


def _certificate_problem(exc: BaseException) -> str | None:
    """The reason when ``exc`` is (or wraps) a certificate verification failure, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, aiohttp.ClientConnectorCertificateError):
            current = current.certificate_error
            continue
        if isinstance(current, ssl.SSLCertVerificationError):
            return current.verify_message or current.reason or str(current)
        if isinstance(current, ssl.CertificateError):  # pragma: no cover - an alias today
            return str(current)
        wrapped = getattr(current, "os_error", None)
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__
    return None


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
