"""The broker's `WSGIApp`, on a broker built on an `AsyncClient`, for ``gunicorn --preload``.

The master builds the broker and the app, and mints once through the app at import (a
start-up check: the app's loop thread and the client's pool then exist before the fork);
every request after that mints in a forked worker's thread::

    gunicorn --preload -k gthread --threads 4 -w 2 tests.apps.broker_wsgi_app:app
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

import gemini_tokens
from gemini_tokens.broker import BrokerRequest, Caller, Denied, Policy, TokenBroker, WSGIApp

STARTUP_PID = os.getpid()


def authorize(request: BrokerRequest) -> Caller:
    """Bearer ``demo`` is the one caller; the process id rides along for the test."""
    if request.headers.get("Authorization") != "Bearer demo":
        raise Denied(401, "sign in first")
    return Caller(id="demo")


def audit(event: Any) -> None:
    """One line per decision, with the worker's pid (the test reads gunicorn's output)."""
    # One write per line: sync sinks run on worker threads, and print() writes the line and
    # its newline apart, so two events could share a line.
    sys.stdout.write(json.dumps({"pid": os.getpid(), "outcome": event.outcome}) + "\n")
    sys.stdout.flush()


# GEMINI_API_KEY and GEMINI_BASE_URL come from the environment.
broker = TokenBroker(
    authorize=authorize,
    policy=Policy(model="gemini-live-test", uses=1),
    audit=audit,
    client=gemini_tokens.AsyncClient(),
)
app = WSGIApp(broker)


def _startup_check() -> int:
    """POST /token through the app itself, in this (the master) process; the status."""
    statuses: list[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "",
        "CONTENT_LENGTH": "0",
        "HTTP_AUTHORIZATION": "Bearer demo",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
    }
    app(environ, lambda status, headers: statuses.append(status))
    return int(statuses[0].split()[0])


STARTUP_STATUS = _startup_check()
assert STARTUP_STATUS == 200, STARTUP_STATUS
