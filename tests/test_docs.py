"""The docs as a reader meets them: every code block in README.md and docs/*.md is checked.

Every ```python block is executed, in page order, with Sybil (a page's blocks share one
namespace; ``>>>`` blocks are doctests, their output compared). The environment points at a
running emulator (GEMINI_API_KEY, GEMINI_BASE_URL), so ``gemini_tokens.Client()`` works as
written. A block that cannot run offline (a framework server, a worker) is preceded by
``<!-- skip: next -->``. Pages added later are collected too: every docs/*.md is.
"""

from __future__ import annotations

import html
import os
import pathlib
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

import gemini_tokens
from gemini_tokens.testing import Emulator

from .chromium import CHROMIUM, NO_CHROMIUM

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```$", re.S | re.M
)
MAX_LINE = 88  # what fits a 1280 px page without sideways scrolling

SYBIL = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()])


def _id(page: pathlib.Path) -> str:
    return str(page.relative_to(ROOT))


def _blocks(page: pathlib.Path) -> list[tuple[str, str]]:
    return [(m["lang"], m["body"]) for m in FENCE.finditer(page.read_text())]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator.running() as emu:
        yield emu


@pytest.fixture
def docs_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The environment a reader's shell would have: the key and the URL of the emulator."""
    monkeypatch.setenv("GEMINI_API_KEY", emulator.api_key)
    monkeypatch.setenv("GEMINI_BASE_URL", emulator.base_url)
    gemini_tokens.close_default_client()
    env = dict(os.environ)
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    yield env
    gemini_tokens.close_default_client()


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_python_blocks_run(page: pathlib.Path, docs_env: dict[str, str]) -> None:
    document = SYBIL.parse(page)
    document.namespace["__name__"] = "__docs__"
    for example in document.examples():
        example.evaluate()


def test_every_python_block_is_run() -> None:
    """The parser sees every ```python block: none is silently left out."""
    for page in PAGES:
        text = page.read_text()
        starts = {example.line for example in SYBIL.parse(page).examples()}
        for match in FENCE.finditer(text):
            if match["lang"] != "python":
                continue
            first = text.count("\n", 0, match.start()) + 1
            last = first + match[0].count("\n")
            assert any(first <= line <= last for line in starts), f"{_id(page)}:{first}"


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_code_fits_the_page(page: pathlib.Path) -> None:
    for lang, body in _blocks(page):
        for line in body.splitlines():
            assert len(line) <= MAX_LINE, f"{_id(page)}: a ```{lang} line is too long: {line}"


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_no_includes(page: pathlib.Path) -> None:
    """The Markdown reads whole where people read it (the forge): no snippet includes."""
    text = page.read_text()
    assert "--8<--" not in text
    if page.name != "api.md":
        assert not re.search(r"^::: ", text, re.M), "mkdocstrings entries belong in api.md"


#: Pages that show a file whole, which other tests run (tests/test_faults.py, tests/test_plugin.py
#: and tests/test_emulator_examples.py), or that repeat one.
SHOWN_WHOLE = {
    "docs/errors.md": "examples/errors_handler.py",
    "docs/testing.md": "examples/testing_offline.py",
}


@pytest.mark.parametrize(("page", "path"), SHOWN_WHOLE.items())
def test_a_page_shows_the_tested_file(page: str, path: str) -> None:
    assert ("python", (ROOT / path).read_text()) in _blocks(ROOT / page)


def test_the_changelog_page_is_the_changelog() -> None:
    assert (DOCS / "changelog.md").read_text() == (ROOT / "CHANGELOG.md").read_text()


# -- the README ---------------------------------------------------------------------------


def test_readme_opens_with_the_two_commands() -> None:
    lang, body = _blocks(ROOT / "README.md")[0]
    assert lang == "bash"
    demo, tests = body.strip().splitlines()
    assert "gemini-tokens demo" in demo
    assert "pytest" in tests
    assert "python3.11" not in body  # any Python from 3.10 on
    # The quickstart shows the very same commands.
    assert ("bash", body) in _blocks(DOCS / "quickstart.md")


def test_ci_runs_the_readme_test_command() -> None:
    tests = _blocks(ROOT / "README.md")[0][1].strip().splitlines()[1]
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


# -- shell sessions -------------------------------------------------------------------------


def _console_sessions(page: pathlib.Path) -> Iterator[tuple[str, list[str]]]:
    """Each ``$ command`` of the page's ```console blocks, with the output lines shown."""
    for lang, body in _blocks(page):
        if lang != "console":
            continue
        sessions: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                sessions.append((line[2:], []))
            elif sessions and sessions[-1][0].endswith("\\"):
                sessions[-1] = (sessions[-1][0][:-1] + line, [])
            elif sessions:
                sessions[-1][1].append(line)
        yield from sessions


SESSIONS = [
    (page, command, output)
    for page in PAGES
    for command, output in _console_sessions(page)
    if command.startswith("gemini-tokens create") and "--help" not in command
]


def test_shell_sessions_are_found() -> None:
    assert len(SESSIONS) >= 4  # the README's and the CLI page's


@pytest.mark.parametrize(
    ("page", "command", "output"),
    SESSIONS,
    ids=[f"{_id(p)}: {' '.join(c.split()[2:])[:40]}" for p, c, _ in SESSIONS],
)
def test_shell_sessions_run(
    page: pathlib.Path, command: str, output: list[str], docs_env: dict[str, str]
) -> None:
    """A command shown without output mints; one shown with an error prints that error."""
    result = subprocess.run(
        shlex.split(command), capture_output=True, text=True, timeout=60, env=docs_env
    )
    if not output:
        assert result.returncode == 0, result.stderr
        assert '"name": "auth_tokens/' in result.stdout
    else:
        assert result.returncode == 2
        assert result.stderr.splitlines()[-1] == output[-1]


def test_cli_help_page_is_current(docs_env: dict[str, str]) -> None:
    """docs/cli.md shows `gemini-tokens create --help` as it prints at the page's width."""
    result = subprocess.run(
        [sys.executable, "-m", "gemini_tokens", "create", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**docs_env, "COLUMNS": str(MAX_LINE)},
    )
    # Python 3.10 titles the section "optional arguments:", later versions "options:".
    printed = result.stdout.replace("optional arguments:", "options:")
    shown = "$ gemini-tokens create --help\n" + printed
    assert ("console", shown) in _blocks(DOCS / "cli.md")


# -- the built site -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The site as ``nox -s docs`` builds it (--strict: a warning fails)."""
    pytest.importorskip("mkdocs", reason="needs the docs tools: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    return out


def _words(html_text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", html_text)).split())


def _entry(page: str, name: str) -> str:
    """The words of one API entry, from its heading to the next, without whitespace."""
    for chunk in re.split(r'<h[1-6] id="', page)[1:]:
        if chunk.startswith(f'{name}"'):
            return re.sub(r"\s", "", _words(chunk))
    raise AssertionError(f"no entry for {name}")


def test_the_api_page_reads_well(site: pathlib.Path) -> None:
    page = (site / "api" / "index.html").read_text()
    text = _words(page)
    for noise in ("Bases:", "_Compact", "attrs.field", "DEFAULT_", "Method generated by attrs"):
        assert noise not in text
    # The config classes' fields, each with its type and default.
    config = _entry(page, "gemini_tokens.LiveConnectConfig")
    assert "response_modalitiesSequence[Modality]|NoneNone" in config
    assert "temperaturefloat|NoneNone" in config
    # A field's description, then its default as a value.
    policy = _entry(page, "gemini_tokens.RetryPolicy")
    assert "max_retriesintRetriesafterthefirstattempt(so2meansupto3attempts).2" in policy
    client = _entry(page, "gemini_tokens.AsyncClient")
    assert 'api_version:str="v1alpha"' in client  # the value, not the constant's name


def test_the_site_asks_no_third_party_host_for_fonts(site: pathlib.Path) -> None:
    for built in site.rglob("*.html"):
        text = built.read_text()
        assert "fonts.googleapis.com" not in text
        assert "fonts.gstatic.com" not in text


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_code_fits_a_1280px_page(site: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """No code block, signature or table scrolls sideways at 1280 px (screenshots kept)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs Playwright: pip install playwright"
    )
    overflowing = """() => [...document.querySelectorAll(
        'pre > code, .doc-signature, .md-typeset__scrollwrap')]
        .filter(e => e.scrollWidth > e.clientWidth + 1)
        .map(e => e.textContent.split('\\n').reduce((a, b) => a.length > b.length ? a : b))"""
    wide: dict[str, list[str]] = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for built in sorted(site.glob("**/index.html")):
                page.goto(built.as_uri())
                name = built.parent.name if built.parent != site else "index"
                page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
                if found := page.evaluate(overflowing):
                    wide[name] = found
        finally:
            browser.close()
    assert wide == {}
