"""Benchmark: from ``goAway`` to a resumed session, in Chromium, on loopback.

examples/voice-app/ (built with Vite) is served by its FastAPI server (uvicorn, the broker
with renewal on, in a process of its own) against the emulator (in this process, on a
thread of its own), and driven by Playwright in Debian's headless Chromium. The page signs
in and connects; then, ``-n`` times (after ``--warmup`` untimed rounds), the emulator sends
``goAway`` and the page's session renews its token through the broker (``POST /token`` with
``{"renew": ...}``, a mint on the emulator), closes the old socket, waits for it to close,
opens a new one with the resumption handle and is ``open`` again once the service has set it
up. Each round also sends a text turn on the resumed session and waits for its answer, so
the conversation is shown to go on (the emulator restores it).

Two figures per round:

- **goAway sent → open**: from just before ``Emulator.go_away()`` (this process's clock) to
  the page's ``onstatechange("open")`` (``performance.timeOrigin + performance.now()``): both
  read the same system clock.
- **resuming → open**: within the page, from ``onstatechange("resuming")`` (the goAway
  received) to ``open``.

Run ``python benchmarks/bench_goaway.py`` (``-n 20`` by default). Needs chromium, Node.js
20.19+ with npm, and the ``playwright`` and ``uvicorn`` packages (the ``test`` extra); the
app is built first when examples/voice-app/dist/ is missing (or with ``--build``). Prints
the median and p90; the target is a median under 300 ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # the checkout's gemini_tokens, as the other benchmarks

from gemini_tokens.testing import Emulator  # noqa: E402
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, FAKE_MEDIA_ARGS  # noqa: E402

APP = ROOT / "examples" / "voice-app"
JS = ROOT / "js"
LAUNCH_ARGS = [*CHROMIUM_ARGS, *FAKE_MEDIA_ARGS]
TIMEOUT_MS = 20_000


def npm(*args: str, cwd: Path) -> None:
    print(f"$ (cd {cwd.relative_to(ROOT)} && npm {' '.join(args)})", flush=True)
    subprocess.run(["npm", *args], cwd=cwd, check=True, stdin=subprocess.DEVNULL)


def build() -> None:
    """The app as a clean clone builds it: the package it links, then the app."""
    if not (JS / "node_modules").is_dir():
        npm("ci", "--no-audit", "--no-fund", cwd=JS)
    npm("run", "build", cwd=JS)
    npm("ci", "--no-audit", "--no-fund", cwd=APP)
    npm("run", "build", cwd=APP)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(emu: Emulator, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
    env.update(
        GEMINI_API_KEY=emu.api_key,
        GEMINI_BASE_URL=emu.base_url,
        GEMINI_TOKENS_BROKER_SECRET="bench-goaway-" + "s" * 32,
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    process = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "--app-dir", str(APP), "server:app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ],
        env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the voice app's server exited")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/me", timeout=1).close()
            return process
        except urllib.error.HTTPError:
            return process
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("the voice app's server did not start")


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def one_round(page: Any, emu: Emulator, index: int) -> tuple[float, float]:
    """One goAway, resumed; the two figures in milliseconds."""
    before = page.evaluate("window.voiceApp.states.length")
    turns = page.evaluate("window.voiceApp.turns")
    sent = time.time() * 1000
    if emu.go_away() != 1:
        raise SystemExit("the page has no open session")
    page.wait_for_function(
        f"window.voiceApp.states.length >= {before + 2}"
        " && window.voiceApp.states.at(-1).state === 'open'",
        timeout=TIMEOUT_MS,
    )
    states = page.evaluate(f"window.voiceApp.states.slice({before})")
    if [s["state"] for s in states] != ["resuming", "open"]:
        raise SystemExit(f"unexpected states: {states}")
    resuming, opened = states[0]["at"], states[1]["at"]
    # The conversation goes on: a turn on the resumed socket is answered with the history.
    page.get_by_test_id("text").fill(f"round {index}")
    page.get_by_test_id("send").click()
    page.wait_for_function(f"window.voiceApp.turns >= {turns + 1}", timeout=TIMEOUT_MS)
    return opened - sent, opened - resuming


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--build", action="store_true", help="build the app even if built")
    args = parser.parse_args()

    browser_path = CHROMIUM
    has_playwright = importlib.util.find_spec("playwright") is not None
    missing = [
        what
        for what, ok in [
            ("chromium (apt-get install chromium)", browser_path is not None),
            ("node and npm (apt-get install nodejs npm)", shutil.which("npm") is not None),
            ("playwright (pip install -e '.[test]')", has_playwright),
        ]
        if not ok
    ]
    if missing:
        print(f"bench_goaway: skipped, it needs {', '.join(missing)}")
        return
    assert browser_path is not None
    if args.build or not (APP / "dist" / "index.html").is_file():
        build()

    from playwright.sync_api import sync_playwright

    with Emulator.running() as emu:
        port = free_port()
        server = start_server(emu, port)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=browser_path, args=LAUNCH_ARGS)
                try:
                    page = browser.new_page()
                    page.goto(f"http://127.0.0.1:{port}/")
                    page.get_by_test_id("signin").click()
                    page.wait_for_function(
                        "document.querySelector('[data-testid=user]').textContent"
                        ".startsWith('signed in')",
                        timeout=TIMEOUT_MS,
                    )
                    page.get_by_test_id("connect").click()
                    page.wait_for_function(
                        "window.voiceApp.states.at(-1)?.state === 'open'", timeout=TIMEOUT_MS
                    )
                    for index in range(args.warmup):
                        one_round(page, emu, index)
                    sent_to_open: list[float] = []
                    resuming_to_open: list[float] = []
                    for index in range(args.n):
                        total, inside = one_round(page, emu, args.warmup + index)
                        sent_to_open.append(total)
                        resuming_to_open.append(inside)
                    sockets = page.evaluate(
                        "document.querySelector('[data-testid=connections]').textContent"
                    )
                finally:
                    browser.close()
        finally:
            server.terminate()
            server.wait(30)

    print(f"goAway → resumed, {args.n} rounds (after {args.warmup} warm-up), loopback:")
    print(f"sockets used by the one session: {sockets}\n")
    print("| | median | p90 | min | max |")
    print("|---|---:|---:|---:|---:|")
    for name, values in [
        ("goAway sent → state open", sent_to_open),
        ("resuming → open (in the page)", resuming_to_open),
    ]:
        print(
            f"| {name} | {statistics.median(values):.1f} ms | {percentile(values, 0.9):.1f} ms"
            f" | {min(values):.1f} ms | {max(values):.1f} ms |"
        )
    median = statistics.median(sent_to_open)
    verdict = "under" if median < 300 else "OVER"
    print(f"\nmedian {median:.1f} ms: {verdict} the 300 ms target")


if __name__ == "__main__":
    main()
