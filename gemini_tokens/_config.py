"""Client settings: where to send, with which key, and how long to wait.

Small value objects with sensible defaults, and the rules for reading them from the
environment. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

import attrs

from gemini_tokens._errors import ConfigurationError

if TYPE_CHECKING:
    import ssl
    from typing import TypeAlias

    #: What ``verify=`` takes, in httpx's shape: verify with the system's trust (True), do
    #: not verify (False), trust the CA bundle (or hashed directory) at this path, or use
    #: this context.
    Verify: TypeAlias = "bool | str | os.PathLike[str] | ssl.SSLContext"

__all__ = [
    "API_KEY_ENV_VARS",
    "BASE_URL_ENV_VAR",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "MAX_RESPONSE_BYTES",
    "Timeout",
    "check_proxy_url",
    "is_loopback_host",
    "resolve_api_key",
    "resolve_base_url",
    "resolve_proxy",
    "resolve_timeout",
    "resolve_verify",
]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
#: Token creation exists only in v1alpha.
DEFAULT_API_VERSION = "v1alpha"
#: Read in this order; the first one set wins (as in the official SDK).
API_KEY_ENV_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
BASE_URL_ENV_VAR = "GEMINI_BASE_URL"
#: A token response is a few hundred bytes; anything this large is not one.
MAX_RESPONSE_BYTES = 1024 * 1024


@attrs.frozen(kw_only=True)
class Timeout:
    """How long one HTTP attempt may take.

    Attributes:
        connect: Seconds to get a connection (from the pool or a new one, TLS included).
        total: Seconds for the whole attempt, from sending to the last byte of the body.
    """

    connect: float = 10.0
    total: float = 30.0

    def __attrs_post_init__(self) -> None:
        for name in ("connect", "total"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"Timeout.{name} must be a positive number of seconds")


def resolve_timeout(timeout: float | Timeout | None) -> Timeout:
    """Accept a `Timeout`, a number (the total, in seconds) or None (the defaults)."""
    if timeout is None:
        return Timeout()
    if isinstance(timeout, Timeout):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ConfigurationError("timeout must be a Timeout or a number of seconds")
    return Timeout(connect=min(10.0, float(timeout)), total=float(timeout))


def resolve_api_key(api_key: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The explicit key, else the first of ``GEMINI_API_KEY``, ``GOOGLE_API_KEY`` that is set.

    Raises:
        ConfigurationError: no key anywhere (the message names the variables read, never a key).
    """
    if api_key is not None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigurationError("api_key must be a non-empty string")
        return api_key.strip()
    env = os.environ if environ is None else environ
    for name in API_KEY_ENV_VARS:
        value = env.get(name, "").strip()
        if value:
            return value
    raise ConfigurationError(
        "No API key: pass api_key=... or set one of the environment variables "
        f"{', '.join(API_KEY_ENV_VARS)} (read in that order; none is set)."
    )


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is this machine: a loopback name or address.

    ``localhost`` and any name under it (``app.localhost``; RFC 6761 reserves them for
    loopback), or a loopback IP address (``127.0.0.0/8``, ``::1``), written as a URL's
    ``hostname`` gives it (no brackets, no port). The rule behind ``allow_insecure_http``
    (plain ``http://`` is allowed to such a host only) and the proxy bypass (such a host
    never goes through the environment's proxy).

    Args:
        host: A host name or IP address.
    """
    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _without_userinfo(parts: SplitResult) -> str:
    """The URL with any ``user:password@`` blanked out, for messages."""
    netloc = parts.netloc.rpartition("@")[2]
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    return parts._replace(netloc=netloc).geturl()


def _check_port(parts: SplitResult, source: str) -> None:
    try:
        parts.port  # noqa: B018  (parsing it is the check)
    except ValueError:
        raise ConfigurationError(
            f"{source} has an invalid port (it must be a number from 0 to 65535); "
            f"got {_without_userinfo(parts)!r}"
        ) from None


def resolve_base_url(
    base_url: str | None,
    *,
    allow_insecure_http: bool = False,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The explicit base URL, else ``GEMINI_BASE_URL``, else the public endpoint.

    Plain ``http://`` is refused unless the host is loopback (the API key would travel in
    clear) or ``allow_insecure_http`` is true. Credentials (``user:password@``) are refused:
    the API key authenticates requests, and the base URL is shown in reprs and handed to
    browsers inside ``live_url()``.

    Raises:
        ConfigurationError: a URL that is not http(s), has no host, carries credentials or
            is insecure. The message never repeats a password.
    """
    env = os.environ if environ is None else environ
    url = base_url if base_url is not None else env.get(BASE_URL_ENV_VAR) or DEFAULT_BASE_URL
    source = "base_url" if base_url is not None else BASE_URL_ENV_VAR
    if not isinstance(url, str):
        raise ConfigurationError(f"{source} must be a string such as {DEFAULT_BASE_URL!r}")
    parts = urlsplit(url.strip())
    if "@" in parts.netloc:
        # First: every later message quotes the URL.
        raise ConfigurationError(
            f"{source} must not contain credentials (user:password@); the API key "
            "authenticates requests, and the base URL is shown in reprs and live_url(); "
            f"got {_without_userinfo(parts)!r}"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{source} must be an http(s) URL with a host; got {url!r}")
    _check_port(parts, source)
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{source} must not have a query or fragment")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"{source} uses plain http:// to a non-loopback host, which would send the API key "
            "in clear; use https:// or pass allow_insecure_http=True"
        )
    return url.strip().rstrip("/")


#: Read for a target of each scheme, in this order (lower case first, as curl and requests
#: do); ``ALL_PROXY`` applies to both.
_PROXY_ENV_VARS = {
    "https": ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"),
    "http": ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"),
}
_NO_PROXY_ENV_VARS = ("no_proxy", "NO_PROXY")


def check_proxy_url(value: object, source: str = "proxy") -> str:
    """Validate a proxy URL: ``http://`` or ``https://``, a host, an optional port.

    A URL without a scheme (``proxy.corp:3128``, as often found in ``HTTPS_PROXY``) is taken
    as ``http://``. Credentials (``user:password@``) are allowed: they authenticate to the
    proxy, and are never repeated in a message.

    Raises:
        ConfigurationError: naming ``source`` and the rule.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{source} must be a proxy URL such as 'http://proxy.example:3128', or None"
        )
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    shown = _without_userinfo(parts)
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"{source} must use the http:// or https:// scheme (the scheme of the connection "
            f"to the proxy itself); got {shown!r}"
        )
    if not parts.hostname:
        raise ConfigurationError(f"{source} must name the proxy's host; got {shown!r}")
    _check_port(parts, source)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{source} must be the proxy's scheme, host and port only (no path or query); "
            f"got {shown!r}"
        )
    return parts._replace(path="").geturl()


def resolve_proxy(
    proxy: str | None,
    *,
    trust_env: bool,
    url: str,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The proxy for requests to ``url``: the explicit one, else the environment's, else None.

    With ``trust_env``, ``https_proxy`` / ``HTTPS_PROXY`` (for an https ``url``, else
    ``http_proxy`` / ``HTTP_PROXY``), then ``all_proxy`` / ``ALL_PROXY`` are read, unless
    ``no_proxy`` / ``NO_PROXY`` lists the host (``*`` for every host; ``example.com`` or
    ``.example.com`` for it and its subdomains; an optional ``:port``). A loopback host
    (``127.0.0.1``, ``::1``, ``localhost``: the local emulator) is never sent to the
    environment's proxy, which could not reach this machine's loopback. As in the standard
    library, ``HTTP_PROXY`` is ignored in a CGI script (``REQUEST_METHOD`` set).

    Raises:
        ConfigurationError: ``proxy``, or the variable read, is not a usable proxy URL.
    """
    if not isinstance(trust_env, bool):
        raise ConfigurationError("trust_env must be True or False")
    if proxy is not None:
        return check_proxy_url(proxy, "proxy")
    if not trust_env:
        return None
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if is_loopback_host(parts.hostname or ""):
        return None
    for name in _PROXY_ENV_VARS.get(parts.scheme, ()):
        if name == "HTTP_PROXY" and "REQUEST_METHOD" in env:
            continue  # "httpoxy": in CGI, HTTP_PROXY comes from the client's Proxy header
        value = env.get(name, "").strip()
        if value:
            break
    else:
        return None
    if _bypasses_proxy(parts, env):
        return None
    return check_proxy_url(value, name)


def _bypasses_proxy(parts: SplitResult, env: Mapping[str, str]) -> bool:
    """Whether ``NO_PROXY`` (or ``no_proxy``) exempts the URL's host."""
    no_proxy = next((env[n] for n in _NO_PROXY_ENV_VARS if env.get(n, "").strip()), "")
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]").lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _has_port(entry: str) -> bool:
    """``host:port`` or ``[v6]:port``, but not a bare IPv6 address."""
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1


def resolve_verify(verify: object) -> Verify:
    """Check a ``verify=`` setting: True, False, a CA bundle path, or an `ssl.SSLContext`.

    A path must name an existing file (PEM certificates) or directory (hashed, as made by
    ``openssl rehash``).

    Raises:
        ConfigurationError: naming ``verify`` and the rule.
    """
    import ssl  # not at import time: a CLI --help does not need OpenSSL

    if isinstance(verify, (bool, ssl.SSLContext)):
        return verify
    if isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if not isinstance(path, str) or not path:
            raise ConfigurationError("verify must be a non-empty path of a CA bundle")
        if not os.path.exists(path):
            raise ConfigurationError(
                f"verify names a CA bundle that does not exist: {path!r} (give the path "
                "of a PEM file of CA certificates, or of a hashed certificate directory)"
            )
        return path
    raise ConfigurationError(
        "verify must be True (the system's trusted CAs), False (no verification: tests "
        "only), the path of a CA bundle (PEM), or an ssl.SSLContext"
    )
