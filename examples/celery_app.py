"""A Celery worker task that mints tokens with the sync API, under the prefork pool.

The module-level client is built when the worker imports this module, before it forks its
pool processes; each child gets a fresh event loop and connection pool on first use::

    GEMINI_API_KEY=... celery -A examples.celery_app worker -P prefork -c 4

The broker defaults to a local folder (kombu's filesystem transport) so the example runs
without Redis or RabbitMQ; set CELERY_BROKER_URL for a real one.

A failed mint reaches the caller as the library's own typed exception, with its fields,
through the result backend's default JSON (every gemini-tokens exception is rebuilt from its
``args``)::

    try:
        data = mint_token.delay(user_id).get(timeout=10)
    except gemini_tokens.RateLimitError as exc:
        ...  # answer 429 with Retry-After: exc.retry_after, or retry the task later
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any

from celery import Celery

import gemini_tokens

_DIR = pathlib.Path(os.environ.get("TOKEN_QUEUE_DIR", tempfile.gettempdir())) / "token-queue"
for _sub in ("queue", "processed", "results", "control"):
    (_DIR / _sub).mkdir(parents=True, exist_ok=True)

app = Celery(
    "tokens",
    broker=os.environ.get("CELERY_BROKER_URL", "filesystem://"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", f"file://{_DIR / 'results'}"),
)
app.conf.broker_transport_options = {
    "data_folder_in": str(_DIR / "queue"),
    "data_folder_out": str(_DIR / "queue"),
    "processed_folder": str(_DIR / "processed"),
    "control_folder": str(_DIR / "control"),
}
app.conf.broker_connection_retry_on_startup = True

# One client per process; safe across the prefork pool's fork().
tokens = gemini_tokens.Client()


# A rate limit is an answer for the caller, not a worker failure: Celery logs it briefly, no
# traceback. Other errors (ServerError ...) are logged in full, and reach the caller typed too.
@app.task(throws=(gemini_tokens.RateLimitError,))
def mint_token(user_id: str, uses: int = 1) -> dict[str, Any]:
    """Mint a token for ``user_id`` and return its JSON form (never the API key).

    The caller (your web tier) must already have authenticated ``user_id``: a task queue is
    not a trust boundary.
    """
    token = tokens.create(
        uses=uses,
        live_connect_constraints={
            "model": "gemini-2.5-flash-native-audio-preview-12-2025",
            "config": {"response_modalities": ["AUDIO"]},
        },
    )
    return {"user": user_id, "pid": os.getpid(), **token.to_dict()}
