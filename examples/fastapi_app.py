"""A FastAPI app that hands out tokens with the broker: ``POST /token``.

The endpoint is documented in the app's OpenAPI (``/docs``), with its request body
(the voice and temperature the client may choose) and every error answer.

Try it offline against the bundled emulator, from any directory::

    gemini-tokens emulator              # in another terminal; prints the two exports
    export GEMINI_BASE_URL=http://127.0.0.1:PORT GEMINI_API_KEY=emulator-...
    python path/to/fastapi_app.py --port 8080
    curl -X POST http://127.0.0.1:8080/token \\
         -H 'Authorization: Bearer demo-user-token' \\
         -H 'Content-Type: application/json' \\
         -d '{"config": {"speech_config": "Puck"}}'

The answer is the token (``name``, ``expireTime``, ...) plus ``liveUrl``, the Live API
WebSocket the browser opens with it, and ``serverTime``. With a real key, only
``GEMINI_API_KEY`` is needed. Under uvicorn directly: ``uvicorn --app-dir examples
fastapi_app:app``.
"""

from __future__ import annotations

import argparse
import hmac

from fastapi import FastAPI

from gemini_tokens.broker import BrokerRequest, Caller, Denied, Policy, TokenBroker
from gemini_tokens.broker.fastapi import router

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"

# REPLACE THIS: a placeholder for your real authentication (a session, OAuth).
DEMO_BEARER_TOKENS = {"demo-user-token": "alice"}


async def authorize(request: BrokerRequest) -> Caller:
    """The caller behind the request, or `Denied`. Replace with your own check."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    for secret, user in DEMO_BEARER_TOKENS.items():
        same = hmac.compare_digest(credential.encode(), secret.encode())
        if scheme == "Bearer" and same:
            return Caller(id=user)
    raise Denied(401, "sign in first")


POLICY = Policy(
    model=MODEL,
    config={"response_modalities": ["AUDIO"]},
    lock_additional_fields=[],  # lock what is set, the client's choices included
    uses=2,  # one session and one resumption
    expire_minutes=15,
    new_session_expire_minutes=1,
    client_may_set={"speech_config": ["Kore", "Puck"], "temperature": (0.0, 1.0)},
)


def create_app() -> FastAPI:
    """The app; the broker's client reads GEMINI_API_KEY (and GEMINI_BASE_URL) now."""
    broker = TokenBroker(
        authorize=authorize,
        policy=POLICY,
        rate_limits=["10/minute", "200/day"],
        global_rate_limits=["600/minute"],
        # The origins of your front end, if it is not served from this host:
        allowed_origins=["http://localhost:5173"],
    )
    app = FastAPI(title="Token server")
    app.include_router(router(broker, path="/token"))  # its lifespan closes the client
    return app


app = create_app()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
