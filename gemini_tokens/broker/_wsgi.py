"""`WSGIApp`: the broker as a WSGI app, deciding on a private event loop of its own.

Mount it under a prefix (Flask: werkzeug's ``DispatcherMiddleware``; Django: a few lines in
``wsgi.py``): ``SCRIPT_NAME`` is then the token path and ``PATH_INFO`` the sub-route. The
request is read in the server's thread; `TokenBroker.handle` runs on the app's loop
(`_bridge.LoopThread`), where the broker's `AsyncClient` keeps its connection pool.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from gemini_tokens.broker._bridge import LoopThread
from gemini_tokens.broker._types import MAX_BODY_BYTES, BrokerRequest

if TYPE_CHECKING:
    from gemini_tokens.broker._broker import TokenBroker

__all__ = ["WSGIApp", "request_from_environ"]


def _headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append((key[5:].replace("_", "-").title(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            out.append((key.replace("_", "-").title(), value))
    return out


def _read_exactly(stream: Any, size: int) -> bytes:
    """``size`` bytes, fewer only when the stream ends first (a server may return short
    reads; gunicorn returns what came when the client leaves early)."""
    chunks: list[bytes] = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read(environ: dict[str, Any]) -> tuple[bytes, bool, bool]:
    """The body; ``(body, too_large, incomplete)``.

    ``incomplete``: fewer bytes than ``Content-Length`` (the client left early), or a read
    the server failed (gunicorn raises on a chunked body cut short). Such a request is
    refused, never decided on the part that came.
    """
    stream = environ.get("wsgi.input")
    try:
        declared = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        declared = -1
    if declared > MAX_BODY_BYTES:
        return b"", True, False
    if stream is None:
        return b"", False, False
    try:
        if declared >= 0:
            body = _read_exactly(stream, declared)
            if len(body) < declared:
                return b"", False, True
        elif environ.get("wsgi.input_terminated"):
            body = stream.read(MAX_BODY_BYTES + 1)
        else:
            return b"", False, False  # no length and no end marker: PEP 3333 says do not read
    except Exception:  # the server's own error for a broken body (gunicorn: NoMoreData ...)
        return b"", False, True
    return (b"", True, False) if len(body) > MAX_BODY_BYTES else (body, False, False)


def request_from_environ(environ: dict[str, Any]) -> BrokerRequest:
    """A `BrokerRequest` from a WSGI environ (``PATH_INFO`` is the sub-route)."""
    body, too_large, incomplete = _read(environ)
    script = environ.get("SCRIPT_NAME", "")
    subpath = environ.get("PATH_INFO", "")
    return BrokerRequest(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=(script + subpath) or "/",
        headers=_headers(environ),
        client_address=environ.get("REMOTE_ADDR"),
        body=body,
        body_too_large=too_large,
        body_incomplete=incomplete,
        subpath=subpath,
        scheme=environ.get("wsgi.url_scheme", "http"),
        native=environ,
    )


class WSGIApp:
    """The broker as a WSGI application (Flask, Django, gunicorn, any WSGI server).

    Each request is decided by `TokenBroker.handle` on the app's own event loop, in a daemon
    thread started on first use: safe from many threads at once, and after ``os.fork()``
    (gunicorn ``--preload``, even after a request in the master) each process starts its own
    loop and connection pool. The broker's client must be an `AsyncClient` used only through
    this app (its pool belongs to the loop it is first used on), or the broker's own.

    At exit, or at `close`, the loop closes what the broker opened on it (`TokenBroker.aclose`).

    Args:
        broker: The `TokenBroker` to serve.
    """

    def __init__(self, broker: TokenBroker) -> None:
        self.broker = broker
        self._bridge = LoopThread(broker.aclose)
        self._finalizer = weakref.finalize(self, self._bridge.stop)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        response = self._bridge.run(self.broker.handle(request_from_environ(environ)))
        status = f"{response.status} {HTTPStatus(response.status).phrase}"
        headers = list(response.headers)
        headers.append(("Content-Length", str(len(response.body))))
        start_response(status, headers)
        return [response.body]

    def close(self) -> None:
        """Close what the broker opened on the app's loop (`TokenBroker.aclose`: its own
        client and the rate limits' storage), then end the loop's thread. Idempotent.

        Done at exit by itself. The broker stays usable elsewhere; this app answers no more.
        """
        self._finalizer()
