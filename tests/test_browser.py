"""The browser client (examples/browser/) in real headless Chromium, against the emulator.

The aiohttp recipe serves the page and mints tokens; the page opens the Live WebSocket on the
emulator with ``access_token=``. Needs Debian's chromium (``apt-get install chromium``) and the
``playwright`` Python package (it drives the system Chromium; no browser download).
"""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gemini_tokens.testing import Emulator

CHROMIUM = (
    os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium on PATH: install it with `apt-get install chromium` "
        "(.ci/run does) or set CHROMIUM=/path/to/chromium",
    ),
]


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


async def test_browser_connects_replies_and_is_refused_a_second_time(
    app_url: str, gemini_emulator: Emulator, tmp_path: pathlib.Path
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
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
