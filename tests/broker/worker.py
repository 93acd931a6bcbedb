"""One broker worker process: an aiohttp app with the broker, limits on a shared Redis.

``python -m tests.broker.worker PORT REDIS_URI`` (the key and base URL come from the
environment, pointed at an emulator by the test).
"""

from __future__ import annotations

import sys

from aiohttp import web

from gemini_tokens.broker import TokenBroker
from gemini_tokens.broker.aiohttp import add_routes
from tests.broker.helpers import authorize, policy


def main() -> None:
    port, storage_uri = int(sys.argv[1]), sys.argv[2]
    broker = TokenBroker(
        authorize=authorize,
        policy=policy(),
        rate_limits=["3/minute"],
        storage_uri=storage_uri,
        audit=lambda event: print(event.outcome, flush=True),
    )
    app = web.Application()
    add_routes(app, broker, path="/token")
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *_: print("ready", flush=True))


if __name__ == "__main__":
    main()
