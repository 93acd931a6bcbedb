"""The exception tree.

Every exception this library raises on purpose derives from `GeminiTokensError`::

    GeminiTokensError
    ├── ValidationError (also a ValueError)      bad options, raised before anything is sent
    ├── ConfigurationError                       no API key, bad base URL, misuse of a client
    └── APIError                                 anything that went wrong talking to the service
        ├── APIStatusError                       the service answered with a non-2xx status
        │   ├── BadRequestError                  400
        │   ├── AuthenticationError              401, or 400 with reason API_KEY_INVALID
        │   ├── PermissionDeniedError            403
        │   ├── NotFoundError                    404
        │   ├── RateLimitError                   429
        │   └── ServerError                      5xx
        ├── APIConnectionError                   no usable answer: refused, reset, DNS, TLS ...
        │   ├── APITimeoutError                  a connect or total timeout expired
        │   ├── CertificateVerificationError     the TLS certificate could not be verified
        │   └── ProxyAuthenticationError         the proxy refused its credentials (407)
        └── InvalidResponseError                 a 2xx answer that is not a token

Messages never contain the API key or a token's name.

Every exception keeps the arguments it was made with, in order, in ``args``, so that
``type(exc)(*exc.args)`` rebuilds it: it survives ``pickle`` (a ``ProcessPoolExecutor``),
``copy`` and a task queue's JSON result backend (Celery) with its type and every field.
"""

from __future__ import annotations

import functools
import json
import math
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "STATUS_NAMES",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CertificateVerificationError",
    "ConfigurationError",
    "GeminiTokensError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProxyAuthenticationError",
    "RateLimitError",
    "ServerError",
    "ValidationError",
    "error_from_response",
    "redact_secrets",
    "status_name",
]

_TYPE_PREFIX = "type.googleapis.com/google.rpc."
#: The ``google.rpc.Code`` name of an HTTP status (code.proto's HTTP mapping, read
#: backwards), for the error answers made on this side: the broker's and the emulator's.
#: The npm package (``js/src/errors.ts``, built into ``broker/static/gemini-tokens.js``) has
#: the one copy a browser can read; tests/test_one_copy.py holds both equal to this one.
STATUS_NAMES: Mapping[int, str] = types.MappingProxyType(
    {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        # google.rpc has no "method not allowed": a method the resource does not implement
        # is UNIMPLEMENTED (as grpc-gateway maps a 405; Google's front end itself answers a
        # wrong method with an HTML page that names no status).
        405: "UNIMPLEMENTED",
        408: "DEADLINE_EXCEEDED",
        409: "ABORTED",
        # google.rpc has no code for a body too large or of the wrong type: a bad argument.
        413: "INVALID_ARGUMENT",
        415: "INVALID_ARGUMENT",
        429: "RESOURCE_EXHAUSTED",
        499: "CANCELLED",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
        502: "UNAVAILABLE",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }
)
_TOKEN_NAME = re.compile(r"auth_tokens/[^\s\"'<>,;:)\]}]+")
#: The service's messages are a sentence or two; a proxy's may be a whole page.
_MAX_MESSAGE = 500
#: A run of this many characters of a secret is blanked out even where the rest of it is cut
#: off (aiohttp quotes 100 bytes of an overlong header line a proxy reflected, ending "...").
_MIN_FRAGMENT = 8


class GeminiTokensError(Exception):
    """Base class of every exception raised by gemini-tokens.

    ``args`` holds the constructor's arguments, so ``type(exc)(*exc.args)`` is a copy.
    """


class ValidationError(GeminiTokensError, ValueError):
    """An option given to `create()` breaks a rule. Nothing was sent.

    Attributes:
        field: The dotted path of the offending option, e.g.
            ``live_connect_constraints.config.temperature``.
        rule: What the value must be, in words.
    """

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(field, rule)
        self.field = field
        self.rule = rule

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}" if self.field else self.rule

    def at(self, prefix: str) -> ValidationError:
        """Return the same error with ``prefix`` put in front of its field path."""
        if not prefix:
            return self
        field = f"{prefix}.{self.field}" if self.field else prefix
        if self.field.startswith("["):
            field = f"{prefix}{self.field}"
        return ValidationError(field, self.rule)


class ConfigurationError(GeminiTokensError):
    """The client cannot be set up: no API key, an unsafe base URL, a closed client."""


class APIError(GeminiTokensError):
    """Something went wrong while talking to the token service.

    Args:
        message: What went wrong, in words (never a secret).
        attempts: How many HTTP attempts were made.

    Attributes:
        attempts: How many HTTP attempts were made before this error was raised (also
            shown in the message when more than one). It is the last of ``args``.
    """

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message, attempts)

    @property
    def attempts(self) -> int:
        """How many HTTP attempts were made (the last of ``args``)."""
        attempts: int = self.args[-1]
        return attempts

    @attempts.setter
    def attempts(self, value: int) -> None:  # the retry loop counts on the last error
        self.args = (*self.args[:-1], value)

    def __str__(self) -> str:
        text = str(self.args[0])
        if self.attempts > 1:
            text += f" (after {self.attempts} attempts)"
        return text


class APIStatusError(APIError):
    """The service answered with a non-2xx status.

    Attributes:
        status_code: The HTTP status code, e.g. 429.
        status: The ``google.rpc.Code`` name from the body, e.g. ``"RESOURCE_EXHAUSTED"``,
            or None when the body was not a ``google.rpc.Status``.
        message: The service's message, or a summary of a non-JSON body.
        details: The ``details`` list of the ``google.rpc.Status`` body, as given.
        reason: The ``ErrorInfo.reason`` from the details (e.g. ``"API_KEY_INVALID"``), if any.
        retry_after: Seconds the service asked us to wait (``Retry-After`` header or
            ``RetryInfo.retryDelay``), if it said so. A web handler can pass it on to its
            own client as a ``Retry-After`` header.
        attempts: How many HTTP attempts were made.
    """

    def __init__(
        self,
        message: str,
        status_code: int,
        status: str | None = None,
        details: Sequence[Mapping[str, Any]] = (),
        reason: str | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        self.status_code = status_code
        self.status = status
        self.message = message
        self.details = list(details)
        self.reason = reason
        self.retry_after = retry_after
        GeminiTokensError.__init__(
            self, message, status_code, status, self.details, reason, retry_after, attempts
        )

    def __str__(self) -> str:
        head = f"{self.status_code} {self.status}" if self.status else str(self.status_code)
        text = f"{head}: {self.message}"
        if self.reason:
            text += f" (reason: {self.reason})"
        if self.retry_after is not None:
            text += f" (retry after {self.retry_after:g}s)"
        if self.attempts > 1:
            text += f" (after {self.attempts} attempts)"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, status={self.status!r}, "
            f"message={self.message!r}, reason={self.reason!r}, "
            f"retry_after={self.retry_after!r}, attempts={self.attempts!r})"
        )

    @property
    def field_violations(self) -> list[tuple[str, str]]:
        """``(field, description)`` pairs from any ``google.rpc.BadRequest`` detail."""
        out: list[tuple[str, str]] = []
        for item in self.details:
            if str(item.get("@type", "")).endswith("google.rpc.BadRequest"):
                for violation in item.get("fieldViolations") or ():
                    if isinstance(violation, Mapping):
                        out.append(
                            (str(violation.get("field", "")), str(violation.get("description", "")))
                        )
        return out


class BadRequestError(APIStatusError):
    """400: the service refused the request (a bad field, a time too far ahead ...)."""


class AuthenticationError(APIStatusError):
    """401, or 400 with reason ``API_KEY_INVALID``: the API key was not accepted."""


class PermissionDeniedError(APIStatusError):
    """403: the key is valid but may not mint tokens (API not enabled, region ...)."""


class NotFoundError(APIStatusError):
    """404: wrong base URL or API version (tokens exist only in ``v1alpha``)."""


class RateLimitError(APIStatusError):
    """429: quota exhausted. See ``retry_after``."""


class ServerError(APIStatusError):
    """5xx: the service (or a proxy in front of it) failed."""


class APIConnectionError(APIError):
    """No usable answer arrived: connection refused or reset, DNS or TLS failure."""


class APITimeoutError(APIConnectionError):
    """The connect timeout, the total timeout or the call's deadline expired."""


class CertificateVerificationError(APIConnectionError):
    """The service's (or the proxy's) TLS certificate could not be verified. Not retried.

    Usually a TLS-inspecting proxy or a private CA: pass its CA to the client
    (``verify="/path/to/ca.pem"``) or set ``SSL_CERT_FILE``.
    """


class ProxyAuthenticationError(APIConnectionError):
    """The HTTP proxy refused its credentials (407 Proxy Authentication Required).

    Nothing reached the token service. Not retried: wrong or missing credentials stay so,
    and every retry would send them again. Give the proxy its user and password in its
    URL: ``proxy="http://user:password@host:port"``, or the same URL in ``HTTPS_PROXY``
    (``HTTP_PROXY`` for an ``http://`` base URL). The message names the proxy without them.
    """


class InvalidResponseError(APIError):
    """The service answered 2xx, but not with a usable token (not JSON, no ``name`` ...).

    Not retried: the service may have minted a token that we could not read.
    """

    def __init__(self, message: str, status_code: int = 200, attempts: int = 1) -> None:
        self.status_code = status_code
        GeminiTokensError.__init__(self, message, status_code, attempts)


def status_name(status_code: int) -> str:
    """The ``google.rpc.Code`` name for an HTTP status, e.g. 429 -> ``"RESOURCE_EXHAUSTED"``.

    What an error body in the service's shape (``{"error": {"code", "status", "message"}}``)
    carries as its ``status``: for a server that answers its own clients as the service
    does (the broker's error answers use it). A status google.rpc has no name for is
    ``"UNKNOWN"``.

    Args:
        status_code: The HTTP status.
    """
    return STATUS_NAMES.get(status_code, "UNKNOWN")


def _parse_duration(value: object) -> float | None:
    """Parse a protobuf Duration in JSON form (``"1.5s"``) into seconds."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        seconds = float(value[:-1])
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def redact_secrets(text: str, secrets: Sequence[str] = ()) -> str:
    """Blank out ``secrets`` (the API key), whole or cut short, and token names.

    The service has no reason to echo either, but a proxy or a future message might; a
    message that reaches a log must not carry them. A secret cut short at either end (or
    both) still counts: any run of at least `_MIN_FRAGMENT` of its characters, in order,
    becomes ``***``. Anything shaped like a token's name (``auth_tokens/...``) goes too.
    """
    for secret in secrets:
        if secret:
            text = _blank_out(text, secret)
    return _TOKEN_NAME.sub("auth_tokens/***", text)


def _blank_out(text: str, secret: str) -> str:
    """``text`` with every run of ``secret``'s characters of a telling length as ``***``."""
    return _runs_of(secret).sub("***", text)


@functools.lru_cache(maxsize=8)  # a process has a key or two
def _runs_of(secret: str) -> re.Pattern[str]:
    """A pattern for any run of ``secret`` at least `_MIN_FRAGMENT` long (or all of it).

    One branch per place a run can start: its first characters, then as many of the
    following ones as the text has (``ab(?:c(?:d)?)?``).
    """
    size = min(len(secret), _MIN_FRAGMENT)
    branches = []
    for start in range(len(secret) - size + 1):
        rest = ""
        for char in reversed(secret[start + size :]):
            rest = f"(?:{re.escape(char)}{rest})?"
        branches.append(re.escape(secret[start : start + size]) + rest)
    return re.compile("|".join(branches))


def _redact_tree(value: Any, secrets: Sequence[str]) -> Any:
    """`redact_secrets` on every string (keys included) of a JSON value."""
    if isinstance(value, str):
        return redact_secrets(value, secrets)
    if isinstance(value, list):
        return [_redact_tree(item, secrets) for item in value]
    if isinstance(value, dict):
        return {
            _redact_tree(key, secrets): _redact_tree(item, secrets) for key, item in value.items()
        }
    return value


def _summarize_body(body: bytes, content_type: str, secrets: Sequence[str]) -> str:
    if not body.strip():
        return "empty response body"
    if "html" in content_type.lower() or body.lstrip()[:1] == b"<":
        return f"non-JSON ({content_type or 'unknown content type'}) response body"
    # Redact the whole text before cutting it, so no half secret survives the cut.
    text = redact_secrets(body.decode("utf-8", "replace"), secrets)[:200].strip()
    return f"unparseable response body: {text!r}"


def error_from_response(
    status_code: int,
    body: bytes,
    *,
    content_type: str = "",
    retry_after_header: float | None = None,
    redact: Sequence[str] = (),
    too_large: bool = False,
) -> APIStatusError:
    """Build the typed exception for a non-2xx response.

    Args:
        status_code: The HTTP status.
        body: The raw body (possibly empty, HTML, or a ``google.rpc.Status``).
        content_type: The response's Content-Type, used for a helpful message.
        retry_after_header: The parsed ``Retry-After`` header, if any.
        redact: Secrets to blank out of the message and details should the service echo
            them (anything shaped like a token's name is blanked out too).
        too_large: The body was over the size limit and was not read (``body`` is empty).
    """
    status: str | None = None
    message = ""
    details: list[Mapping[str, Any]] = []
    reason: str | None = None
    retry_after = retry_after_header
    try:
        payload = json.loads(body) if body.strip() else None
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        raw_status, raw_message = error.get("status"), error.get("message")
        status = raw_status if isinstance(raw_status, str) else None
        message = raw_message if isinstance(raw_message, str) else ""
        raw_details = error.get("details")
        if isinstance(raw_details, list):
            details = [_redact_tree(d, redact) for d in raw_details if isinstance(d, dict)]
        for item in details:
            kind = str(item.get("@type", "")).removeprefix(_TYPE_PREFIX)
            if kind == "ErrorInfo" and isinstance(item.get("reason"), str) and reason is None:
                reason = item["reason"]
            elif kind == "RetryInfo" and retry_after is None:
                retry_after = _parse_duration(item.get("retryDelay"))
    if too_large:
        message = "response body too large; not read"
    elif not message:
        message = (
            _summarize_body(body, content_type, redact)
            if error is None
            else f"HTTP {status_code} with no message"
        )
    message = redact_secrets(message, redact)
    if reason is not None:
        reason = redact_secrets(reason, redact)
    if status is not None:
        status = redact_secrets(status, redact)
    if len(message) > _MAX_MESSAGE:  # after redacting, so no half secret survives
        message = message[: _MAX_MESSAGE - 3] + "..."
    cls = _class_for(status_code, reason)
    return cls(
        message,
        status_code=status_code,
        status=status,
        details=details,
        reason=reason,
        retry_after=retry_after,
    )


def _class_for(status_code: int, reason: str | None) -> type[APIStatusError]:
    if status_code == 401 or reason == "API_KEY_INVALID":
        return AuthenticationError
    if status_code >= 500:
        return ServerError
    return {
        400: BadRequestError,
        403: PermissionDeniedError,
        404: NotFoundError,
        429: RateLimitError,
    }.get(status_code, APIStatusError)
