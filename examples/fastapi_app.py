"""A FastAPI token server: a lifespan-managed AsyncClient, injected into the handler.

Run it::

    GEMINI_API_KEY=... uvicorn examples.fastapi_app:app --port 8080
"""

from __future__ import annotations

import hmac
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request

import gemini_tokens

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"

# REPLACE THIS: a placeholder for your real authentication (a session, OAuth, an API gateway).
DEMO_BEARER_TOKENS = {"demo-user-token": "alice"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One token client for the app's lifetime: its connection pool is reused per request."""
    async with gemini_tokens.AsyncClient() as client:  # GEMINI_API_KEY from the environment
        app.state.tokens = client
        yield


app = FastAPI(lifespan=lifespan)


def token_client(request: Request) -> gemini_tokens.AsyncClient:
    """Dependency: the app's token client."""
    client: gemini_tokens.AsyncClient = request.app.state.tokens
    return client


def current_user(authorization: Annotated[str, Header()] = "") -> str:
    """Dependency: the caller's user id. Replace with your own authentication."""
    scheme, _, credential = authorization.partition(" ")
    for secret, user in DEMO_BEARER_TOKENS.items():
        if scheme == "Bearer" and hmac.compare_digest(credential.encode(), secret.encode()):
            return user
    raise HTTPException(status_code=401, detail="sign in first")


@app.post("/token")
async def mint_token(
    user: Annotated[str, Depends(current_user)],
    tokens: Annotated[gemini_tokens.AsyncClient, Depends(token_client)],
) -> dict[str, Any]:
    """Mint a single-use token locked to one model; pass 429/503 back with Retry-After."""
    try:
        token = await tokens.create(
            uses=1,
            live_connect_constraints={"model": MODEL, "config": {"response_modalities": ["AUDIO"]}},
        )
    except gemini_tokens.APIStatusError as exc:
        if exc.status_code in (429, 503) or exc.retry_after is not None:
            status = 429 if isinstance(exc, gemini_tokens.RateLimitError) else 503
            raise HTTPException(
                status_code=status,
                detail="try again later",
                headers={"Retry-After": str(math.ceil(exc.retry_after or 1))},
            ) from None
        raise HTTPException(status_code=502, detail="token service error") from None
    except gemini_tokens.APIError:
        raise HTTPException(status_code=502, detail="token service unreachable") from None
    return token.to_dict()  # the token, never the API key
