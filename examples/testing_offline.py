"""Testing your token endpoint offline: pytest tests against the bundled emulator.

Copy into your test suite as it is. It needs pytest and pytest-asyncio
(``pip install 'gemini-tokens[testing]'`` brings both) and no configuration: its async
tests carry ``@pytest.mark.asyncio``, so they run in pytest-asyncio's default (strict)
mode. The fixtures come with gemini-tokens.

The code under test is ``token_for_browser()``, your endpoint's logic; the tests check
the token it mints, open a Live session with it as a browser would, let it expire, make
the service flaky, and talk to the emulator from sync code and from the official SDK.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

import gemini_tokens
from gemini_tokens.testing import Emulator

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


# -- the code under test: your endpoint's logic ------------------------------------


async def token_for_browser() -> dict[str, Any]:
    """Mint a one-use token locked to MODEL and AUDIO (key and URL from the env)."""
    token = await gemini_tokens.acreate(
        uses=1,
        live_connect_constraints={
            "model": MODEL,
            "config": {"response_modalities": ["AUDIO"]},
        },
    )
    return token.to_dict()


# -- the tests ---------------------------------------------------------------------


Reply = tuple[dict[str, Any] | None, int | None]


async def open_session(url: str, setup: dict[str, Any]) -> Reply:
    """Open a Live session as a browser does: the first message, or the close code."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_json({"setup": setup})
        msg = await ws.receive(timeout=5)
        if msg.type is aiohttp.WSMsgType.BINARY:  # the service sends binary JSON frames
            return json.loads(msg.data), None
        return None, ws.close_code


@pytest.mark.asyncio
async def test_the_token_is_locked_to_audio(gemini_emulator: Emulator) -> None:
    # gemini_emulator: GEMINI_BASE_URL and GEMINI_API_KEY point at it during the test.
    payload = await token_for_browser()

    issued = gemini_emulator.token(payload["name"])  # what the service stored
    assert issued is not None
    assert issued.uses == 1
    assert issued.setup == {
        "model": f"models/{MODEL}",
        "generationConfig": {"responseModalities": ["AUDIO"]},
    }
    assert issued.field_mask is None  # no mask: the whole setup is locked


@pytest.mark.asyncio
async def test_a_browser_can_use_it_once(gemini_emulator: Emulator) -> None:
    payload = await token_for_browser()
    url = gemini_emulator.live_url(payload["name"])  # ...Constrained?access_token=...
    asks_for_text = {
        "model": "models/other",
        "generationConfig": {"responseModalities": ["TEXT"]},
    }

    first, _ = await open_session(url, asks_for_text)
    assert first is not None
    assert "setupComplete" in first
    effective = gemini_emulator.sessions[-1].setup
    assert effective is not None
    # The lock won:
    assert effective["generationConfig"]["responseModalities"] == ["AUDIO"]

    _, close_code = await open_session(url, asks_for_text)
    assert close_code == 1011  # "Token has been used too many times"


@pytest.mark.asyncio
async def test_the_token_expires(gemini_emulator: Emulator) -> None:
    payload = await token_for_browser()
    gemini_emulator.advance(minutes=31)  # no sleeping: the emulator's clock moves
    _, close_code = await open_session(
        gemini_emulator.live_url(payload["name"]), {"model": f"models/{MODEL}"}
    )
    assert close_code == 1008  # "Auth token has expired."


@pytest.fixture
def fast_retries() -> Iterator[None]:
    gemini_tokens.set_testing(True)  # backoff sleeps are instant; attempts unchanged
    yield
    gemini_tokens.set_testing(False)


@pytest.mark.asyncio
@pytest.mark.usefixtures("fast_retries")
async def test_a_flaky_service(gemini_emulator: Emulator) -> None:
    gemini_emulator.fail_next(503, times=2)  # the next two fail, the third works
    await token_for_browser()
    assert [r.status for r in gemini_emulator.requests] == [503, 503, 200]

    gemini_emulator.fail_next(429, retry_after=60)  # longer than the client will wait
    with pytest.raises(gemini_tokens.RateLimitError) as info:
        await token_for_browser()
    assert info.value.retry_after == 60  # pass it on to your caller as Retry-After


def test_sync_code(gemini_emulator: Emulator) -> None:
    # The same fixture serves sync tests (Flask, Django, scripts): it has a thread.
    token = gemini_tokens.create(uses=2)
    assert gemini_emulator.token(token.name) is not None


@pytest.mark.asyncio
async def test_sync_code_inside_an_async_test(gemini_emulator: Emulator) -> None:
    # A blocking call on the test's loop (a sync helper your code calls) works too.
    token = gemini_tokens.create(uses=1)
    assert gemini_emulator.token(token.name) is not None


@pytest.mark.filterwarnings("ignore:The SDK's")  # the SDK flags tokens as experimental
@pytest.mark.filterwarnings("ignore:Inheritance class:DeprecationWarning")
@pytest.mark.asyncio
async def test_with_the_official_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    genai = pytest.importorskip(
        "google.genai", reason="needs google-genai: pip install google-genai"
    )
    async with Emulator(tls=True) as emu:  # the SDK opens Live sockets with wss:// only
        monkeypatch.setenv("SSL_CERT_FILE", emu.ca_file)  # trust the throwaway CA
        options = {"base_url": emu.base_url, "api_version": "v1alpha"}
        client = genai.Client(api_key=emu.api_key, http_options=options)
        token = await client.aio.auth_tokens.create(config={"uses": 1})
        await client.aio.aclose()

        client = genai.Client(api_key=token.name, http_options=options)
        async with client.aio.live.connect(
            model=MODEL, config={"response_modalities": ["TEXT"]}
        ) as session:
            await session.send_client_content(
                turns={"role": "user", "parts": [{"text": "Hi"}]}, turn_complete=True
            )
            replies = [msg.text async for msg in session.receive() if msg.text]
        await client.aio.aclose()
    settings = f"model=models/{MODEL}, modalities=TEXT, temperature=unset"
    assert replies == [f'Emulator reply to "Hi" with {settings}.']
