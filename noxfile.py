"""Developer tasks: ``nox -s tests lint typecheck docs bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = ["3.11"]


# The oldest supported Python too; nox skips an interpreter that is not installed.
@nox.session(python=["3.10", "3.11"])
def tests(session: nox.Session) -> None:
    """Run the test suite with coverage (fails under 90%)."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "--cov=gemini_tokens",
        "--cov-report=term",
        "--cov-fail-under=90",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (the test extra brings pytest and trustme's types)."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy", "--strict", "gemini_tokens")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the docs site with --strict (warnings are errors)."""
    session.install("-e", ".[docs]")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against raw aiohttp and google-genai; prints a table, writes JSON."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/bench.py", *session.posargs)
