"""An aiohttp token server: ``POST /token`` mints a token for an authenticated caller.

The app shares its own ``aiohttp.ClientSession`` with the token client and closes it on
shutdown. It also serves the browser client in ``examples/browser/`` at ``/``.

Run it (the key stays on the server)::

    GEMINI_API_KEY=... python examples/aiohttp_app.py --port 8080

or against the local emulator::

    gemini-tokens emulator            # prints GEMINI_BASE_URL and GEMINI_API_KEY to export
    python examples/aiohttp_app.py
"""

from __future__ import annotations

import argparse
import hmac
import math
import pathlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

import gemini_tokens

BROWSER_DIR = pathlib.Path(__file__).resolve().parent / "browser"
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
TOKENS = web.AppKey("tokens", gemini_tokens.AsyncClient)

# REPLACE THIS: a placeholder for your real authentication (a session cookie, OAuth, ...).
# Only callers you know may mint tokens, or anyone could spend your quota through you.
DEMO_BEARER_TOKENS = {"demo-user-token": "alice"}


def authenticate(request: web.Request) -> str:
    """Return the caller's user id, or answer 401. Replace with your own check."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    for secret, user in DEMO_BEARER_TOKENS.items():
        if scheme == "Bearer" and hmac.compare_digest(credential.encode(), secret.encode()):
            return user
    raise web.HTTPUnauthorized(text="sign in first")


async def token_client(app: web.Application) -> AsyncIterator[None]:
    """One ClientSession for the app, shared with the token client, closed on shutdown."""
    async with (
        aiohttp.ClientSession() as session,
        gemini_tokens.AsyncClient(session=session) as client,
    ):
        app[TOKENS] = client
        yield


async def mint_token(request: web.Request) -> web.Response:
    """Mint a single-use token locked to one model and text replies."""
    authenticate(request)
    try:
        token = await request.app[TOKENS].create(
            uses=1,
            expire_minutes=30,
            live_connect_constraints={
                "model": MODEL,
                "config": {"response_modalities": ["TEXT"], "temperature": 0.7},
            },
        )
    except gemini_tokens.APIStatusError as exc:
        if exc.status_code in (429, 503) or exc.retry_after is not None:
            raise retry_later(exc) from None
        raise web.HTTPBadGateway(text="token service error") from None
    except gemini_tokens.APIError:
        raise web.HTTPBadGateway(text="token service unreachable") from None
    # The token's name and its Live URL; never the API key.
    return web.json_response({**token.to_dict(), "liveUrl": token.live_url()})


def retry_later(exc: gemini_tokens.APIStatusError) -> web.HTTPException:
    """Pass the service's back-off on to our own caller (429 or 503 + Retry-After)."""
    cls = (
        web.HTTPTooManyRequests
        if isinstance(exc, gemini_tokens.RateLimitError)
        else web.HTTPServiceUnavailable
    )
    retry_after = str(math.ceil(exc.retry_after or 1))
    return cls(headers={"Retry-After": retry_after}, text="try again later")


async def index(request: web.Request) -> web.FileResponse:
    """The browser client."""
    return web.FileResponse(BROWSER_DIR / "index.html")


def make_app() -> web.Application:
    """Build the app; the token client reads GEMINI_API_KEY and GEMINI_BASE_URL."""
    app = web.Application()
    app.cleanup_ctx.append(token_client)
    app.router.add_post("/token", mint_token)
    app.router.add_get("/", index)
    app.router.add_static("/static/", BROWSER_DIR)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
