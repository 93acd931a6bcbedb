"""Origins: which pages may ask for a token, and the CORS answers that tell browsers so.

A browser sends ``Origin`` with every cross-origin request and with same-origin POSTs. A POST
whose origin is neither allowed nor the request's own host is refused before ``authorize``
runs, so a foreign page cannot mint with a signed-in user's cookies. A POST without ``Origin``
whose fetch metadata (``Sec-Fetch-Site``) says another site sent it is refused the same way.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

from gemini_tokens import ConfigurationError
from gemini_tokens.broker._types import BrokerRequest

__all__ = ["Origins"]

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_ALLOW_METHODS = "POST"
_MAX_AGE = "600"
#: ``Sec-Fetch-Site`` values that let a POST without ``Origin`` go on: the page's own origin,
#: or the user (a bookmark, the address bar). ``same-site`` is another origin all the same.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def _normalize(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port; None if not an origin."""
    try:
        parts = urllib.parse.urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and str(port) != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


class Origins:
    """The allowed origins, and the CORS headers for them.

    Args:
        allowed: Exact origins (``https://app.example.com``), or ``"*"`` for any origin
            (development only: any page could then mint with your users' cookies).

    Raises:
        ConfigurationError: an entry that is not an origin.
    """

    def __init__(self, allowed: Iterable[str] | str | None) -> None:
        if allowed is None:
            allowed = ()
        if isinstance(allowed, str):
            allowed = (allowed,)
        self.any = False
        self.allowed: frozenset[str] = frozenset()
        normalized = set()
        for entry in allowed:
            if entry == "*":
                self.any = True
                continue
            origin = _normalize(entry) if isinstance(entry, str) else None
            if origin is None:
                raise ConfigurationError(
                    f"allowed_origins: {entry!r} is not an origin "
                    "(scheme://host[:port], no path), e.g. 'https://app.example.com'"
                )
            normalized.add(origin)
        self.allowed = frozenset(normalized)

    def is_allowed(self, origin: str) -> bool:
        """Whether ``origin`` is one of the allowed origins."""
        if self.any:
            return True
        normalized = _normalize(origin)
        return normalized is not None and normalized in self.allowed

    @staticmethod
    def is_same_host(origin: str, request: BrokerRequest) -> bool:
        """Whether ``origin`` names the host (and port) the request was sent to."""
        normalized = _normalize(origin)
        host = request.headers.get("host", "").strip().lower()
        if normalized is None or not host:
            return False
        scheme, _, netloc = normalized.partition("://")
        default = _DEFAULT_PORTS[scheme]
        if host.endswith(f":{default}") and not host.endswith("]"):
            host = host[: -len(default) - 1]
        return netloc == host

    def permits(self, request: BrokerRequest) -> bool:
        """Whether a POST may go on: an allowed ``Origin`` or the request's own host; or no
        ``Origin`` and no ``Sec-Fetch-Site`` other than ``same-origin`` or ``none``."""
        origin = request.origin
        if origin is None:
            # Not a browser's cross-origin request (curl, a server, an app)... unless its
            # fetch metadata says a page of another site sent it: there is no Origin to
            # match, so that is a foreign origin (as is any value a browser never sends).
            site = request.headers.get("sec-fetch-site")
            return site is None or site.strip().lower() in _OWN_FETCH_SITES
        return self.is_allowed(origin) or self.is_same_host(origin, request)

    def response_headers(self, request: BrokerRequest) -> list[tuple[str, str]]:
        """CORS headers for an actual (non-preflight) answer: ``Vary: Origin`` always."""
        headers = [("Vary", "Origin")]
        origin = request.origin
        if origin is not None and self.is_allowed(origin):
            headers += [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Expose-Headers", "Retry-After"),
            ]
        return headers

    def preflight(self, request: BrokerRequest) -> tuple[int, list[tuple[str, str]]]:
        """The status and headers answering an ``OPTIONS`` preflight.

        204 with the CORS headers for an allowed origin asking for POST; 403 otherwise.
        """
        headers = [("Vary", "Origin")]
        origin = request.origin
        method = request.headers.get("access-control-request-method", "").upper()
        if origin is None or not self.is_allowed(origin) or method not in ("POST", ""):
            return 403, headers
        headers += [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Allow-Methods", _ALLOW_METHODS),
            ("Access-Control-Max-Age", _MAX_AGE),
        ]
        asked = request.headers.get("access-control-request-headers")
        if asked:
            headers.append(("Access-Control-Allow-Headers", asked))
        return 204, headers
