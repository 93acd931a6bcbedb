"""A client's life outside a single event loop: construction, loop shutdown, exit.

- #11.11: the first ``create()`` must not import on the caller's event loop (importing
  aiohttp and building the converters took about 120 ms there): everything is imported
  when the client is made. Checked in a fresh interpreter, by module set and by import
  hook, not by timing.
- #11.12b: a module-level `AsyncClient` warmed up with ``asyncio.run()`` (whose loop is then
  closed), as in a gunicorn master, leaves no "Unclosed client session" / "Unclosed
  connector" at interpreter exit, and a later call on a new loop works.

Each runs in a subprocess with ``-W error`` against an emulator in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator

import pytest

from gemini_tokens import AsyncClient, ConfigurationError
from gemini_tokens.testing import Emulator

from .conftest import API_KEY
from .fault_server import FaultServer, faults_fixture  # noqa: F401  (fixtures)

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator.running() as emu:
        yield emu


def run_python(code: str, emu: Emulator) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEMINI_API_KEY": emu.api_key, "GEMINI_BASE_URL": emu.base_url}
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_first_create_imports_nothing(emulator: Emulator) -> None:
    result = run_python(
        f"""
        import asyncio, builtins, json, sys

        import gemini_tokens

        at_import = "aiohttp" in sys.modules
        client = gemini_tokens.AsyncClient()
        made = [m for m in ("aiohttp", "cattrs", "gemini_tokens._transport")
                if m in sys.modules]

        async def first_create():
            before = set(sys.modules)
            calls = []
            real = builtins.__import__

            def spy(name, globals=None, locals=None, fromlist=(), level=0):
                if level or name not in sys.modules:
                    calls.append(name)
                return real(name, globals, locals, fromlist, level)

            builtins.__import__ = spy
            try:
                token = await client.create(
                    live_connect_constraints={{
                        "model": {MODEL!r},
                        "config": {{"response_modalities": ["AUDIO"], "temperature": 0.5}},
                    }},
                    lock_additional_fields=[],
                )
            finally:
                builtins.__import__ = real
            await client.close()
            return token, sorted(set(sys.modules) - before), calls

        token, new, calls = asyncio.run(first_create())
        print(json.dumps({{"at_import": at_import, "made": made, "new": new,
                          "calls": calls, "name": token.name[:12]}}))
        """,
        emulator,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["name"] == "auth_tokens/"
    assert report["at_import"] is False  # a CLI --help still does not pay for aiohttp
    assert report["made"] == ["aiohttp", "cattrs", "gemini_tokens._transport"]
    assert report["new"] == []
    assert report["calls"] == []


WARM_UP = """
    import asyncio

    import gemini_tokens

    client = gemini_tokens.AsyncClient()  # module level, as in an app imported by gunicorn


    async def mint():
        return (await client.create()).name


    warm = asyncio.run(mint())  # the start-up check; asyncio.run then closes its loop
    later = asyncio.run(mint())  # a new loop: a new session
    assert warm != later
    print("minted twice")
"""


def test_a_client_warmed_up_with_asyncio_run_leaves_nothing_unclosed(
    emulator: Emulator,
) -> None:
    result = run_python(WARM_UP, emulator)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "minted twice"
    assert result.stderr == ""  # no "Unclosed client session", "Unclosed connector" ...
    assert len([t for t in emulator.tokens if t.name]) >= 2


def test_an_exit_without_any_close_leaves_nothing_unclosed(emulator: Emulator) -> None:
    """The same after one asyncio.run() only, and with a shared aiohttp session."""
    result = run_python(
        """
        import asyncio

        import aiohttp

        import gemini_tokens

        client = gemini_tokens.AsyncClient()
        asyncio.run(client.create())


        async def shared():
            async with aiohttp.ClientSession() as session:
                other = gemini_tokens.AsyncClient(session=session)
                await other.create()  # the app forgets to close `other`

        asyncio.run(shared())
        print("done")
        """,
        emulator,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert result.stderr == ""


async def test_a_second_live_loop_is_still_refused(faults: FaultServer) -> None:
    """Only a shut-down loop frees the client: while its first loop runs, another loop
    gets a clear ConfigurationError."""
    async with AsyncClient(API_KEY, base_url=faults.base_url) as client:
        await client.create()

        def other_loop() -> None:
            with pytest.raises(ConfigurationError, match="bound to the event loop"):
                asyncio.run(client.create())

        await asyncio.to_thread(other_loop)
        await client.create()  # still fine on its own loop


async def test_a_client_dropped_without_close_closes_its_pool(faults: FaultServer) -> None:
    client = AsyncClient(API_KEY, base_url=faults.base_url)
    await client.create()
    assert faults.connections_open == 1
    del client  # its loop finalizes the session (no "Unclosed client session" warning)
    assert await faults.until_idle()


def test_a_loop_closed_without_shutting_down_is_a_clear_error() -> None:
    """A loop closed by hand, skipping shutdown_asyncgens(), leaves the session open: the
    next call says so instead of failing obscurely."""
    with FaultServer() as server:
        client = AsyncClient(API_KEY, base_url=server.base_url)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(client.create())
        loop.close()
        with pytest.raises(ConfigurationError, match="closed without shutting down"):
            asyncio.run(client.create())
        assert server.attempts == 1
        with warnings.catch_warnings(), contextlib.suppress(Exception):
            warnings.simplefilter("ignore", ResourceWarning)  # the sockets left open above
            del client
            gc.collect()
