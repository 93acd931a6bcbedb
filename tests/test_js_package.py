"""The npm package in js/ and the copy of its bundle the Python package ships.

``gemini_tokens/broker/static/gemini-tokens.js`` (served at ``<token path>/client.js``, in the
wheel) is ``js/dist/gemini-tokens.js``, built by ``npm run build`` and copied byte for byte by
``tools/build_js.py``. These tests fail when the committed copy is stale or carries another
version than the wheel. That the wheel ships it is tests/test_renewal.py's
``test_the_helper_ships_in_the_wheel``.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import pytest

import gemini_tokens

ROOT = pathlib.Path(__file__).resolve().parent.parent
JS = ROOT / "js"
SHIPPED = ROOT / "gemini_tokens" / "broker" / "static" / "gemini-tokens.js"
BUILT = JS / "dist" / "gemini-tokens.js"
NPM = shutil.which("npm")
NO_MODULES = "needs Node.js, npm and js/node_modules: install them with `cd js && npm ci`"


def _shipped_version() -> str:
    text = SHIPPED.read_text(encoding="utf-8")
    found = re.findall(r'^(?:export )?(?:var|const) VERSION = "([^"]+)";$', text, re.M)
    assert len(found) == 1, f"{SHIPPED.name} declares VERSION {len(found)} times, not once"
    return str(found[0])


def test_the_shipped_helper_has_the_wheels_version() -> None:
    assert _shipped_version() == gemini_tokens.__version__


def test_the_shipped_helper_is_generated_from_js() -> None:
    header = SHIPPED.read_text(encoding="utf-8").splitlines()[:4]
    assert header[0].startswith(f"// gemini-tokens.js {gemini_tokens.__version__}: ")
    assert "Generated from the npm package gemini-tokens (js/ in the" in "\n".join(header)


@pytest.mark.skipif(not (JS / "package.json").exists(), reason="needs js/ (a checkout)")
def test_the_npm_package_has_the_wheels_version() -> None:
    package = json.loads((JS / "package.json").read_text(encoding="utf-8"))
    assert package["version"] == gemini_tokens.__version__


@pytest.mark.skipif(NPM is None or not (JS / "node_modules").is_dir(), reason=NO_MODULES)
def test_the_shipped_helper_is_the_build_of_js() -> None:
    done = subprocess.run(
        [str(NPM), "run", "build"],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert SHIPPED.read_bytes() == BUILT.read_bytes(), (
        f"{SHIPPED.relative_to(ROOT)} is stale: run `python tools/build_js.py` and commit it"
    )
