"""examples/voice-app/ in real headless Chromium, with a fake microphone, against the emulator.

The Vite app is built once per session (``npm ci`` and ``npm run build`` in js/ and in the
app), served by its own FastAPI server (``uvicorn``, the broker with renewal on, on a free
port of 127.0.0.1) pointed at an emulator started in-process, and driven through Playwright:

1. The voice page: refused before signing in, then sign in, connect, a text turn, a voice
   turn (Chromium's fake microphone into the ``Microphone``, the reply's audio scheduled by
   the ``Player``, both transcripts shown), a ``goAway`` from the emulator resumed with the
   conversation kept, and a sign-out after which the next renewal is refused: state
   ``failed`` with the broker's reason.
2. The React page: ``useLiveSession`` goes connecting → open, and closed when the
   component unmounts.

A screenshot of each state goes to the test's tmp_path. Needs Debian's chromium, Node.js
with npm (Vite 8 wants Node 20.19 or later) and the ``playwright`` Python package (it drives
the system Chromium; no browser download).
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from gemini_tokens.testing import Emulator

from .chromium import CHROMIUM, CHROMIUM_ARGS, FAKE_MEDIA_ARGS, NO_CHROMIUM
from .spawn import ROOT, env_for, free_port, start, stop, wait_http

APP = ROOT / "examples" / "voice-app"
JS = ROOT / "js"
NPM = shutil.which("npm")
LAUNCH_ARGS = [*CHROMIUM_ARGS, *FAKE_MEDIA_ARGS]
NO_NPM = "needs Node.js (20.19 or later) and npm: apt-get install nodejs npm"
# Generous: a loaded 2-core machine runs Chromium, uvicorn and the emulator at once.
WAIT_MS = 20_000
# How long the emulator stalls a mint so that a passing state ("connecting", "resuming") can be
# seen and photographed: far longer than Playwright's polling, even on a loaded machine.
HOLD = 5.0

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _npm(*args: str, cwd: pathlib.Path) -> None:
    assert NPM is not None
    done = subprocess.run(
        [NPM, *args, "--no-audit", "--no-fund"] if args[0] == "ci" else [NPM, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        pytest.fail(f"npm {' '.join(args)} in {cwd} failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def dist() -> pathlib.Path:
    """The app built as a clean clone builds it: the package first, then the app."""
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    node = shutil.which("node")
    if NPM is None or node is None:
        pytest.skip(NO_NPM)
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major, minor = (int(part) for part in version.stdout.strip().lstrip("v").split(".")[:2])
    if (major, minor) < (20, 19):
        pytest.skip(f"Vite 8 needs Node.js 20.19 or later, not {version.stdout.strip()}")
    pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install -e '.[test]'")
    if not (JS / "node_modules").is_dir():
        _npm("ci", cwd=JS)
    _npm("run", "build", cwd=JS)  # the app links ../../js and imports its dist/
    _npm("ci", cwd=APP)
    _npm("run", "build", cwd=APP)
    assert (APP / "dist" / "index.html").is_file()
    assert (APP / "dist" / "react.html").is_file()
    return APP / "dist"


@pytest.fixture
def server(dist: pathlib.Path, gemini_emulator: Emulator) -> Iterator[str]:
    """examples/voice-app/server.py under uvicorn on a free port, pointed at the emulator."""
    port = free_port()
    env = env_for(gemini_emulator, GEMINI_TOKENS_BROKER_SECRET="voice-app-test-" + "s" * 32)
    process = start(
        [
            sys.executable, "-m", "uvicorn", "--app-dir", str(APP), "server:app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ],
        env,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/me", process)
        yield f"http://127.0.0.1:{port}/"
    finally:
        output = stop(process)
        assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors


def _post(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, method="POST", headers=headers, data=b"")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _until(predicate: Any, what: str, timeout: float = WAIT_MS / 1000) -> None:
    """Wait for something the page cannot show (the emulator's side), polling."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_voice_app_talks_resumes_and_stops_renewing_after_sign_out(
    server: str, page: Any, gemini_emulator: Emulator, tmp_path: pathlib.Path
) -> None:
    from playwright.sync_api import expect

    def by(testid: str) -> Any:
        return page.get_by_test_id(testid)

    def shot(name: str) -> None:
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)

    state, reason, states = by("state"), by("reason"), by("states")
    page.goto(server)
    expect(state).to_have_text("idle")
    expect(by("user")).to_have_text("signed out")

    # Not signed in: the broker refuses the first token, and the page says why.
    by("connect").click()
    expect(state).to_have_text("failed", timeout=WAIT_MS)
    expect(reason).to_have_text("you are signed out: sign in to talk again")
    expect(states).to_have_text("connecting → failed")
    shot("1-refused-before-sign-in")
    assert gemini_emulator.tokens == []

    # Signed in: connecting, then open.
    by("signin").click()
    expect(by("user")).to_have_text("signed in as alice", timeout=WAIT_MS)
    gemini_emulator.delay_next(HOLD)  # the first mint: long enough to see "connecting"
    by("connect").click()
    expect(state).to_have_text("connecting", timeout=WAIT_MS)
    expect(reason).to_have_text("fetching a token")
    shot("2-connecting")
    expect(state).to_have_text("open", timeout=WAIT_MS)
    expect(states).to_have_text("connecting → open")
    expect(reason).to_have_text("connected")
    expect(by("connections")).to_have_text("1")
    shot("3-open")

    # A text turn: answered in audio (the Player schedules the chunks) with its transcript.
    by("text").fill("Hello from the test")
    by("send").click()
    expect(by("turns")).to_have_text("1", timeout=WAIT_MS)
    expect(by("user-line").last).to_have_text("Hello from the test")
    expect(by("model-line").last).to_contain_text('Emulator reply to "Hello from the test"')
    expect(by("model-line").last).to_contain_text("modalities=AUDIO")
    expect(by("chunks")).to_have_text("3")  # the emulator's 0.3 s tone, in 0.1 s chunks
    shot("4-text-turn")

    # A voice turn: the fake microphone streams into the session until "Done talking".
    by("talk").click()
    page.wait_for_function("window.voiceApp.sent >= 10", timeout=WAIT_MS)  # 0.4 s or more
    by("done").click()
    expect(by("turns")).to_have_text("2", timeout=WAIT_MS)
    heard = by("user-line").last
    expect(heard).to_have_text(re.compile(r"^\[\d+\.\d\d s of audio\]$"))
    expect(by("model-line").last).to_contain_text("Turn 2 of this conversation")
    expect(by("chunks")).to_have_text("6")
    sent = page.evaluate("window.voiceApp.sent")
    first = gemini_emulator.sessions[-1]
    audio = [m for m in first.messages if "audio" in m.get("realtimeInput", {})]
    assert len(audio) == sent  # every chunk the Microphone made reached the session
    assert audio[0]["realtimeInput"]["audio"]["mimeType"] == "audio/pcm;rate=16000"
    shot("5-voice-turn")

    # goAway: the page renews its token, resumes on a new socket, and the conversation goes on.
    gemini_emulator.delay_next(HOLD)  # the renewal's mint: long enough to see "resuming"
    # (30 s left: the page, not the emulator's deadline, closes the old socket.)
    assert gemini_emulator.go_away(time_left=30) == 1
    expect(state).to_have_text("resuming", timeout=WAIT_MS)
    expect(reason).to_have_text("the service sent goAway (time left 30s)")
    shot("6-resuming")
    expect(states).to_have_text("connecting → open → resuming → open", timeout=WAIT_MS)
    expect(state).to_have_text("open")
    expect(reason).to_contain_text("resumed after the service sent goAway")
    expect(by("connections")).to_have_text("2")
    by("text").fill("Still there?")
    by("send").click()
    expect(by("turns")).to_have_text("3", timeout=WAIT_MS)
    kept = by("model-line").last
    expect(kept).to_contain_text("Turn 3 of this conversation")
    expect(kept).to_contain_text('earlier turns: "Hello from the test", "[')
    shot("7-resumed")
    accepted = [s for s in gemini_emulator.sessions if s.accepted]
    assert [s.resumed for s in accepted] == [False, True]
    assert accepted[0].close_code == 1005  # closed by the page before resuming
    assert accepted[0].token_name != accepted[1].token_name  # a renewed token (uses=1)

    # Sign out: the session stays open until its next renewal, which the broker refuses.
    (cookie,) = page.context.cookies()
    by("signout").click()
    expect(by("user")).to_have_text("signed out", timeout=WAIT_MS)
    assert page.context.cookies() == []
    # The server forgot the session too: the old cookie, replayed, gets no token.
    replayed = _post(server + "token", {"Cookie": f"{cookie['name']}={cookie['value']}"})
    assert replayed == 401
    expect(state).to_have_text("open")
    assert gemini_emulator.go_away() == 1
    expect(state).to_have_text("failed", timeout=WAIT_MS)
    expect(reason).to_have_text("you are signed out: sign in to talk again")
    expect(states).to_have_text(
        "connecting → open → resuming → open → resuming → failed", timeout=WAIT_MS
    )
    expect(by("send")).to_be_disabled()
    shot("8-failed-after-sign-out")
    _until(lambda: accepted[1].close_code is not None, "the last socket to close")
    assert len([s for s in gemini_emulator.sessions if s.accepted]) == 2  # no third socket
    assert len(gemini_emulator.tokens) == 2


def test_react_hook_connects_and_closes_on_unmount(
    server: str, page: Any, gemini_emulator: Emulator, tmp_path: pathlib.Path
) -> None:
    from playwright.sync_api import expect

    def by(testid: str) -> Any:
        return page.get_by_test_id(testid)

    page.goto(server + "react.html")
    expect(by("react-state")).to_have_text("idle", timeout=WAIT_MS)
    by("react-signin").click()
    expect(by("react-user")).to_have_text("signed in as bob", timeout=WAIT_MS)

    by("react-connect").click()
    expect(by("react-state")).to_have_text("open", timeout=WAIT_MS)
    expect(by("react-log")).to_have_text("connecting → open")
    by("react-say").click()
    expect(by("react-turns")).to_have_text("1", timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "react-open.png"), full_page=True)

    by("react-unmount").click()
    expect(by("react-unmounted")).to_be_visible(timeout=WAIT_MS)
    expect(by("react-log")).to_have_text("connecting → open → closed", timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "react-closed.png"), full_page=True)
    (session,) = [s for s in gemini_emulator.sessions if s.accepted]
    _until(lambda: session.close_code is not None, "the hook's socket to close")
    # Closed by the page (the SDK's close() sends no status code: 1005), not dropped (1006).
    assert session.close_code == 1005
