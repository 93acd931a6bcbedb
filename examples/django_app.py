"""A Django project in one file, with the broker mounted at ``/token`` (WSGI).

``authorize`` reads the caller from Django's own session (the ``sessionid`` cookie
that ``django.contrib.auth.login`` sets), so a signed-in user's page can fetch a token
and no one else can. Run it (offline: export what ``gemini-tokens emulator`` prints)::

    GEMINI_API_KEY=... python examples/django_app.py runserver 8080
    GEMINI_API_KEY=... gunicorn -w 4 examples.django_app:application

In a real project, the settings go in ``settings.py`` and the last lines in ``wsgi.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "dev-only-key-replace-me"),
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        INSTALLED_APPS=["django.contrib.sessions"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        # Signed cookies keep the example free of a database; any session backend works.
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    )
    django.setup()

from django.contrib.sessions.backends.base import SessionBase
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.module_loading import import_string

from gemini_tokens.broker import (
    BrokerRequest,
    Caller,
    Denied,
    Policy,
    TokenBroker,
    WSGIApp,
)

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
Application = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def authorize(request: BrokerRequest) -> Caller:
    """The signed-in Django user, from the session cookie (runs in a worker thread)."""
    store: type[SessionBase] = import_string(settings.SESSION_ENGINE + ".SessionStore")
    session = store(session_key=request.cookies.get(settings.SESSION_COOKIE_NAME))
    user_id = session.get("_auth_user_id")  # what django.contrib.auth.login stores
    if user_id is None:
        raise Denied(401, "sign in first")
    return Caller(id=str(user_id))


broker = TokenBroker(
    authorize=authorize,
    policy=Policy(model=MODEL, config={"response_modalities": ["AUDIO"]}, uses=1),
    rate_limits=["10/minute", "200/day"],
    storage_uri=os.environ.get("TOKEN_BROKER_STORAGE", "memory://"),
)


def index(request: HttpRequest) -> HttpResponse:
    """The rest of your site."""
    return HttpResponse("POST /token for a token")


def demo_login(request: HttpRequest) -> HttpResponse:
    """REPLACE THIS: signs the visitor in as "alice" (use django.contrib.auth.login)."""
    request.session["_auth_user_id"] = "alice"
    return HttpResponse("signed in as alice")


urlpatterns = [path("", index), path("demo-login", demo_login)]


def mount(prefix: str, inner: Application, outer: Application) -> Application:
    """Send ``prefix`` and the paths below it to ``inner``, the rest to ``outer``."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path_info = environ.get("PATH_INFO", "")
        if path_info == prefix or path_info.startswith(prefix + "/"):
            environ = {
                **environ,
                "SCRIPT_NAME": environ.get("SCRIPT_NAME", "") + prefix,
                "PATH_INFO": path_info[len(prefix) :],
            }
            return inner(environ, start_response)
        return outer(environ, start_response)

    return application


token_app = WSGIApp(broker)
application = mount("/token", token_app, get_wsgi_application())

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
