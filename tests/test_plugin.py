"""The pytest plugin, run as a user's project runs it: a pytest process of its own, no config.

Each run has a timeout, so that a fixture that hangs (an emulator serving from a loop that is
blocked or not running) fails here within seconds instead of hanging the suite.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 120  # seconds for one whole pytest run; a hang used to take 93 s per test

#: Every loop scope pytest-asyncio supports, each with two tests sharing the loop, and in
#: each test async calls, a sync call on the blocked loop, and an AsyncClient of its own.
SCOPED_TESTS = """
import pytest

import gemini_tokens


async def _mint_every_way(emu):
    token = await gemini_tokens.acreate(uses=1)
    assert emu.token(token.name) is not None
    token = gemini_tokens.create(uses=1)  # sync code inside the async test
    assert emu.token(token.name) is not None
    async with gemini_tokens.AsyncClient() as client:
        token = await client.create(uses=1)
    assert emu.token(token.name) is not None
    assert len(emu.tokens) == 3  # a fresh emulator for each test


{body}
"""

MODULE_BODY = """
@pytest.mark.asyncio(loop_scope="{scope}")
async def test_first(gemini_emulator):
    await _mint_every_way(gemini_emulator)


@pytest.mark.asyncio(loop_scope="{scope}")
async def test_second(gemini_emulator):
    await _mint_every_way(gemini_emulator)
"""

CLASS_BODY = """
@pytest.mark.asyncio(loop_scope="class")
class TestInOneLoop:
    async def test_first(self, gemini_emulator):
        await _mint_every_way(gemini_emulator)

    async def test_second(self, gemini_emulator):
        await _mint_every_way(gemini_emulator)
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=TIMEOUT)


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_every_loop_scope(pytester: pytest.Pytester, mode: str) -> None:
    """function, class, module, package and session loops; strict (the default) and auto."""
    pkg = pytester.mkpydir("pkg")
    for scope in ("function", "module", "package", "session"):
        body = MODULE_BODY.replace("{scope}", scope)
        (pkg / f"test_{scope}_loop.py").write_text(SCOPED_TESTS.replace("{body}", body))
    (pkg / "test_class_loop.py").write_text(SCOPED_TESTS.replace("{body}", CLASS_BODY))
    result = _run(pytester, "-o", f"asyncio_mode={mode}")
    result.assert_outcomes(passed=10)


def test_the_testing_module_passes_when_copied(pytester: pytest.Pytester) -> None:
    """examples/testing_offline.py in a project with no config: pytest-asyncio's strict mode."""
    example = (ROOT / "examples" / "testing_offline.py").read_text()
    pytester.makepyfile(test_offline=example)
    result = _run(pytester, "-rs")
    if importlib.util.find_spec("google.genai") is None:  # pragma: no cover - in the test extra
        result.assert_outcomes(passed=6, skipped=1)
    else:
        result.assert_outcomes(passed=7)


def test_sync_tests_need_no_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sync="""
        import gemini_tokens

        def test_create(gemini_emulator):
            assert gemini_emulator.token(gemini_tokens.create().name) is not None

        def test_the_old_name(gemini_emulator_sync):
            assert gemini_emulator_sync.token(gemini_tokens.create().name) is not None
        """
    )
    result = _run(pytester, "-p", "no:asyncio")
    result.assert_outcomes(passed=2)


def test_the_environment_is_restored(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_env="""
        import os

        def test_inside(gemini_emulator):
            assert os.environ["GEMINI_BASE_URL"] == gemini_emulator.base_url
            assert os.environ["GEMINI_API_KEY"] == gemini_emulator.api_key
            assert "GOOGLE_API_KEY" not in os.environ

        def test_after():
            assert os.environ["GEMINI_API_KEY"] == "mine"
            assert os.environ["GOOGLE_API_KEY"] == "also-mine"
            assert "GEMINI_BASE_URL" not in os.environ
        """
    )
    monkeypatch.setenv("GEMINI_API_KEY", "mine")
    monkeypatch.setenv("GOOGLE_API_KEY", "also-mine")
    monkeypatch.delenv("GEMINI_BASE_URL", raising=False)
    result = _run(pytester)
    result.assert_outcomes(passed=2)
