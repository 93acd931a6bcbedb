"""Client settings: where to send, with which key, and how long to wait.

Small value objects with sensible defaults, and the rules for reading them from the
environment. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

import attrs

from gemini_tokens._errors import ConfigurationError

__all__ = [
    "API_KEY_ENV_VARS",
    "BASE_URL_ENV_VAR",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "MAX_RESPONSE_BYTES",
    "Timeout",
    "resolve_api_key",
    "resolve_base_url",
    "resolve_timeout",
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


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_base_url(
    base_url: str | None,
    *,
    allow_insecure_http: bool = False,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The explicit base URL, else ``GEMINI_BASE_URL``, else the public endpoint.

    Plain ``http://`` is refused unless the host is loopback (the API key would travel in
    clear) or ``allow_insecure_http`` is true.

    Raises:
        ConfigurationError: a URL that is not http(s), has no host, or is insecure.
    """
    env = os.environ if environ is None else environ
    url = base_url if base_url is not None else env.get(BASE_URL_ENV_VAR) or DEFAULT_BASE_URL
    source = "base_url" if base_url is not None else BASE_URL_ENV_VAR
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{source} must be an http(s) URL with a host; got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{source} must not have a query or fragment")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"{source} uses plain http:// to a non-loopback host, which would send the API key "
            "in clear; use https:// or pass allow_insecure_http=True"
        )
    return url.strip().rstrip("/")
