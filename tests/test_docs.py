"""Every code block in the docs is executed here or included from a file that a test runs."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gemini_tokens.testing import Emulator

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$', re.M)

# Files that other tests execute: the examples (tests/test_examples.py, tests/test_browser.py).
TESTED_ELSEWHERE = {
    "examples/aiohttp_app.py",
    "examples/fastapi_app.py",
    "examples/flask_app.py",
    "examples/celery_app.py",
    "examples/plain_script.py",
    "examples/errors_handler.py",
    "examples/browser/app.js",
    "examples/browser/index.html",
    "examples/testing_offline.py",
    "CHANGELOG.md",
}


def _blocks() -> Iterator[tuple[str, str, str]]:
    for page in sorted(DOCS.glob("*.md")):
        for match in FENCE.finditer(page.read_text()):
            yield page.name, match.group(1), match.group(2)


def _snippet_files() -> list[pathlib.Path]:
    return sorted(p for p in SNIPPETS.iterdir() if p.suffix in (".py", ".sh"))


@pytest.fixture(scope="module")
def emulator_env() -> Iterator[dict[str, str]]:
    with Emulator.running() as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
        env.update(
            GEMINI_API_KEY=emu.api_key,
            GEMINI_BASE_URL=emu.base_url,
            COLUMNS="100",
            PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        yield env


def test_every_block_is_tested() -> None:
    executed = {str(p.relative_to(ROOT)) for p in _snippet_files()}  # readme_commands: CI
    compared = {str(p.relative_to(ROOT)) for p in SNIPPETS.glob("*.out")}
    for page, lang, body in _blocks():
        includes = INCLUDE.findall(body)
        assert includes, f"{page}: a ```{lang} block is not included from a tested file"
        for path in includes:
            assert (ROOT / path).exists(), f"{page}: {path} does not exist"
            assert path in executed | compared | TESTED_ELSEWHERE, f"{page}: {path} is not tested"
        leftover = INCLUDE.sub("", body).strip()
        # Only a shown prompt line may sit beside an include (its output is compared below).
        assert leftover in ("", "$ gemini-tokens create --help"), f"{page}: {leftover!r}"


# The README's two commands build a virtualenv: CI runs them (.ci/run); below they are
# checked to be the README's.
RUNNABLE = [p for p in _snippet_files() if p.name != "readme_commands.sh"]


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_snippet_runs(path: pathlib.Path, emulator_env: dict[str, str]) -> None:
    command = [sys.executable, str(path)] if path.suffix == ".py" else ["bash", str(path)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=emulator_env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    expected = path.with_suffix(".out")
    if expected.exists():
        assert result.stdout == expected.read_text()


def test_cli_help_page_is_current(emulator_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gemini_tokens", "create", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=emulator_env,
    )
    assert result.stdout == (SNIPPETS / "cli_create_help.out").read_text()


def test_quickstart_shows_the_readme_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first = FENCE.search(readme)
    assert first is not None
    assert first.group(1) == "bash"
    assert first.group(2) == (SNIPPETS / "readme_commands.sh").read_text()
    assert len(first.group(2).strip().splitlines()) == 2


def test_readme_blocks_are_tested(emulator_env: dict[str, str]) -> None:
    """The README's Python block is a snippet run above; its console lines run here."""
    readme = (ROOT / "README.md").read_text()
    blocks = FENCE.findall(readme)
    assert [lang for lang, _ in blocks] == ["bash", "python", "console"]
    assert blocks[1][1] == (SNIPPETS / "readme_usage.py").read_text()
    for line in blocks[2][1].splitlines():
        assert line.startswith("$ gemini-tokens ")
        result = subprocess.run(
            line[2:], shell=True, capture_output=True, text=True, timeout=60, env=emulator_env
        )
        assert result.returncode == 0, result.stderr
        assert '"name": "auth_tokens/' in result.stdout
