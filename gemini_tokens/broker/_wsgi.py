"""`broker.wsgi`: the broker as a WSGI app, deciding on the sync facade's private loop.

Mount it under a prefix (Flask: werkzeug's ``DispatcherMiddleware``; Django: a few lines in
``wsgi.py``): ``SCRIPT_NAME`` is then the token path and ``PATH_INFO`` the sub-route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from gemini_tokens.broker._types import MAX_BODY_BYTES, BrokerRequest

if TYPE_CHECKING:
    from gemini_tokens.broker._broker import TokenBroker

__all__ = ["WSGIApp", "request_from_environ"]

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append((key[5:].replace("_", "-").title(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            out.append((key.replace("_", "-").title(), value))
    return out


def _read(environ: dict[str, Any]) -> tuple[bytes, bool]:
    stream = environ.get("wsgi.input")
    try:
        declared = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        declared = -1
    if declared > MAX_BODY_BYTES:
        return b"", True
    if stream is None:
        return b"", False
    if declared >= 0:
        body = stream.read(declared) if declared else b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read(MAX_BODY_BYTES + 1)
    else:
        return b"", False  # no length and no end marker: PEP 3333 says do not read
    return (b"", True) if len(body) > MAX_BODY_BYTES else (body, False)


def request_from_environ(environ: dict[str, Any]) -> BrokerRequest:
    """A `BrokerRequest` from a WSGI environ (``PATH_INFO`` is the sub-route)."""
    body, too_large = _read(environ)
    script = environ.get("SCRIPT_NAME", "")
    subpath = environ.get("PATH_INFO", "")
    return BrokerRequest(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=(script + subpath) or "/",
        headers=_headers(environ),
        client_address=environ.get("REMOTE_ADDR"),
        body=body,
        body_too_large=too_large,
        subpath=subpath,
        scheme=environ.get("wsgi.url_scheme", "http"),
        native=environ,
    )


class WSGIApp:
    """The broker as a WSGI application."""

    def __init__(self, broker: TokenBroker) -> None:
        self.broker = broker

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        response = self.broker._run_sync(request_from_environ(environ))
        status = f"{response.status} {_REASONS.get(response.status, 'Unknown')}"
        headers = list(response.headers)
        headers.append(("Content-Length", str(len(response.body))))
        start_response(status, headers)
        return [response.body]
