"""The broker's plain data: what a request is, who the caller is, what the answer is.

Adapters build a `BrokerRequest` from their framework's request and write a `BrokerResponse`
back; nothing here knows a web framework.
"""

from __future__ import annotations

import http.cookies
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar, overload

import attrs

__all__ = ["MAX_BODY_BYTES", "BrokerRequest", "BrokerResponse", "Caller", "Denied", "Headers"]

_T = TypeVar("_T")

#: The largest request body the broker reads (16 KiB); a larger one is answered 413.
MAX_BODY_BYTES = 16 * 1024


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive HTTP headers (``headers.get("authorization")`` works).

    A repeated header's values are joined with ``", "``, as RFC 9110 allows.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        merged: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            key = name.lower()
            if key in merged:
                merged[key] = (merged[key][0], f"{merged[key][1]}, {value}")
            else:
                merged[key] = (name, value)
        self._items = merged

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: _T) -> str | _T: ...

    def get(self, name: str, default: object = None) -> object:
        """The header's value, or ``default`` (quicker than `Mapping`'s own)."""
        item = self._items.get(name.lower())
        return default if item is None else item[1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        # Header values may be credentials (Authorization, Cookie): show names only.
        return f"Headers({sorted(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return {k: v for k, (_, v) in self._items.items()} == {
            k: v for k, (_, v) in other._items.items()
        }

    __hash__ = None  # type: ignore[assignment]


def _upper(value: str) -> str:
    return str(value).upper()


def _to_headers(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> Headers:
    return value if isinstance(value, Headers) else Headers(value)


@attrs.frozen(kw_only=True)
class BrokerRequest:
    """One HTTP request to the broker, as an adapter saw it.

    Attributes:
        method: The HTTP method, upper case (``"POST"``).
        path: The request's whole path, e.g. ``/api/token``.
        headers: Case-insensitive `Headers`.
        client_address: The peer's address as the server saw it (a proxy's, behind one).
        body: The body, at most ``MAX_BODY_BYTES + 1`` bytes of it.
        body_too_large: The body was over ``MAX_BODY_BYTES`` and was not read whole.
        body_incomplete: The client went away (or broke the framing) before the whole body
            it announced arrived: the request is refused, never decided on what came.
        subpath: The part of ``path`` below the broker's own route: ``""`` for the token
            endpoint itself, e.g. ``"/client.js"`` for a file served next to it.
        scheme: ``"http"`` or ``"https"`` as the server saw it.
        native: The framework's own request object (an ``aiohttp.web.Request``, a
            Starlette ``Request``, an ASGI scope or a WSGI environ), for ``authorize``
            hooks that need the framework's session. Not compared, not shown.
    """

    method: str = attrs.field(converter=_upper)
    path: str = "/"
    headers: Headers = attrs.field(factory=Headers, converter=_to_headers)
    client_address: str | None = None
    body: bytes = attrs.field(default=b"", repr=False)  # it may hold a session value
    body_too_large: bool = False
    body_incomplete: bool = False
    subpath: str = ""
    scheme: str = "http"
    native: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def origin(self) -> str | None:
        """The ``Origin`` header, if the client sent one (browsers do on a POST)."""
        return self.headers.get("origin")

    @property
    def cookies(self) -> dict[str, str]:
        """The ``Cookie`` header's cookies by name (a session cookie is typical)."""
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("cookie", ""))
        except http.cookies.CookieError:
            return {}
        return {name: morsel.value for name, morsel in jar.items()}


def _body_repr(body: bytes) -> str:
    return f"<{len(body)} bytes>"


@attrs.frozen(kw_only=True)
class BrokerResponse:
    """The broker's answer, for an adapter to write out as it is.

    Attributes:
        status: The HTTP status code.
        headers: ``(name, value)`` pairs, in order.
        body: The body bytes (JSON for every answer of the token endpoint). Its repr shows
            only its length: a minted answer holds the token name and the session.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = attrs.field(default=b"", repr=_body_repr)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def _check_caller_id(instance: Caller, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError("Caller.id must be a non-empty string")


@attrs.frozen(kw_only=True)
class Caller:
    """Who asks for a token, as your ``authorize`` hook decided.

    Attributes:
        id: A stable identifier of the caller (a user id): the key of its rate limits and
            the ``caller_id`` of its audit events. Not a secret, not a session cookie.
        attributes: Anything else a policy function wants to see (``{"plan": "pro"}``).
    """

    id: str = attrs.field(validator=_check_caller_id)
    attributes: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)


class Denied(Exception):
    """Raise it in ``authorize`` to refuse a caller: ``Denied(401, "sign in first")``.

    Args:
        status: 401 (who are you?) or 403 (you may not).
        message: Shown to the caller in the error body; say what to do.

    Attributes:
        status: 401 or 403.
        message: The message.
    """

    def __init__(self, status: int = 403, message: str = "") -> None:
        if status not in (401, 403):
            raise ValueError(f"Denied status must be 401 or 403, not {status!r}")
        self.status = status
        self.message = message or ("sign in first" if status == 401 else "not allowed")
        super().__init__(status, self.message)

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"
