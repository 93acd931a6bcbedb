"""aioresponses 0.7.9 predates aiohttp 3.14, whose ClientResponse needs ``stream_writer``.

Upstream: https://github.com/pnuckowski/aioresponses/issues/289 (open). Until a release fixes
it, `mocked_responses` patches the response class aioresponses builds, instead of pinning
aiohttp below the 3.14 security release.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aioresponses.core
from aiohttp import ClientResponse
from aioresponses import aioresponses as _aioresponses

_NEEDS_WRITER = "stream_writer" in inspect.signature(ClientResponse.__init__).parameters


class _NullStreamWriter:
    output_size = 0


class _CompatResponse(ClientResponse):
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NullStreamWriter())
        super().__init__(method, url, **kwargs)


@contextmanager
def mocked_responses() -> Iterator[_aioresponses]:
    """`aioresponses()`, working on aiohttp before and after 3.14."""
    original = aioresponses.core.ClientResponse
    if _NEEDS_WRITER:
        aioresponses.core.ClientResponse = _CompatResponse  # type: ignore[misc]
    try:
        with _aioresponses() as mocked:
            yield mocked
    finally:
        aioresponses.core.ClientResponse = original  # type: ignore[misc]
