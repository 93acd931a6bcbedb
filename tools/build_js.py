"""Build the npm package in ``js/`` and copy its single-file bundle into the Python package.

``js/dist/gemini-tokens.js`` (``npm run build``) is copied byte for byte to
``gemini_tokens/broker/static/gemini-tokens.js``, the file the broker serves at
``<token path>/client.js`` and the wheel ships. The copy is committed, so installing the
wheel or the sdist needs no Node; ``tests/test_js_package.py`` fails when it is stale.

Usage (from anywhere; needs Node and ``cd js && npm ci`` once)::

    python tools/build_js.py          # build, then copy
    python tools/build_js.py --check  # build, then exit 1 if the committed copy differs
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
JS = ROOT / "js"
BUILT = JS / "dist" / "gemini-tokens.js"
SHIPPED = ROOT / "gemini_tokens" / "broker" / "static" / "gemini-tokens.js"


def build() -> bytes:
    """Run ``npm run build`` in ``js/`` and return the bundle it wrote.

    Raises:
        SystemExit: npm or ``js/node_modules`` is missing, or the build failed.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("build_js: needs Node.js and npm on PATH")
    if not (JS / "node_modules").is_dir():
        raise SystemExit("build_js: js/node_modules is missing: run `cd js && npm ci` first")
    done = subprocess.run([npm, "run", "build"], cwd=JS, check=False)
    if done.returncode != 0:
        raise SystemExit(f"build_js: `npm run build` in js/ failed (exit {done.returncode})")
    return BUILT.read_bytes()


def main(argv: list[str] | None = None) -> int:
    """Build, then copy the bundle (or, with ``--check``, only compare it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed copy, write nothing"
    )
    args = parser.parse_args(argv)
    bundle = build()
    shipped = SHIPPED.relative_to(ROOT)
    if args.check:
        if SHIPPED.read_bytes() != bundle:
            print(f"{shipped} is stale: run `python tools/build_js.py`", file=sys.stderr)
            return 1
        print(f"{shipped} is the build of js/")
        return 0
    SHIPPED.write_bytes(bundle)
    print(f"{BUILT.relative_to(ROOT)} -> {shipped} ({len(bundle)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
