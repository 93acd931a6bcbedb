"""``<token path>/client.js``: the browser helper, served next to the token endpoint.

The file is ``gemini_tokens/broker/static/gemini-tokens.js`` (shipped in the wheel), a
dependency-free ES module: the single-file build of the npm package ``gemini-tokens``'s main
entry (``js/`` in the repository), copied by ``tools/build_js.py`` and held to that build by
``tests/test_js_package.py``. It is answered with a JavaScript content type, an ``ETag`` (a
``304`` for a matching ``If-None-Match``) and ``Cache-Control: public, max-age=3600``, and
with the CORS headers of the broker's allowed origins, since a module script from another
origin is fetched in CORS mode.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Awaitable, Callable

from gemini_tokens.broker._cors import Origins
from gemini_tokens.broker._http import error_body
from gemini_tokens.broker._types import BrokerRequest, BrokerResponse

__all__ = ["CLIENT_JS_PATH", "CLIENT_JS_TYPE", "client_js", "client_js_route"]

#: The sub-path of the token endpoint the helper is served at.
CLIENT_JS_PATH = "/client.js"
#: The content type it is served with (RFC 9239).
CLIENT_JS_TYPE = "text/javascript; charset=utf-8"
_MAX_AGE = 3600


def client_js() -> bytes:
    """The helper's source, as shipped in the package."""
    return (
        importlib.resources.files("gemini_tokens.broker")
        .joinpath("static/gemini-tokens.js")
        .read_bytes()
    )


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    tags = (tag.strip().removeprefix("W/") for tag in header.split(","))
    return etag in tags


def client_js_route(origins: Origins) -> Callable[[BrokerRequest], Awaitable[BrokerResponse]]:
    """A broker route answering ``GET``/``HEAD`` with the helper."""
    body = client_js()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    async def route(request: BrokerRequest) -> BrokerResponse:
        cors = tuple(origins.response_headers(request))
        if request.method not in ("GET", "HEAD"):
            return BrokerResponse(
                status=405,
                headers=(
                    ("Content-Type", "application/json"),
                    ("Allow", "GET, HEAD"),
                    *cors,
                ),
                body=error_body(405, f"method {request.method} is not allowed; use GET"),
            )
        headers = (
            ("Content-Type", CLIENT_JS_TYPE),
            ("Cache-Control", f"public, max-age={_MAX_AGE}"),
            ("ETag", etag),
            ("X-Content-Type-Options", "nosniff"),
            *cors,
        )
        if _etag_matches(request.headers.get("if-none-match", ""), etag):
            return BrokerResponse(status=304, headers=headers)
        return BrokerResponse(
            status=200, headers=headers, body=b"" if request.method == "HEAD" else body
        )

    return route
