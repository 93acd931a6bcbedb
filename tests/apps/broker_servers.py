"""The broker behind real servers, for tests/test_broker_hardening.py: one broker per app,
whose audit sink prints each decision as an ``AUDIT {json}`` line (the test reads the
server's output)::

    uvicorn tests.apps.broker_servers:asgi_app
    uvicorn tests.apps.broker_servers:fastapi_app
    gunicorn -k gthread tests.apps.broker_servers:wsgi_app
"""

from __future__ import annotations

import json
from typing import Any

from gemini_tokens.broker import (
    ASGIApp,
    AuditEvent,
    BrokerRequest,
    Caller,
    Denied,
    Policy,
    TokenBroker,
    WSGIApp,
)


def authorize(request: BrokerRequest) -> Caller:
    """Bearer ``demo`` is the one caller."""
    if request.headers.get("Authorization") != "Bearer demo":
        raise Denied(401, "sign in first")
    return Caller(id="demo")


def audit(event: AuditEvent) -> None:
    """One ``AUDIT`` line per decision."""
    print("AUDIT " + json.dumps(event.to_dict()), flush=True)


def _broker() -> TokenBroker:
    # GEMINI_API_KEY and GEMINI_BASE_URL come from the environment.
    return TokenBroker(
        authorize=authorize, policy=Policy(model="gemini-live-test", uses=1), audit=audit
    )


asgi_app = ASGIApp(_broker())
_wsgi = WSGIApp(_broker())


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
    """`WSGIApp` mounted at ``/token``, as werkzeug's ``DispatcherMiddleware`` would."""
    path = environ.get("PATH_INFO", "")
    if path.startswith("/token"):
        environ = {**environ, "SCRIPT_NAME": "/token", "PATH_INFO": path[len("/token") :]}
    return _wsgi(environ, start_response)


def _fastapi_app() -> Any:
    from fastapi import FastAPI

    from gemini_tokens.broker.fastapi import router

    app = FastAPI()
    app.include_router(router(_broker()))
    return app


fastapi_app = _fastapi_app()
