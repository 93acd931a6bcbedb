"""A Flask app with the broker mounted at ``/token`` (WSGI, on a loop of its own).

Run it under gunicorn; ``--preload`` builds the broker once in the master, and each
forked worker gets its own event loop and connection pool on first use::

    GEMINI_API_KEY=... gunicorn --preload -w 4 -b 127.0.0.1:8080 examples.flask_app:app

Try it offline: ``gemini-tokens emulator`` prints the ``GEMINI_BASE_URL`` and
``GEMINI_API_KEY`` to export first. With several workers, set
``TOKEN_BROKER_STORAGE=redis://127.0.0.1:6379/0`` so they share one set of rate limits.
"""

from __future__ import annotations

import hmac
import os

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from gemini_tokens.broker import (
    BrokerRequest,
    Caller,
    Denied,
    Policy,
    TokenBroker,
    WSGIApp,
)

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"

# REPLACE THIS: a placeholder for your real authentication (flask-login, OAuth).
DEMO_BEARER_TOKENS = {"demo-user-token": "alice"}


def authorize(request: BrokerRequest) -> Caller:
    """The caller behind the request, or `Denied`. (A sync hook runs in a thread.)"""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    for secret, user in DEMO_BEARER_TOKENS.items():
        same = hmac.compare_digest(credential.encode(), secret.encode())
        if scheme == "Bearer" and same:
            return Caller(id=user)
    raise Denied(401, "sign in first")


broker = TokenBroker(
    authorize=authorize,
    policy=Policy(model=MODEL, config={"response_modalities": ["AUDIO"]}, uses=1),
    rate_limits=["10/minute", "200/day"],
    storage_uri=os.environ.get("TOKEN_BROKER_STORAGE", "memory://"),
)

app = Flask(__name__)


@app.get("/")
def index() -> str:
    """The rest of your app."""
    return "POST /token for a token"


# The broker answers /token (and the routes below it); Flask answers everything else.
token_app = WSGIApp(broker)
mounted = DispatcherMiddleware(app.wsgi_app, {"/token": token_app})
app.wsgi_app = mounted  # type: ignore[method-assign]
