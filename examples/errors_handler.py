"""What a web endpoint answers its own caller when minting a token fails.

`answer_for` maps every gemini-tokens exception to a status, headers and a short
text. The aiohttp middleware and the FastAPI exception handler below apply it to every
endpoint, so handlers just call ``create()``. By the time an error reaches them the
client has already retried what was worth retrying; a ``retry_after`` from the service
is passed on as a ``Retry-After`` header instead of blocking a worker while it runs out.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

from aiohttp import web
from aiohttp.typedefs import Handler
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import gemini_tokens

logger = logging.getLogger(__name__)

#: Seconds to tell callers to wait when the service is down and gave no hint.
DEFAULT_RETRY_AFTER = 5


class Answer(NamedTuple):
    """What to send back: the HTTP status, extra headers, and a short text."""

    status: int
    headers: dict[str, str]
    text: str


def answer_for(exc: gemini_tokens.GeminiTokensError) -> Answer:
    """The answer for an exception from ``create()``, after the client's own retries."""
    if isinstance(exc, gemini_tokens.APIStatusError) and (
        exc.retry_after is not None or exc.status_code == 429
    ):
        # The service said when to come back (or that we are over quota): say so too.
        status = 429 if isinstance(exc, gemini_tokens.RateLimitError) else 503
        hint = DEFAULT_RETRY_AFTER if exc.retry_after is None else exc.retry_after
        wait = max(1, math.ceil(hint))  # whole seconds, and never 0: no hot retry loops
        return Answer(status, {"Retry-After": str(wait)}, "try again later")
    outage = (gemini_tokens.ServerError, gemini_tokens.APIConnectionError)
    if isinstance(exc, outage) or (
        isinstance(exc, gemini_tokens.APIStatusError) and exc.status_code == 408
    ):
        # An outage that outlasted the retries: transient, the caller may try again.
        retry = {"Retry-After": str(DEFAULT_RETRY_AFTER)}
        return Answer(503, retry, "token service unavailable")
    if isinstance(exc, gemini_tokens.InvalidResponseError):
        return Answer(502, {}, "bad answer from the token service")
    # A bad key, a refused option, a wrong URL: ours to fix, not the caller's. Safe to
    # log: messages never contain the API key or a token's name.
    logger.error("cannot mint tokens: %r", exc)
    return Answer(500, {}, "token service misconfigured")


# -- aiohttp -----------------------------------------------------------------------

TOKENS = web.AppKey("tokens", gemini_tokens.AsyncClient)


@web.middleware
async def token_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every endpoint's token errors with `answer_for`."""
    try:
        return await handler(request)
    except gemini_tokens.GeminiTokensError as exc:
        status, headers, text = answer_for(exc)
        return web.json_response({"error": text}, status=status, headers=headers)


async def mint(request: web.Request) -> web.Response:
    """``POST /token``. (Authenticate your caller first: see the recipes.)"""
    # deadline: this request never waits more than 10 s, retries and backoff included.
    token = await request.app[TOKENS].create(uses=1, deadline=10)
    return web.json_response(token.to_dict())


def make_aiohttp_app(client: gemini_tokens.AsyncClient) -> web.Application:
    """An aiohttp app minting with ``client``."""
    app = web.Application(middlewares=[token_errors])
    app[TOKENS] = client
    app.router.add_post("/token", mint)
    return app


# -- FastAPI -----------------------------------------------------------------------


def make_fastapi_app(client: gemini_tokens.AsyncClient) -> FastAPI:
    """A FastAPI app minting with ``client``."""
    app = FastAPI()

    @app.exception_handler(gemini_tokens.GeminiTokensError)
    async def token_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, gemini_tokens.GeminiTokensError)
        status, headers, text = answer_for(exc)
        return JSONResponse({"error": text}, status_code=status, headers=headers)

    @app.post("/token")
    async def mint_token() -> dict[str, object]:
        token = await client.create(uses=1, deadline=10)
        return token.to_dict()

    return app
