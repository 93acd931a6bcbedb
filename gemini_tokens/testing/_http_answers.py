"""The token service's HTTP answers, as the emulator gives them.

JSON answers, ``google.rpc.Status`` error bodies (their ``status`` names are the core's, so
the emulator, the client and the broker name a status alike) and injected faults. The Live
API's WebSocket messages are `_client_messages` (read) and `_model_replies` (sent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from gemini_tokens.testing._core import status_name
from gemini_tokens.testing._proto_json import WireError

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["DROP", "TYPE", "Fail", "bad_request", "json_response", "status_body"]

#: The ``@type`` prefix of google.rpc error details.
TYPE = "type.googleapis.com/google.rpc."

_FAULT_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The service is currently unavailable.",
    504: "The request timed out. Please try again.",
}


def status_body(
    code: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A ``google.rpc.Status`` error body."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status_name(code),
    }
    if details:
        error["details"] = details
    return {"error": error}


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer."""
    from aiohttp import web

    return web.Response(
        body=json.dumps(body, indent=2).encode(),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def bad_request(exc: WireError) -> web.Response:
    """400 INVALID_ARGUMENT with a ``BadRequest`` detail naming the field."""
    violation = (
        {"field": exc.field, "description": exc.message}
        if exc.field
        else {"description": exc.message}
    )
    detail = {"@type": TYPE + "BadRequest", "fieldViolations": [violation]}
    return json_response(status_body(400, exc.message, [detail]), 400)


@attrs.frozen
class Fail:
    """An injected failure: the answer given instead of serving a request."""

    status: int
    retry_after: float | None
    body: Any

    def response(self) -> web.Response:
        """The HTTP answer."""
        from aiohttp import web

        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = format(self.retry_after, "g")
        if self.body is None:
            message = _FAULT_MESSAGES.get(self.status, f"Injected failure ({self.status}).")
            details: list[dict[str, Any]] = []
            if self.retry_after is not None:
                details.append(
                    {"@type": TYPE + "RetryInfo", "retryDelay": f"{self.retry_after:g}s"}
                )
            return json_response(status_body(self.status, message, details), self.status, headers)
        if isinstance(self.body, Mapping):
            return json_response(self.body, self.status, headers)
        data = self.body.encode() if isinstance(self.body, str) else bytes(self.body)
        stripped = data.lstrip()
        content_type = (
            "text/html"
            if stripped.startswith(b"<")
            else "application/json"
            if stripped.startswith((b"{", b"["))
            else "text/plain"
        )
        return web.Response(
            body=data, status=self.status, content_type=content_type, headers=headers
        )


#: The fault that closes the connection without an answer.
DROP = "drop"
