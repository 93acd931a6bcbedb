"""`ASGIApp`: the broker as a pure ASGI 3 app (no framework imports).

Mount it in Starlette or FastAPI (``Mount("/token", app=ASGIApp(broker))``), or serve it alone.
It answers ``lifespan`` too, closing the broker's client at shutdown when it is the top app
(a mounted app gets no lifespan events: close it in the parent app's lifespan).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from gemini_tokens.broker._types import MAX_BODY_BYTES, BrokerRequest

if TYPE_CHECKING:
    from gemini_tokens.broker._broker import TokenBroker

__all__ = ["ASGIApp"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, if it has a valid one."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive: Receive, declared: int | None) -> tuple[bytes, bool, bool]:
    """Read at most ``MAX_BODY_BYTES + 1`` bytes; ``(body, too_large, incomplete)``.

    ``incomplete``: the client disconnected before the body's end (uvicorn then answers
    ``http.disconnect``, dropping what had come), or sent less than its ``Content-Length``.
    Such a request must be refused, not decided as if its body were what arrived.
    """
    if declared is not None and declared > MAX_BODY_BYTES:
        return b"", True, False
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", False, True
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return b"", True, False
        if not message.get("more_body", False):
            if declared is not None and size != declared:
                return b"", False, True
            return b"".join(chunks), False, False


def subpath_of(scope: Scope, routes: Iterable[str]) -> str:
    """The sub-route an ASGI request is for.

    Mounted (Starlette's ``Mount``), it is the path below ``root_path``. Routed to a single
    path (a ``Route``, or as the whole app), that path is the token endpoint, and only a
    path ending in a known sub-route (``/client.js``) is that sub-route.
    """
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :]
    return next((key for key in routes if key and path.endswith(key)), "")


def request_from_scope(
    scope: Scope, body: bytes, too_large: bool, subpath: str, incomplete: bool = False
) -> BrokerRequest:
    """A `BrokerRequest` from an ASGI HTTP scope."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())]
    path: str = scope.get("path", "/")
    client = scope.get("client")
    return BrokerRequest(
        method=scope.get("method", "GET"),
        path=path,
        headers=headers,
        client_address=client[0] if client else None,
        body=body,
        body_too_large=too_large,
        body_incomplete=incomplete,
        subpath=subpath,
        scheme=scope.get("scheme", "http"),
        native=scope,
    )


class ASGIApp:
    """The broker as an ASGI 3 application (Starlette, FastAPI, any ASGI server).

    Mounted under a prefix, the path below it picks the route; routed to a single path, that
    path is the token endpoint. It answers ``lifespan`` events too, closing the broker
    (`TokenBroker.aclose`) at shutdown when it is the top app.

    Args:
        broker: The `TokenBroker` to serve.
    """

    def __init__(self, broker: TokenBroker) -> None:
        self.broker = broker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websocket: not ours
            return
        body, too_large, incomplete = await read_body(receive, declared_length(scope))
        subpath = subpath_of(scope, self.broker.subpaths)
        request = request_from_scope(scope, body, too_large, subpath, incomplete)
        response = await self.broker.handle(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.broker.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
