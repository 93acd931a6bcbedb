"""The voice app's server: the token broker (renewal on) behind a toy sign-in, and the page.

Routes:

- ``POST /signin`` ``{"name": "alice"}``: signs in (a random session id in an HttpOnly cookie).
- ``POST /signout``: forgets that session id, so the broker refuses the next renewal.
- ``GET /me``: ``{"user": "alice"}`` or ``{"user": null}``.
- ``POST /token``: the broker (``gemini_tokens.broker.fastapi.router``); ``authorize`` reads
  the cookie on every request, renewals included.
- ``/``: the built page (``npm run build`` writes ``dist/``).

Offline, against the emulator (see README.md)::

    gemini-tokens emulator      # prints GEMINI_BASE_URL and GEMINI_API_KEY: export them
    uvicorn --app-dir examples/voice-app server:app --port 8000

The broker's secret comes from ``GEMINI_TOKENS_BROKER_SECRET`` (one for every replica); without
it a random one is made at start, which is fine for one process.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from http.cookies import CookieError, SimpleCookie

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from gemini_tokens.broker import BrokerRequest, Caller, Denied, Policy, TokenBroker
from gemini_tokens.broker.fastapi import router

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
COOKIE = "voice_app_session"
DIST = pathlib.Path(__file__).resolve().parent / "dist"

POLICY = Policy(
    model=MODEL,
    config={
        "response_modalities": ["AUDIO"],
        "input_audio_transcription": {},
        "output_audio_transcription": {},
    },
    lock_additional_fields=[],  # lock what is set; the page's resumption handle stays its own
    uses=1,
    expire_minutes=15,
    new_session_expire_minutes=1,
    max_session_minutes=60,  # no token of one conversation is valid past its first hour
)


class SignIn(BaseModel):
    """The sign-in form: a display name (REPLACE THIS with your real sign-in)."""

    name: str = Field(default="alice", min_length=1, max_length=40)


def create_app(dist: pathlib.Path = DIST, secret: str | None = None) -> FastAPI:
    """The app: the sign-in routes, the broker at ``/token`` and the built page.

    Args:
        dist: The built page (``npm run build``'s output).
        secret: The broker's renewal secret; default ``GEMINI_TOKENS_BROKER_SECRET``, else a
            random one (good for one process only).
    """
    # REPLACE THIS: signed-in users by session id, in memory. Yours is your real session store.
    users: dict[str, str] = {}

    def signed_in(cookie_header: str) -> str | None:
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(cookie_header)
        except CookieError:  # a malformed Cookie header is nobody
            return None
        morsel = cookie.get(COOKIE)
        return users.get(morsel.value) if morsel is not None else None

    async def authorize(request: BrokerRequest) -> Caller:
        # Runs on every request, renewals included: a signed-out user gets no further token.
        user = signed_in(request.headers.get("Cookie", ""))
        if user is None:
            raise Denied(401, "you are signed out: sign in to talk again")
        return Caller(id=user)

    broker = TokenBroker(
        authorize=authorize,
        policy=POLICY,
        rate_limits=["30/minute"],
        renewal=True,
        secret=secret or os.environ.get("GEMINI_TOKENS_BROKER_SECRET") or secrets.token_urlsafe(32),
        renewal_rate_limits=["600/hour"],
        # `npm run dev`'s page: its proxy forwards the POST with the dev server's origin.
        allowed_origins=["http://127.0.0.1:5173", "http://localhost:5173"],
    )
    app = FastAPI(title="gemini-tokens voice app")
    app.include_router(router(broker, path="/token"))  # its lifespan closes the broker

    @app.post("/signin")
    async def signin(form: SignIn, response: Response) -> dict[str, str]:
        session = secrets.token_urlsafe(24)
        users[session] = form.name
        response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/")
        return {"user": form.name}

    @app.post("/signout")
    async def signout(request: Request, response: Response) -> dict[str, None]:
        session = request.cookies.get(COOKIE)
        if session is not None:
            users.pop(session, None)  # the cookie may linger: it no longer names anyone
        response.delete_cookie(COOKIE, path="/")
        return {"user": None}

    @app.get("/me")
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"user": signed_in(request.headers.get("Cookie", ""))})

    if dist.is_dir():
        app.mount("/", StaticFiles(directory=dist, html=True), name="page")
    else:

        @app.get("/", response_class=HTMLResponse)
        async def not_built() -> str:
            return "<p>Build the page first: <code>npm ci && npm run build</code></p>"

    return app


app = create_app()
