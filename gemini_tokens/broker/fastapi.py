"""The broker in FastAPI: ``app.include_router(router(broker))``.

The endpoint shows in the app's OpenAPI with the broker's contract; the router's lifespan
closes the broker's client when the app stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response

from gemini_tokens.broker._asgi import declared_length, read_body, request_from_scope
from gemini_tokens.broker._openapi import operation

if TYPE_CHECKING:
    from gemini_tokens.broker._broker import TokenBroker

__all__ = ["router"]

_OTHER_METHODS = ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"]


def router(broker: TokenBroker, path: str = "/token", **options: Any) -> APIRouter:
    """An `APIRouter` serving ``broker`` at ``path``.

    Args:
        broker: The `TokenBroker`.
        path: The token endpoint's path.
        **options: Passed to `APIRouter` (``tags``, ``prefix``...).
    """
    path = "/" + path.strip("/")

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await broker.aclose()

    api = APIRouter(lifespan=lifespan, **options)

    async def token(request: Request) -> Response:
        scope = request.scope
        body, too_large, incomplete = await read_body(request.receive, declared_length(scope))
        tail = request.path_params.get("subpath")
        subpath = "" if tail is None else "/" + str(tail)
        answer = await broker.handle(
            request_from_scope(scope, body, too_large, subpath, incomplete)
        )
        # The broker's header names are unique: a dict is the cheapest way in.
        return Response(answer.body, answer.status, headers=dict(answer.headers))

    spec = operation(
        broker.policy,
        broker.renewal_enabled,
        broker.live_minutes + broker.global_live_minutes,
        broker.checks_suspensions,
    )
    api.add_api_route(
        path,
        token,
        methods=["POST"],
        summary=spec["summary"],
        description=spec["description"],
        operation_id="mint_token",
        openapi_extra={"requestBody": spec["requestBody"]},
        responses=spec["responses"],
        response_class=Response,
    )
    api.add_api_route(path, token, methods=_OTHER_METHODS, include_in_schema=False)
    api.add_api_route(
        path + "/{subpath:path}", token, methods=["POST", *_OTHER_METHODS], include_in_schema=False
    )
    return api
