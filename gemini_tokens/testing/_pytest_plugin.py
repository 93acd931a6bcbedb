"""The pytest plugin (entry point ``pytest11``): ``gemini_emulator`` and ``gemini_emulator_sync``.

Cheap to import and inert unless a test asks for a fixture: the emulator, aiohttp and the
client are imported inside the fixtures. Inside a fixture, ``GEMINI_BASE_URL`` and
``GEMINI_API_KEY`` point at the emulator, so code that reads the environment (including
``gemini_tokens.create()``) talks to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from gemini_tokens.testing import Emulator


def _point_env_at(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    import gemini_tokens

    monkeypatch.setenv("GEMINI_BASE_URL", emu.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", emu.api_key)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    # The one-shot create() caches a client configured from the environment: start afresh.
    gemini_tokens.close_default_client()


def _reset_default_client() -> None:
    import gemini_tokens

    gemini_tokens.close_default_client()


@pytest.fixture
def gemini_emulator_sync(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A running `Emulator` on its own thread, for sync tests; the environment points at it."""
    from gemini_tokens.testing import Emulator

    with Emulator.running() as emu:
        _point_env_at(emu, monkeypatch)
        try:
            yield emu
        finally:
            _reset_default_client()


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - depends on the user's environment
    _HAVE_PYTEST_ASYNCIO = False
else:
    _HAVE_PYTEST_ASYNCIO = True

if _HAVE_PYTEST_ASYNCIO:

    @pytest_asyncio.fixture(name="gemini_emulator")
    async def _gemini_emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Emulator]:
        """A running `Emulator` on the test's event loop; the environment points at it."""
        from gemini_tokens.testing import Emulator

        async with Emulator() as emu:
            _point_env_at(emu, monkeypatch)
            try:
                yield emu
            finally:
                _reset_default_client()

else:  # pragma: no cover

    @pytest.fixture(name="gemini_emulator")
    def _gemini_emulator_unavailable() -> Any:
        """Needs pytest-asyncio."""
        pytest.fail("the gemini_emulator fixture needs pytest-asyncio (pip install pytest-asyncio)")
