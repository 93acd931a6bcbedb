"""The data path (issue #10): exact default times, no shared requests, one-way imports.

And issue #11.7: a token name that is not printable ASCII of a sane length is not a token.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

import gemini_tokens
from gemini_tokens import EphemeralToken, InvalidResponseError
from gemini_tokens._converters import body_bytes, body_for
from gemini_tokens._request import build_request

from .conftest import API_KEY, RecordingServer

PACKAGE = pathlib.Path(gemini_tokens.__file__).resolve().parent
MODEL = "gemini-live-2.5-flash-preview"
CONSTRAINTS = {"model": MODEL, "config": {"response_modalities": ["AUDIO"], "temperature": 0.7}}

# -- exact default times -----------------------------------------------------------------------


@pytest.mark.parametrize("micro", [0, 1, 123456, 999999])
def test_default_times_are_exact(micro: int) -> None:
    now = dt.datetime(2031, 5, 6, 7, 8, 9, micro, tzinfo=dt.timezone.utc)
    request = build_request(live_connect_constraints=CONSTRAINTS, now=now)
    assert request.expire_time == now + dt.timedelta(minutes=30)
    assert request.new_session_expire_time == now + dt.timedelta(seconds=60)
    body = body_for(request)
    fraction = f".{micro:06d}" if micro else ""
    assert body["expireTime"] == f"2031-05-06T07:38:09{fraction}Z"
    assert body["newSessionExpireTime"] == f"2031-05-06T07:09:09{fraction}Z"


def test_default_times_count_from_the_call_not_a_whole_second() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    request = build_request(uses=1)
    after = dt.datetime.now(dt.timezone.utc)
    assert before + dt.timedelta(minutes=30) <= request.expire_time
    assert request.expire_time <= after + dt.timedelta(minutes=30)
    assert before + dt.timedelta(seconds=60) <= request.new_session_expire_time
    assert request.new_session_expire_time <= after + dt.timedelta(seconds=60)


def test_a_short_expiry_clamps_the_default_new_session_deadline() -> None:
    now = dt.datetime(2031, 5, 6, 7, 8, 9, 5, tzinfo=dt.timezone.utc)
    request = build_request(expire_time=now + dt.timedelta(seconds=20), now=now)
    assert request.new_session_expire_time == now + dt.timedelta(seconds=20)


async def test_sent_times_keep_their_microseconds(server: RecordingServer) -> None:
    """Two mints in a row send their own instants (no request is shared)."""
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        first = await client.create(live_connect_constraints=CONSTRAINTS)
        second = await client.create(live_connect_constraints=CONSTRAINTS)
    sent = [request["body"]["expireTime"] for request in server.requests]
    assert sent[0] != sent[1]
    assert first.expire_time is not None
    assert second.expire_time is not None
    assert first.expire_time < second.expire_time


def test_the_same_dict_changed_between_calls_is_read_again() -> None:
    config: dict[str, Any] = {"temperature": 0.5}
    live = {"model": MODEL, "config": config}
    first = body_for(build_request(live_connect_constraints=live))
    config["temperature"] = 0.9
    config["top_k"] = 3
    second = body_for(build_request(live_connect_constraints=live))
    assert first["bidiGenerateContentSetup"]["generationConfig"] == {"temperature": 0.5}
    assert second["bidiGenerateContentSetup"]["generationConfig"] == {
        "temperature": 0.9,
        "topK": 3,
    }


def test_body_bytes_is_compact_json_of_the_body() -> None:
    body = body_for(build_request(live_connect_constraints=CONSTRAINTS, lock_additional_fields=[]))
    assert body_bytes(body) == json.dumps(body, separators=(",", ":")).encode()


def test_import_leaves_aiohttp_and_cattrs_for_first_use() -> None:
    code = "import sys, gemini_tokens; print('cattrs' in sys.modules, 'aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- one-way imports ---------------------------------------------------------------------------

#: The core's modules, outermost first. A module may import only modules of a later rank
#: (face -> clients -> request/retry/wire -> models -> errors); equal ranks never import
#: each other. A new core module must be placed here.
ORDER: dict[str, float] = {
    "__main__": -2,
    "_cli": -1,
    "__init__": 1,
    "_sync": 2,
    "_client": 3,
    "_transport": 3.5,
    "_request": 4,
    "_retry": 4,
    "_config": 4,
    "_parse": 4,
    "_instrumentation": 4,
    "_converters": 5,
    "_hooks": 5.5,
    "_naming": 6,
    "_models": 7,
    "_structures": 8,
    "_enums": 9,
    "_times": 9,
    "_errors": 10,
    "_version": 11,
}
#: The data modules ("models"): they import nothing of ours but each other and the errors.
MODELS = ("_models", "_structures", "_enums", "_times")
#: Above the core: the core never imports them (only the command line, which serves the
#: emulator and the broker, may).
ABOVE = ("gemini_tokens.testing", "gemini_tokens.broker", "gemini_tokens.serve")
ENTRY_POINTS = frozenset({"__main__", "_cli"})


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """Every ``gemini_tokens`` module that ``path`` imports, anywhere (functions too)."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ._x import y
                base = "gemini_tokens" + (f".{node.module}" if node.module else "")
            else:
                base = node.module or ""
            if base == "gemini_tokens":
                # ``from gemini_tokens import _models`` imports the submodule; a name
                # that is not a submodule comes from the face.
                for alias in node.names:
                    sub = PACKAGE / f"{alias.name}.py"
                    found.append(
                        (node.lineno, f"gemini_tokens.{alias.name}" if sub.exists() else base)
                    )
            else:
                found.append((node.lineno, base))
    return [(line, name) for line, name in found if name.split(".")[0] == "gemini_tokens"]


def _rank(module: str) -> float | None:
    parts = module.split(".")
    if len(parts) == 1:
        return ORDER["__init__"]
    return ORDER.get(parts[1])


def _violations(path: pathlib.Path) -> list[str]:
    own = ORDER[path.stem]
    out = []
    for line, module in _imports(path):
        if module.startswith(ABOVE):
            if path.stem in ENTRY_POINTS:
                continue
            out.append(f"{path.name}:{line} imports {module}, which sits above the core")
            continue
        rank = _rank(module)
        if rank is None:
            out.append(f"{path.name}:{line} imports {module}, which has no rank in ORDER")
        elif rank <= own:
            out.append(f"{path.name}:{line} imports {module} (rank {rank} <= {own})")
    return out


CORE = sorted(PACKAGE.glob("*.py"))


@pytest.mark.parametrize("path", CORE, ids=[p.stem for p in CORE])
def test_core_imports_run_one_way(path: pathlib.Path) -> None:
    assert path.stem in ORDER, f"{path.name}: place the new core module in ORDER"
    assert _violations(path) == []


def test_the_import_check_catches_a_lazy_import_upwards(tmp_path: pathlib.Path) -> None:
    """The check sees imports inside functions, relative ones and the face's names."""
    bad = tmp_path / "_models.py"
    bad.write_text(
        "from gemini_tokens._errors import ValidationError\n"
        "def to_dict():\n"
        "    from gemini_tokens._converters import setup_to_wire\n"
        "    from . import _parse\n"
        "    from gemini_tokens import AsyncClient\n"
        "    import gemini_tokens.testing\n"
    )
    found = _violations(bad)
    assert [entry.split(" imports ")[1].split(" ")[0].rstrip(",") for entry in found] == [
        "gemini_tokens._converters",
        "gemini_tokens._parse",
        "gemini_tokens",
        "gemini_tokens.testing",
    ]


@pytest.mark.parametrize("module", MODELS)
def test_models_import_nothing_of_ours_but_errors(module: str) -> None:
    imported = {name for _, name in _imports(PACKAGE / f"{module}.py")}
    assert imported <= {f"gemini_tokens.{name}" for name in (*MODELS, "_errors")}


# -- the token name (issue #11.7) --------------------------------------------------------------

SECRET = "SECRETpart0123456789"


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        (f"auth\r\nX-Injected: 1/{SECRET}", "printable ASCII"),
        (f"auth_tokens/{SECRET}\n", "printable ASCII"),
        (f"auth_tokens/{SECRET} x", "printable ASCII"),
        (f"auth_tokens/{SECRET}\u00e9", "printable ASCII"),
        ("auth_tokens/" + SECRET * 13, "longer than 256"),
        (f"tokens/{SECRET}", "auth_tokens/<id>"),
        ("auth_tokens/", "auth_tokens/<id>"),
    ],
    ids=["crlf-before-slash", "trailing-lf", "space", "non-ascii", "too-long", "prefix", "empty"],
)
async def test_an_unsane_token_name_is_an_invalid_response(
    server: RecordingServer, name: str, rule: str
) -> None:
    from aiohttp import web

    server.respond = lambda body: web.json_response({"name": name})
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        with pytest.raises(InvalidResponseError, match=rule) as info:
            await client.create()
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert info.value.status_code == 200
    assert len(server.requests) == 1  # never retried


async def test_a_sane_token_name_of_the_longest_length_is_kept(server: RecordingServer) -> None:
    from aiohttp import web

    name = "auth_tokens/" + "a" * (256 - len("auth_tokens/"))
    server.respond = lambda body: web.json_response({"name": name})
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        token = await client.create()
    assert token.name == name


# -- the token knows its wire form without the converters -------------------------------------


async def test_to_dict_keeps_the_answers_numbers(server: RecordingServer) -> None:
    live = {"model": MODEL, "config": {"top_k": 3, "temperature": 1, "max_output_tokens": 64}}
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        token = await client.create(live_connect_constraints=live)
    generation = token.to_dict()["bidiGenerateContentSetup"]["generationConfig"]
    assert generation == {"topK": 3, "temperature": 1, "maxOutputTokens": 64}
    assert all(type(value) is int for value in generation.values())


async def test_to_dict_without_an_echo_gives_what_was_sent(server: RecordingServer) -> None:
    from aiohttp import web

    server.respond = lambda body: web.json_response({"name": "auth_tokens/x"})
    live = {"model": MODEL, "config": {"top_k": 3}}
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        token = await client.create(live_connect_constraints=live, lock_additional_fields=[])
    assert (
        token.to_dict()["bidiGenerateContentSetup"] == server.last_body["bidiGenerateContentSetup"]
    )
    assert token.to_dict()["fieldMask"] == server.last_body["fieldMask"]


def test_to_dict_cannot_change_the_token() -> None:
    token = EphemeralToken(name="auth_tokens/x", setup_json={"generationConfig": {"topK": 3}})
    token.to_dict()["bidiGenerateContentSetup"]["generationConfig"]["topK"] = 4
    assert token.to_dict()["bidiGenerateContentSetup"] == {"generationConfig": {"topK": 3}}


@pytest.mark.parametrize(("sent", "read"), [("3", 3), (3, 3), (3.0, 3), ("x", 1), (True, 1)])
async def test_uses_is_read_as_proto3_json(server: RecordingServer, sent: Any, read: int) -> None:
    """An int64/int32 field may come as a number or a decimal string; junk falls back."""
    from aiohttp import web

    server.respond = lambda body: web.json_response({"name": "auth_tokens/x", "uses": sent})
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        token = await client.create(uses=1)
    assert token.uses == read
    assert type(token.uses) is int


async def test_an_echo_that_differs_is_what_the_token_holds(server: RecordingServer) -> None:
    from aiohttp import web

    echo = {"model": "models/other", "generationConfig": {"topK": 4, "futureField": 1}}
    server.respond = lambda body: web.json_response(
        {"name": "auth_tokens/x", "bidiGenerateContentSetup": echo}
    )
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        token = await client.create(live_connect_constraints={"model": MODEL})
    assert token.live_connect_constraints is not None
    assert token.live_connect_constraints.model == "models/other"
    assert token.to_dict()["bidiGenerateContentSetup"] == echo


# -- the packages around the core (issue #20) --------------------------------------------------

#: Each package's floor: a module imports its own package and packages of a lower rank only
#: (the broker and testing stand beside each other, so neither imports the other).
PACKAGE_RANKS = {"core": 0, "broker": 1, "testing": 1, "serve": 2, "cli": 3}
#: The one module allowed to reach into another package's private names: testing's
#: documented seam into the core's internals (camel, the converters, the token's times).
SEAMS = frozenset({"gemini_tokens.testing._core"})


def _module_name(path: pathlib.Path) -> str:
    parts = ["gemini_tokens", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("broker", "serve", "testing"):
        return parts[1]
    if len(parts) > 1 and parts[1] in ("_cli", "__main__"):
        return "cli"
    return "core"


MODULES = {
    _module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "static" not in path.relative_to(PACKAGE).parts
}


def _edges(path: pathlib.Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """``(line, module, names)`` for every import of ours in ``path``, lazy ones included;
    ``from package import submodule`` is an import of the submodule."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: list[tuple[int, str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    out.append((node.lineno, sub, ()))
                else:
                    out.append((node.lineno, base, (alias.name,)))
    return [edge for edge in out if edge[1].split(".")[0] == "gemini_tokens"]


def _package_violations(path: pathlib.Path) -> list[str]:
    here = _module_name(path)
    own = _package_of(here)
    out = []
    for line, module, names in _edges(path):
        other = _package_of(module)
        where = f"{here}:{line} imports {module}"
        if other == own:
            continue
        if PACKAGE_RANKS[other] >= PACKAGE_RANKS[own]:
            out.append(f"{where}: {other} does not sit below {own}")
        elif here not in SEAMS and own != "cli":
            private = [part for part in module.split(".")[1:] if part.startswith("_")]
            private += [name for name in names if name.startswith("_") and name != "__version__"]
            if private:
                out.append(f"{where}: {', '.join(private)} is private to {other}")
    return out


ABOVE_CORE = sorted(
    (path for name, path in MODULES.items() if _package_of(name) not in ("core", "cli")),
    key=str,
)


@pytest.mark.parametrize("path", ABOVE_CORE, ids=[str(p.relative_to(PACKAGE)) for p in ABOVE_CORE])
def test_packages_import_down_and_only_public_names(path: pathlib.Path) -> None:
    assert _package_violations(path) == []


def _cycles() -> list[list[str]]:
    graph = {
        name: sorted({m for _, m, _ in _edges(path)} & MODULES.keys() - {name})
        for name, path in MODULES.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycle_anywhere_in_the_package() -> None:
    """Lazy and TYPE_CHECKING imports count: a cycle is a cycle wherever its import sits."""
    assert _cycles() == []


def test_the_package_check_catches_upward_private_and_cyclic_imports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one, two = PACKAGE / "broker" / "_fake_one.py", PACKAGE / "broker" / "_fake_two.py"
    texts = {
        one: (
            "from gemini_tokens._client import AsyncClient\n"
            "def later():\n"
            "    from gemini_tokens.serve import _app\n"
            "    from gemini_tokens import __version__, _instrumentation, AsyncClient\n"
            "    from . import _fake_two\n"
        ),
        two: "if TYPE_CHECKING:\n    from gemini_tokens.broker._fake_one import X\n",
    }
    real = pathlib.Path.read_text

    def read_text(self: pathlib.Path, *args: Any, **kwargs: Any) -> str:
        return texts[self] if self in texts else real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    monkeypatch.setitem(MODULES, "gemini_tokens.broker._fake_one", one)
    monkeypatch.setitem(MODULES, "gemini_tokens.broker._fake_two", two)
    found = _package_violations(one)
    assert [entry.split(": ", 1)[1] for entry in found] == [
        "_client is private to core",
        "serve does not sit below broker",
        "_instrumentation is private to core",
    ]
    fake = {"gemini_tokens.broker._fake_one", "gemini_tokens.broker._fake_two"}
    assert any(set(cycle) == fake for cycle in _cycles())
