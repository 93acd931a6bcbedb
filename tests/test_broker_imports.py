"""The broker's modules import one way: adapters -> `TokenBroker` -> its parts (no cycle).

Every import counts, at the top, inside a function or under ``TYPE_CHECKING``: the adapters
(`ASGIApp`, `WSGIApp`, aiohttp, FastAPI) import the broker, never the other way round, and
the broker reaches the core only through its public names.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import gemini_tokens.broker

BROKER = pathlib.Path(gemini_tokens.broker.__file__).resolve().parent
MODULES = sorted(p.stem for p in BROKER.glob("*.py") if p.stem != "__init__")
ADAPTERS = ("_asgi", "_wsgi", "_bridge", "aiohttp", "fastapi")


def _imported(stem: str) -> list[str]:
    """The ``gemini_tokens`` modules (or names' modules) that ``broker/<stem>.py`` imports."""
    tree = ast.parse((BROKER / f"{stem}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append("gemini_tokens.broker" + (f".{node.module}" if node.module else ""))
            else:
                found.append(node.module or "")
    return [name for name in found if name.split(".")[0] == "gemini_tokens"]


def _graph() -> dict[str, set[str]]:
    """broker module -> the broker modules it imports (``gemini_tokens.broker`` itself is
    ``__init__``, which imports them all)."""
    graph: dict[str, set[str]] = {}
    for stem in MODULES:
        edges = set()
        for name in _imported(stem):
            parts = name.split(".")
            if parts[:2] == ["gemini_tokens", "broker"]:
                edges.add(parts[2] if len(parts) > 2 else "__init__")
        graph[stem] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a path, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, set())):
            if state.get(nxt) == "open":
                return [*path, node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_no_import_cycle_among_the_broker_modules() -> None:
    graph = _graph()
    assert "__init__" not in set().union(*graph.values()), "a module imports the package face"
    assert _cycle(graph) is None


def test_the_broker_imports_no_adapter() -> None:
    graph = _graph()
    assert graph["_broker"].isdisjoint(ADAPTERS), graph["_broker"]
    assert graph["_openapi"].isdisjoint({"_broker", *ADAPTERS})  # it takes plain values


def test_the_check_finds_a_cycle() -> None:
    found = _cycle({"_broker": {"_asgi"}, "_asgi": {"_types", "_broker"}})
    assert found is not None
    assert found[0] == found[-1]
    assert set(found) == {"_asgi", "_broker"}
    assert _cycle({"_broker": {"_types"}, "_asgi": {"_broker"}}) is None


@pytest.mark.parametrize("stem", ["_broker", "_openapi", "_wsgi", "_asgi", "_bridge"])
def test_the_broker_imports_no_private_core_module(stem: str) -> None:
    assert [name for name in _imported(stem) if name.startswith("gemini_tokens._")] == []
