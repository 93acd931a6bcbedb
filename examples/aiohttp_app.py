"""An aiohttp app that hands out tokens with the broker, and serves the browser page.

``POST /token`` answers a signed-in caller with a single-use token locked to one
model and text replies; ``/`` is the page in ``examples/browser/`` that fetches one
and opens a Live session with it.

Try it offline against the bundled emulator (no key, no network)::

    gemini-tokens emulator              # in another terminal; prints the two exports
    export GEMINI_BASE_URL=http://127.0.0.1:PORT GEMINI_API_KEY=emulator-...
    python examples/aiohttp_app.py --port 8080      # then open http://127.0.0.1:8080/

With a real key, only ``GEMINI_API_KEY`` is needed (the key stays on this server).
"""

from __future__ import annotations

import argparse
import hmac
import pathlib

from aiohttp import web

from gemini_tokens.broker import BrokerRequest, Caller, Denied, Policy, TokenBroker
from gemini_tokens.broker.aiohttp import add_routes

BROWSER_DIR = pathlib.Path(__file__).resolve().parent / "browser"
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"

# REPLACE THIS: a placeholder for your real authentication (a session cookie, OAuth).
# Only callers you know may mint tokens, or anyone could spend your quota through you.
DEMO_BEARER_TOKENS = {"demo-user-token": "alice"}


async def authorize(request: BrokerRequest) -> Caller:
    """The caller behind the request, or `Denied`. Replace with your own check."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    for secret, user in DEMO_BEARER_TOKENS.items():
        same = hmac.compare_digest(credential.encode(), secret.encode())
        if scheme == "Bearer" and same:
            return Caller(id=user)
    raise Denied(401, "sign in first")


def make_broker() -> TokenBroker:
    """Single-use tokens locked to the model and text replies; 10 a minute per user."""
    return TokenBroker(
        authorize=authorize,
        policy=Policy(
            model=MODEL,
            config={"response_modalities": ["TEXT"], "temperature": 0.7},
            uses=1,
            expire_minutes=30,
            new_session_expire_minutes=1,
        ),
        rate_limits=["10/minute", "200/day"],
        global_rate_limits=["600/minute"],
    )


async def index(request: web.Request) -> web.FileResponse:
    """The browser client."""
    return web.FileResponse(BROWSER_DIR / "index.html")


def make_app() -> web.Application:
    """The app; the broker's client reads GEMINI_API_KEY (and GEMINI_BASE_URL)."""
    app = web.Application()
    add_routes(app, make_broker(), path="/token")  # its client closes with the app
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
