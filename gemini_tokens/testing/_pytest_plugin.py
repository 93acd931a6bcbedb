"""The pytest plugin (entry point ``pytest11``): the ``gemini_emulator`` fixture.

Cheap to import and inert unless a test asks for a fixture: the emulator is imported inside
the fixture. The emulator serves from an event loop of its own, in a thread of its own, never
from the test's loop. So one fixture serves every kind of test alike: sync tests, async tests
in any loop scope pytest-asyncio offers (function, class, module, package, session), and sync
code called inside an async test (``gemini_tokens.create()``), which blocks the test's loop but
not the emulator. The fixture itself needs no pytest-asyncio.

Inside the fixture, ``GEMINI_BASE_URL`` and ``GEMINI_API_KEY`` point at the emulator, so code
that reads the environment (including ``gemini_tokens.create()`` and ``acreate()``) talks to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from gemini_tokens.testing import Emulator


def _close_default_client() -> None:
    import gemini_tokens

    # The one-shot create() caches a client configured from the environment: start afresh.
    gemini_tokens.close_default_client()


@pytest.fixture
def gemini_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A running `Emulator` on a thread of its own; the environment points at it.

    Works in sync and async tests alike, whatever the test's event loop and its scope.
    """
    from gemini_tokens.testing import Emulator

    with Emulator.running() as emu:
        monkeypatch.setenv("GEMINI_BASE_URL", emu.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", emu.api_key)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        _close_default_client()
        try:
            yield emu
        finally:
            _close_default_client()


@pytest.fixture
def gemini_emulator_sync(gemini_emulator: Emulator) -> Emulator:
    """The same as ``gemini_emulator`` (kept for suites written before the two were one)."""
    return gemini_emulator
