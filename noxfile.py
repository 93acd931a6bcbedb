"""Developer tasks: ``nox -s tests lint typecheck docs build js bench``.

Sessions other than ``tests`` run on the Python that runs nox; ``js`` runs npm.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs", "build"]
nox.options.reuse_existing_virtualenvs = True

ROOT = pathlib.Path(__file__).resolve().parent


# Every supported Python; nox skips an interpreter that is not installed (outside CI).
@nox.session(python=["3.10", "3.11", "3.12", "3.13"])
def tests(session: nox.Session) -> None:
    """Run the test suite with its coverage gate (pyproject's fail_under)."""
    session.install("-e", ".[test]")
    session.run("pytest", "--cov", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (the test extra brings pytest and trustme's types).

    tomli too: mypy checks the package as Python 3.10, where broker.toml is read with it.
    """
    session.install("-e", ".[test]", "mypy", "tomli")
    session.run("mypy", "--strict", "gemini_tokens")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs site with --strict (warnings are errors)."""
    session.install("-e", ".[docs]")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel, check them, and use the wheel as a user would.

    The wheel goes with its ``testing`` extra into a fresh virtualenv in a temporary folder far
    from the checkout, which then runs ``gemini-tokens demo`` and, under pytest with no
    configuration (pytest-asyncio's default mode), a copy of examples/testing_offline.py.
    """
    session.install("build", "twine")
    far = pathlib.Path(tempfile.mkdtemp(prefix="gemini-tokens-build-"))
    try:
        dist = far / "dist"
        session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
        built = sorted(str(path) for path in dist.iterdir())
        session.run("twine", "check", "--strict", *built)
        (wheel,) = dist.glob("*.whl")

        venv = far / "venv"
        session.run("python", "-m", "venv", str(venv))
        bin_dir = venv / "bin"
        project = far / "project"
        project.mkdir()
        shutil.copy(ROOT / "examples" / "testing_offline.py", project / "test_offline.py")
        with session.chdir(project):
            session.run(str(bin_dir / "pip"), "install", "-q", f"{wheel}[testing]", external=True)
            session.run(str(bin_dir / "gemini-tokens"), "demo", external=True)
            session.run(
                str(bin_dir / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-rs",
                external=True,
            )  # fmt: skip
    finally:
        shutil.rmtree(far, ignore_errors=True)


@nox.session(python=False)
def js(session: nox.Session) -> None:
    """The npm package in js/: install, build, unit and type tests, size budgets, pack check.

    As .ci/run does; needs Node.js and npm (no virtualenv). Then ``python tools/build_js.py``
    copies the bundle into the Python package, if it changed.
    """
    if shutil.which("npm") is None:
        session.error("needs Node.js and npm on PATH")
    with session.chdir(ROOT / "js"):
        session.run("npm", "ci", "--no-audit", "--no-fund", external=True)
        for script in ("build", "test", "size", "pack:check"):
            session.run("npm", "run", script, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against raw aiohttp and google-genai (the client, then the broker in a
    FastAPI app), then goAway to resumed in Chromium (examples/voice-app); prints the tables,
    writes JSON. Arguments go to ``benchmarks/bench.py``."""
    session.install("-e", ".[bench,broker,test]")
    session.run("python", "benchmarks/bench.py", *session.posargs)
    session.run("python", "benchmarks/bench_broker.py")
    session.run("python", "benchmarks/bench_goaway.py")  # skips without chromium/npm
