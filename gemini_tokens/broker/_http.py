"""Answers in the service's own error shape (``google.rpc.Status``), and the refusal that
carries one through the broker's steps."""

from __future__ import annotations

import json
from typing import Any

from gemini_tokens import status_name

__all__ = ["UNAVAILABLE_RETRY_AFTER", "Refusal", "error_body", "json_body"]

#: Seconds in ``Retry-After`` when the token service or the limiter's storage is down.
UNAVAILABLE_RETRY_AFTER = 5


def json_body(value: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(status: int, message: str) -> bytes:
    """The JSON error body the broker answers, in google.rpc's shape.

    ``{"error": {"code": status, "status": "<google.rpc name>", "message": message}}``, as
    the token service itself answers, so a client treats the broker and the service alike.

    Args:
        status: The HTTP status.
        message: A message safe to show to the caller (never a secret).
    """
    return json_body(
        {
            "error": {
                "code": status,
                "status": status_name(status),
                "message": message,
            }
        }
    )


class Refusal(Exception):
    """A step of the decision refuses the request (internal; becomes an error answer).

    Attributes:
        status: The HTTP status.
        outcome: The audit outcome.
        reason: The audit reason code.
        message: Shown to the caller.
        retry_after: Seconds for ``Retry-After`` (429 and 503).
        headers: Extra headers (``Allow`` on a 405).
    """

    def __init__(
        self,
        status: int,
        outcome: str,
        reason: str,
        message: str,
        *,
        retry_after: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status = status
        self.outcome = outcome
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.headers = headers
        super().__init__(status, reason)
