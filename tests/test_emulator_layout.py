"""How gemini_tokens/testing/ is put together: no import cycle, one seam onto the core."""

from __future__ import annotations

import ast
import pathlib

import gemini_tokens.testing

PACKAGE = pathlib.Path(gemini_tokens.testing.__file__).parent
# Owned elsewhere (the pytest plugin and the demo are the "newcomer" engineer's).
NOT_THE_EMULATORS = {"_pytest_plugin", "_demo"}


def _imports(path: pathlib.Path) -> set[str]:
    """Every module this one imports, anywhere in it: lazy and TYPE_CHECKING imports too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in PACKAGE.glob("*.py")}
    prefix = "gemini_tokens.testing."
    return {
        name: {
            imported[len(prefix) :]
            for imported in _imports(path)
            if imported.startswith(prefix) and imported[len(prefix) :] in modules
        }
        - {name}
        for name, path in modules.items()
    }


def test_no_import_cycle_in_testing_lazy_imports_included() -> None:
    graph = _graph()
    assert "_live" not in graph["_state"]
    assert "_emulator" not in graph["_live"]
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for imported in graph[name]:
            visit(imported, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())


def test_core_internals_are_imported_only_through_the_core_seam() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.stem in NOT_THE_EMULATORS | {"_core"}:
            continue
        private = {
            name
            for name in _imports(path)
            if name.startswith("gemini_tokens._") and not name.startswith("gemini_tokens.testing")
        }
        assert not private, (path.name, private)
