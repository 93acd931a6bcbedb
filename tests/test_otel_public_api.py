"""The library uses OpenTelemetry's public API only: no module of ``gemini_tokens`` reads the
API's private globals or modules (``_internal``, ``_TRACER_PROVIDER``, ``_METER_PROVIDER``,
``_PROXY_*``), which change without notice between releases.
"""

from __future__ import annotations

import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "gemini_tokens"
#: OpenTelemetry's private names (a dotted path's part, an attribute, a name or a string).
#: (The library's own ``_PROXY_ENV_VARS`` and the like are about HTTP proxies.)
PRIVATE = re.compile(
    r"_internal|_TRACER_PROVIDER|_METER_PROVIDER|_LOGGER_PROVIDER"
    r"|_PROXY_(TRACER|METER|LOGGER)\w*|_Proxy(Tracer|Meter|Logger)\w*"
)


def private_names(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, name) of each OpenTelemetry private name ``source`` reads, however spelled."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [part for alias in node.names for part in alias.name.split(".")]
        elif isinstance(node, ast.ImportFrom):
            names = [*(node.module or "").split("."), *(alias.name for alias in node.names)]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = re.split(r"[^\w]+", node.value)  # getattr(metrics, "_internal")
        found.extend(
            (getattr(node, "lineno", 0), name) for name in names if PRIVATE.fullmatch(name)
        )
    return found


def test_the_checker_finds_every_spelling() -> None:
    source = "\n".join(
        [
            "from opentelemetry.metrics._internal import _ProxyMeterProvider",
            "import opentelemetry.metrics._internal",
            "provider = trace._TRACER_PROVIDER",
            "internal = getattr(metrics, '_internal', None)",
            "getattr(internal, '_METER_PROVIDER')",
            "trace._PROXY_TRACER_PROVIDER",
            "name = 'opentelemetry.metrics._internal'",
            "from opentelemetry.metrics import _ProxyMeter",
        ]
    )
    lines = {line for line, _ in private_names(source)}
    assert lines == {1, 2, 3, 4, 5, 6, 7, 8}
    assert private_names("from opentelemetry import metrics, trace\ntrace.get_tracer('x')") == []


def test_no_module_reads_opentelemetry_private_names() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40  # the whole package: core, broker, serve, testing
    found = {
        f"{path.relative_to(PACKAGE.parent)}:{line}": name
        for path in modules
        for line, name in private_names(path.read_text(), str(path))
    }
    assert found == {}
