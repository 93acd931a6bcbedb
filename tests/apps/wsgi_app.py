"""A minimal WSGI app for ``gunicorn -k gthread --preload``: the deployment of issue 11.2.

The module-level client mints once at import, in the gunicorn master (a start-up check), and
then again on every request, from the worker threads of the forked workers::

    gunicorn -k gthread --threads 4 -w 2 --preload tests.apps.wsgi_app:app
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import gemini_tokens

tokens = gemini_tokens.Client()  # GEMINI_API_KEY and GEMINI_BASE_URL from the environment
STARTUP_PID = os.getpid()
STARTUP_TOKEN = tokens.create(uses=1)  # before the fork: the loop thread exists in the master


def app(
    environ: dict[str, Any], start_response: Callable[[str, list[tuple[str, str]]], Any]
) -> Iterable[bytes]:
    """Mint a token per request; answer its name and the worker's pid, or the error type."""
    if environ.get("PATH_INFO") == "/health":  # for the test to wait on; mints nothing
        start_response("204 No Content", [])
        return [b""]
    try:
        token = tokens.create(uses=1)
    except gemini_tokens.GeminiTokensError as exc:
        status, body = "500 Internal Server Error", {"error": type(exc).__name__, "text": str(exc)}
    else:
        status, body = "200 OK", {"name": token.name, "pid": os.getpid()}
    body["startup_pid"] = STARTUP_PID
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [data]
