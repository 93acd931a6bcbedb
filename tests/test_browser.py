"""In real headless Chromium, against the emulator: the example page and the live-session helper.

1. The browser client in examples/browser/, served by the aiohttp recipe: the page opens the
   Live WebSocket on the emulator with ``access_token=``.
2. The helper gemini_tokens/broker/static/gemini-tokens.js (#15; the build of the npm package
   in js/, copied by tools/build_js.py): tests/browser/page.js is
   bundled by esbuild with the real ``@google/genai`` from npm, served by a broker app (the
   aiohttp adapter, renewal on) with the emulator upstream, and driven through Playwright:
   connect, a text turn, a ``goAway`` that forces a renewal and a resume that keeps the
   conversation, the cap stopping a renewal, a revoked sign-in (401) stopping retries, and a
   503 from the broker retried after ``Retry-After``. A screenshot of each state goes to the
   test's tmp_path.
3. The npm package's unit tests (js/test/unit/rules.mjs) on the shipped helper, in Node
   (``node --test tests/browser/``).

Needs Debian's chromium (``apt-get install chromium``), the ``playwright`` Python package (it
drives the system Chromium; no browser download), Node.js and ``npm ci`` in the checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import pathlib
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web

import gemini_tokens
from gemini_tokens.broker import (
    AuditEvent,
    BrokerRequest,
    Caller,
    Denied,
    Policy,
    TokenBroker,
    _session,
)
from gemini_tokens.testing import Emulator

from .chromium import CHROMIUM, CHROMIUM_ARGS, NO_CHROMIUM

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE_DIR = ROOT / "tests" / "browser"
NODE = shutil.which("node")
ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"
GENAI = ROOT / "node_modules" / "@google" / "genai" / "package.json"
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
NO_NODE = "needs Node.js (apt-get install nodejs npm)"
#: The npm package's rules, which tests/browser/gemini-tokens.test.mjs runs on the helper.
RULES = ROOT / "js" / "test" / "unit" / "rules.mjs"
NO_MODULES = (
    "needs @google/genai and esbuild in node_modules/: apt-get install nodejs npm, "
    "then `npm ci` in the checkout"
)

pytestmark = [pytest.mark.browser]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
needs_node = pytest.mark.skipif(NODE is None, reason=NO_NODE)


@pytest.fixture
async def app_url(gemini_emulator: Emulator) -> AsyncIterator[str]:
    from examples import aiohttp_app

    runner = web.AppRunner(aiohttp_app.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@needs_chromium
async def test_browser_connects_replies_and_is_refused_a_second_time(
    app_url: str, gemini_emulator: Emulator, tmp_path: pathlib.Path
) -> None:
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="needs playwright: pip install -e '.[test]'"
    )
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(app_url)
            await page.click("#connect")
            await page.wait_for_function(
                "document.getElementById('reply').textContent.length > 0", timeout=20_000
            )
            assert await page.text_content("#status") == "connected"
            reply = await page.text_content("#reply") or ""
            # The emulator's reply states the effective (token-locked) setup.
            assert "gemini-2.5-flash-native-audio-preview-12-2025" in reply
            assert "TEXT" in reply

            await page.click("#again")
            await page.wait_for_function(
                "document.getElementById('second').textContent.startsWith('refused')",
                timeout=20_000,
            )
            second = await page.text_content("#second") or ""
            assert "1011" in second
            assert "used too many times" in second
            await page.screenshot(path=str(tmp_path / "browser.png"), full_page=True)
        finally:
            await browser.close()
    assert (tmp_path / "browser.png").stat().st_size > 0
    # The emulator saw one accepted session and one refused, both with the same token.
    accepted = [s for s in gemini_emulator.sessions if s.accepted]
    refused = [s for s in gemini_emulator.sessions if not s.accepted]
    assert len(accepted) == 1
    assert len(refused) == 1
    assert refused[0].close_code == 1011
    assert accepted[0].token_name == refused[0].token_name


# --- the live-session helper in Chromium ---------------------------------------------------

SECRET = "browser-test-secret-" + "z" * 32
POLICY = Policy(
    model=MODEL,
    config={"response_modalities": ["TEXT"]},
    lock_additional_fields=[],  # the client's sessionResumption (its handle) is its own
    uses=1,
    expire_minutes=10,
    new_session_expire_minutes=1,
    max_session_minutes=60,
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """tests/browser/ bundled by esbuild: the page, the helper and the real @google/genai."""
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    if NODE is None:
        pytest.skip(NO_NODE)
    if not ESBUILD.exists() or not GENAI.exists():
        pytest.skip(NO_MODULES)
    out = tmp_path_factory.mktemp("bundle")
    subprocess.run(
        [
            str(ESBUILD),
            "tests/browser/page.js",
            "--bundle",
            "--format=esm",
            "--platform=browser",
            "--external:/token/client.js",  # imported from the broker at run time
            f"--outfile={out / 'page.js'}",
            "--log-level=warning",
        ],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    shutil.copy(PAGE_DIR / "index.html", out / "index.html")
    return out


@attrs.define
class Site:
    """The broker app the page is served from, and what the test can change or read."""

    url: str
    emu: Emulator
    events: list[AuditEvent]
    revoked: set[str] = attrs.field(factory=set)

    def outcomes(self) -> list[tuple[str, str]]:
        return [(e.outcome, e.reason) for e in self.events]


@contextlib.asynccontextmanager
async def page_server(
    bundle: pathlib.Path, broker: TokenBroker | None = None
) -> AsyncIterator[str]:
    """The test page (index.html, page.js) on 127.0.0.1, with ``broker`` at /token if
    given; yields the page's URL."""
    from gemini_tokens.broker.aiohttp import add_routes

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(bundle / "index.html")

    async def script(request: web.Request) -> web.FileResponse:
        return web.FileResponse(bundle / "page.js", headers={"Content-Type": "text/javascript"})

    app = web.Application()
    if broker is not None:
        add_routes(app, broker, path="/token")
    app.router.add_get("/", index)
    app.router.add_get("/page.js", script)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def chromium_page(url: str) -> AsyncIterator[Any]:
    """A headless Chromium tab on ``url`` once the page's ``connect`` is defined; no page
    error may have happened by the end."""
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="needs playwright: pip install -e '.[test]'"
    )
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = await browser.new_page(viewport={"width": 1000, "height": 900})
            problems: list[str] = []
            tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            await tab.goto(url)
            await tab.wait_for_function("typeof window.connect === 'function'")
            yield tab
            assert problems == []
        finally:
            await browser.close()


@pytest.fixture
async def site(gemini_emulator: Emulator, bundle: pathlib.Path) -> AsyncIterator[Site]:
    events: list[AuditEvent] = []
    revoked: set[str] = set()

    async def authorize(request: BrokerRequest) -> Caller:
        scheme, _, user = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or user not in ("alice", "bob"):
            raise Denied(401, "sign in first")
        if user in revoked:
            raise Denied(401, "your sign-in was revoked; sign in again")
        return Caller(id=user)

    # No retries in the broker's own client: an upstream 503 becomes the broker's 503 at once.
    client = gemini_tokens.AsyncClient(max_retries=0)
    broker = TokenBroker(
        authorize=authorize,
        policy=POLICY,
        renewal=True,
        secret=SECRET,
        audit=events.append,
        client=client,
    )
    try:
        async with page_server(bundle, broker) as url:
            yield Site(url, gemini_emulator, events, revoked)
    finally:
        await client.close()


@pytest.fixture
async def page(site: Site) -> AsyncIterator[Any]:
    async with chromium_page(site.url) as tab:
        yield tab


async def states_reach(page: Any, state: str, count: int = 1, timeout: int = 20_000) -> None:
    """Wait until ``onstatechange`` has reported ``state`` ``count`` times."""
    await page.wait_for_function(
        "([s, n]) => window.record.states.filter(([x]) => x === s).length >= n",
        arg=[state, count],
        timeout=timeout,
    )


async def replies(page: Any, count: int) -> list[str]:
    await page.wait_for_function(
        "n => window.record.replies.length >= n", arg=count, timeout=20_000
    )
    got: list[str] = await page.evaluate("window.record.replies")
    return got


async def shot(page: Any, path: pathlib.Path) -> None:
    data = await page.screenshot(path=str(path), full_page=True)
    assert len(data) > 0


@needs_chromium
async def test_a_session_outlasts_goaway_and_keeps_the_conversation(
    site: Site, page: Any, tmp_path: pathlib.Path
) -> None:
    assert await page.evaluate("connect('alice')") == "open"
    assert await page.text_content("#state") == "open"
    await page.evaluate("say('My name is Ada.')")
    first = await replies(page, 1)
    assert first[0].startswith('Emulator reply to "My name is Ada."')
    assert "modalities=TEXT" in first[0]
    await shot(page, tmp_path / "1-open.png")

    # The service warns; the helper renews, closes the old socket, resumes with the handle.
    assert site.emu.go_away(time_left=5) == 1
    await states_reach(page, "resuming")
    await states_reach(page, "open", 2)
    await page.evaluate("say('What is my name?')")
    second = (await replies(page, 2))[1]
    assert second.startswith('Emulator reply to "What is my name?"')
    # The resumed session kept the conversation: the earlier turn is in its history.
    assert 'Turn 2 of this conversation; earlier turns: "My name is Ada."' in second
    await shot(page, tmp_path / "2-resumed.png")

    states = await page.evaluate("window.record.states")
    assert [s for s, _ in states] == ["connecting", "connecting", "open", "resuming", "open"]
    assert states[3][1].startswith("the service sent goAway")
    assert site.outcomes() == [("minted", "ok"), ("renewed", "ok")]
    sessions = [s for s in site.emu.sessions if s.accepted]
    assert len(sessions) == 2
    old, new = sessions
    assert not old.resumed
    assert new.resumed
    # The helper closed the old socket (the SDK's close has no code: 1005) before the
    # emulator's goAway deadline would have (1011), and resumed on the renewed token.
    assert old.close_code == 1005
    assert old.token_name != new.token_name
    renewed = site.emu.token(new.token_name or "")
    assert renewed is not None
    assert renewed.uses == 1
    # The helper the broker serves at /token/client.js is the same module.
    exports = await page.evaluate("servedHelper()")
    assert {"TokenSource", "connectLive", "TokenError"} <= set(exports)

    await page.evaluate("hangUp()")
    await states_reach(page, "closed")
    await page.wait_for_function("window.record.closes === 1")
    await shot(page, tmp_path / "3-closed.png")


@needs_chromium
async def test_the_cap_stops_a_renewal_with_the_reason_on_the_page(
    site: Site, page: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await page.evaluate("connect('alice')") == "open"
    # An hour later on the broker's clock: the conversation is at its 60-minute cap.
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=61)
    monkeypatch.setattr(_session, "_utcnow", lambda: later)
    site.emu.go_away(time_left=5)
    await states_reach(page, "failed")
    reason = "this conversation reached its limit of 60 minutes; start a new one"
    assert await page.text_content("#state") == "failed"
    assert await page.text_content("#reason") == f"({reason})"
    await page.wait_for_function("window.record.closes === 1")
    await shot(page, tmp_path / "cap.png")
    assert site.outcomes() == [("minted", "ok"), ("denied", "session_cap")]
    assert len([s for s in site.emu.sessions if s.accepted]) == 1


@needs_chromium
async def test_a_revoked_sign_in_stops_retries(
    site: Site, page: Any, tmp_path: pathlib.Path
) -> None:
    assert await page.evaluate("connect('alice')") == "open"
    site.revoked.add("alice")
    site.emu.go_away(time_left=5)
    await states_reach(page, "failed")
    assert await page.text_content("#reason") == "(your sign-in was revoked; sign in again)"
    await shot(page, tmp_path / "revoked.png")
    await asyncio.sleep(1.5)  # time for any (wrong) retry to arrive
    assert site.outcomes() == [("minted", "ok"), ("denied", "unauthenticated")]
    assert await page.evaluate("window.record.retries") == []
    # A user who never signed in: connectLive rejects with the broker's message, one request.
    assert await page.evaluate("connect('mallory')") == "error: sign in first"
    assert await page.evaluate("window.record.error.status") == 401
    assert site.outcomes()[-1] == ("denied", "unauthenticated")
    assert len(site.events) == 3


@needs_chromium
async def test_a_503_from_the_broker_is_retried_after_retry_after(
    site: Site, page: Any, tmp_path: pathlib.Path
) -> None:
    site.emu.fail_next(503, retry_after=2)  # the token service is down: the broker says 503
    connecting = asyncio.ensure_future(page.evaluate("connect('alice')"))
    await page.wait_for_function("window.record.retries.length === 1", timeout=20_000)
    await shot(page, tmp_path / "busy.png")
    assert "broker busy (503" in (await page.text_content("#notice") or "")
    assert await connecting == "open"
    await shot(page, tmp_path / "after-busy.png")
    retry = (await page.evaluate("window.record.retries"))[0]
    assert retry["status"] == 503
    assert 2000 <= retry["delayMs"] <= 2400  # Retry-After: 2, plus at most 20 % jitter
    assert site.outcomes() == [("upstream_error", "upstream_down"), ("minted", "ok")]
    waited = (site.events[1].time - site.events[0].time).total_seconds()
    assert waited >= 2.0  # not sooner than the broker asked


@needs_node
@pytest.mark.skipif(not RULES.exists(), reason="needs js/ (a checkout, not an sdist)")
def test_the_helper_unit_tests_pass_in_node() -> None:
    done = subprocess.run(
        [str(NODE), "--test", "tests/browser/gemini-tokens.test.mjs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout
    passed = re.search(r"^# pass (\d+)$", done.stdout, re.M)
    assert passed is not None
    assert int(passed.group(1)) >= 33  # all of js/test/unit/rules.mjs ran
