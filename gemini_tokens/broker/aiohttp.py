"""The broker in an aiohttp app: ``add_routes(app, broker, path="/token")``.

The broker's client lives as long as the app: its cleanup closes it (``cleanup_ctx``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from gemini_tokens.broker._types import MAX_BODY_BYTES, BrokerRequest

if TYPE_CHECKING:
    from gemini_tokens.broker._broker import TokenBroker

__all__ = ["add_routes"]


async def _read(request: web.Request) -> tuple[bytes, bool, bool]:
    """The body; ``(body, too_large, incomplete)``.

    aiohttp fails the read when the client leaves before the body's end (a reset, or
    "not enough data to satisfy content length"): that is ``incomplete``, and refused.
    """
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return b"", True, False
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= MAX_BODY_BYTES:
            chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
            if not chunk:
                return b"".join(chunks), False, False
            chunks.append(chunk)
            size += len(chunk)
    except Exception:  # the connection's error, whichever aiohttp raised for it
        return b"", False, True
    return b"", True, False


def add_routes(app: web.Application, broker: TokenBroker, path: str = "/token") -> None:
    """Serve ``broker`` at ``path`` (and the routes below it) in ``app``.

    Args:
        app: The aiohttp application (not yet started).
        broker: The `TokenBroker`.
        path: The token endpoint's path.
    """
    path = "/" + path.strip("/")

    async def handle(request: web.Request) -> web.Response:
        body, too_large, incomplete = await _read(request)
        subpath = request.path[len(path) :] if request.path.startswith(path) else request.path
        answer = await broker.handle(
            BrokerRequest(
                method=request.method,
                path=request.path,
                headers=request.headers.items(),
                client_address=request.remote,
                body=body,
                body_too_large=too_large,
                body_incomplete=incomplete,
                subpath=subpath,
                scheme=request.scheme,
                native=request,
            )
        )
        response = web.Response(status=answer.status, body=answer.body)
        for name, value in answer.headers:
            response.headers.add(name, value)
        return response

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        yield
        await broker.aclose()

    app.router.add_route("*", path, handle)
    app.router.add_route("*", path + "/{subpath:.*}", handle)
    app.cleanup_ctx.append(lifetime)
