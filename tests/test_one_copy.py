"""One copy of each fact: google.rpc status names, camelCase, the loopback rule.

The broker, the emulator, the command line and the browser helper use the core's one copy;
these tests hold them to it (and hold the browser's copy equal to the Python one: its source
in the npm package, js/src/errors.ts, and the build of it the broker serves,
gemini_tokens/broker/static/gemini-tokens.js).
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import re
import shutil
import subprocess

import pytest

import gemini_tokens
from gemini_tokens import ConfigurationError, ValidationError
from gemini_tokens._cli import _check_environment
from gemini_tokens._config import resolve_base_url, resolve_proxy
from gemini_tokens._errors import STATUS_NAMES
from gemini_tokens._naming import camel
from gemini_tokens.broker import JWTSettings
from gemini_tokens.broker._http import error_body
from gemini_tokens.broker._policy import Policy, check_choices
from gemini_tokens.broker._static import client_js
from gemini_tokens.testing._http_answers import status_body

PACKAGE = pathlib.Path(gemini_tokens.__file__).resolve().parent
#: The browser's table in the npm package's source (absent from an sdist).
JS_ERRORS = PACKAGE.parent / "js" / "src" / "errors.ts"
#: google.rpc.Code's names (code.proto).
RPC_CODES = frozenset(
    {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
    }
)

# -- google.rpc status names -------------------------------------------------------------------


def _js_status_names(source: str) -> dict[int, str]:
    """The ``STATUS_NAMES`` table of the browser's code, every line of it read.

    In the TypeScript source (``export const STATUS_NAMES: ... = Object.freeze({``) or in the
    bundle esbuild makes of it (``var STATUS_NAMES = Object.freeze({``).
    """
    block = re.search(
        r"^(?:export const|var) STATUS_NAMES\b[^=\n]*= Object\.freeze\(\{\n(.*?)^\}\);",
        source,
        re.M | re.S,
    )
    assert block is not None, "no `STATUS_NAMES = Object.freeze({...});`"
    table: dict[int, str] = {}
    for line in block.group(1).splitlines():
        entry = re.fullmatch(r'\s*(\d{3}): "([A-Z_]+)",?', line)
        assert entry is not None, f'not a `code: "NAME",` line: {line!r}'
        code = int(entry.group(1))
        assert code not in table, f"{code} is named twice"
        table[code] = entry.group(2)
    return table


def test_the_browser_helper_names_statuses_as_the_package_does() -> None:
    assert _js_status_names(client_js().decode()) == dict(STATUS_NAMES)


@pytest.mark.skipif(not JS_ERRORS.exists(), reason="needs js/ (a checkout, not an sdist)")
def test_the_npm_package_names_statuses_as_the_package_does() -> None:
    assert _js_status_names(JS_ERRORS.read_text(encoding="utf-8")) == dict(STATUS_NAMES)


@pytest.mark.parametrize("source", ["shipped", "npm"])
def test_the_js_table_reader_sees_a_difference(source: str) -> None:
    if source == "npm" and not JS_ERRORS.exists():
        pytest.skip("needs js/ (a checkout, not an sdist)")
    text = client_js().decode() if source == "shipped" else JS_ERRORS.read_text(encoding="utf-8")
    changed = text.replace('405: "UNIMPLEMENTED"', '405: "METHOD_NOT_ALLOWED"')
    assert changed != text
    assert _js_status_names(changed) != dict(STATUS_NAMES)


#: A body-less answer of each status, through the helper's TokenSource; prints each code.
_NODE_SCRIPT = """
import { TokenSource } from "%s";
const codes = {};
for (const status of [405, 413, 415]) {
  const fetch = async () => new Response("<html>proxy</html>", { status });
  try {
    await new TokenSource("/token", { fetch, sleep: async () => {} }).get();
  } catch (err) {
    codes[status] = err.code;
  }
}
console.log(JSON.stringify(codes));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_the_browser_helper_uses_its_table_for_a_body_without_a_status() -> None:
    helper = PACKAGE / "broker" / "static" / "gemini-tokens.js"
    done = subprocess.run(
        [str(shutil.which("node")), "--input-type=module", "-e", _NODE_SCRIPT % helper.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    codes = {int(k): v for k, v in json.loads(done.stdout).items()}
    assert codes == {code: gemini_tokens.status_name(code) for code in (405, 413, 415)}


def test_every_status_name_is_a_google_rpc_code() -> None:
    assert set(STATUS_NAMES.values()) <= RPC_CODES
    assert gemini_tokens.status_name(405) == "UNIMPLEMENTED"  # google.rpc has no 405 of its own
    assert gemini_tokens.status_name(429) == "RESOURCE_EXHAUSTED"
    assert gemini_tokens.status_name(418) == "UNKNOWN"


@pytest.mark.parametrize("code", [*STATUS_NAMES, 418])
def test_the_broker_and_the_emulator_name_a_status_alike(code: int) -> None:
    name = gemini_tokens.status_name(code)
    assert json.loads(error_body(code, "m"))["error"]["status"] == name
    assert status_body(code, "m")["error"]["status"] == name


def _status_tables(path: pathlib.Path) -> list[int]:
    """Lines of ``path`` with a dict literal from HTTP statuses to google.rpc names."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Dict) and len(node.keys) >= 3:
            names = [v.value for v in node.values if isinstance(v, ast.Constant)]
            codes = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if all(isinstance(c, int) for c in codes) and sum(n in RPC_CODES for n in names) >= 3:
                lines.append(node.lineno)
    return lines


def test_the_package_has_one_table_of_status_names() -> None:
    found = {
        str(path.relative_to(PACKAGE)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := _status_tables(path))
    }
    assert list(found) == ["_errors.py"]
    assert len(found["_errors.py"]) == 1


# -- camelCase ---------------------------------------------------------------------------------


def test_camel_is_the_cores_one_copy() -> None:
    assert gemini_tokens.camel is camel
    assert camel("max_output_tokens") == "maxOutputTokens"
    assert camel("maxOutputTokens") == "maxOutputTokens"


@pytest.mark.parametrize(
    ("field", "spellings"),
    [
        ("temperature", ["temperature"]),
        ("speech_config", ["speech_config", "speechConfig"]),
        ("max_output_tokens", ["max_output_tokens", "maxOutputTokens"]),
    ],
)
def test_the_broker_reads_a_choice_in_either_spelling(field: str, spellings: list[str]) -> None:
    examples = {"temperature": (0.0, 1.0), "speech_config": ["Kore"], "max_output_tokens": [64]}
    policy = Policy(client_may_set={field: examples[field]})
    value = policy.client_may_set[field].examples()[0]
    for key in spellings:
        assert policy.field_for(key) == field
        assert check_choices(policy, {key: value}) == {field: value}
    assert policy.field_for(field.upper()) is None
    if len(spellings) == 2:
        with pytest.raises(ValidationError, match="given twice"):
            check_choices(policy, dict.fromkeys(spellings, value))


# -- loopback ----------------------------------------------------------------------------------

LOOPBACK = {
    "localhost": True,
    "foo.localhost": True,
    "127.0.0.1": True,
    "127.0.0.2": True,
    "::1": True,
    "localhost.example.com": False,
    "notlocalhost": False,
    "example.com": False,
    "10.0.0.1": False,
    "::2": False,
}


def _url(host: str, path: str = "") -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:8765{path}"


def _client_allows(host: str) -> bool:
    try:
        resolve_base_url(_url(host), environ={})
    except ConfigurationError:
        return False
    return True


def _cli_allows(host: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setenv("GEMINI_API_KEY", "k" * 39)
    try:
        _check_environment(argparse.Namespace(base_url=_url(host), allow_insecure_http=False))
    except ValidationError:
        return False
    return True


def _proxy_skipped(host: str) -> bool:
    environ = {"HTTP_PROXY": "http://proxy.example:3128"}
    return resolve_proxy(None, trust_env=True, url=_url(host), environ=environ) is None


def _broker_allows(host: str) -> bool:
    try:
        JWTSettings(
            issuer="https://id.example",
            audience="broker",
            algorithms=["RS256"],
            jwks_url=_url(host, "/jwks.json"),
        )
    except ConfigurationError as exc:
        if "allowed only to loopback" not in str(exc):
            raise
        return False
    return True


@pytest.mark.parametrize(("host", "loopback"), LOOPBACK.items(), ids=list(LOOPBACK))
def test_every_user_of_the_loopback_rule_agrees(
    host: str, loopback: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gemini_tokens.is_loopback_host(host) is loopback
    assert _client_allows(host) is loopback
    assert _cli_allows(host, monkeypatch) is loopback
    assert _proxy_skipped(host) is loopback
    assert _broker_allows(host) is loopback
