"""A Flask token server with the sync Client: one client per process, fork-safe.

Run it under gunicorn; ``--preload`` imports this module (and builds the client) once in the
master, and each forked worker gets its own event loop and connection pool on first use::

    GEMINI_API_KEY=... gunicorn --preload -w 4 -b 127.0.0.1:8080 examples.flask_app:app
"""

from __future__ import annotations

import hmac
import math
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import Unauthorized

import gemini_tokens

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"

# REPLACE THIS: a placeholder for your real authentication (flask-login, a session, OAuth).
DEMO_BEARER_TOKENS = {"demo-user-token": "alice"}

app = Flask(__name__)
# One client per process, shared by all threads; the library makes it fork-safe.
tokens = gemini_tokens.Client()


def authenticate() -> str:
    """Return the caller's user id, or answer 401. Replace with your own check."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    for secret, user in DEMO_BEARER_TOKENS.items():
        if scheme == "Bearer" and hmac.compare_digest(credential.encode(), secret.encode()):
            return user
    raise Unauthorized("sign in first")


@app.post("/token")
def mint_token() -> Any:
    """Mint a single-use token locked to one model."""
    authenticate()
    try:
        token = tokens.create(
            uses=1,
            live_connect_constraints={"model": MODEL, "config": {"response_modalities": ["AUDIO"]}},
        )
    except gemini_tokens.APIStatusError as exc:
        if exc.status_code in (429, 503) or exc.retry_after is not None:
            status = 429 if isinstance(exc, gemini_tokens.RateLimitError) else 503
            retry_after = str(math.ceil(exc.retry_after or 1))
            return {"error": "try again later"}, status, {"Retry-After": retry_after}
        return {"error": "token service error"}, 502
    except gemini_tokens.APIError:
        return {"error": "token service unreachable"}, 502
    return token.to_dict()  # the token, never the API key
