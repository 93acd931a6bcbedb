"""The browser helper (``connectLive``) in real headless Chromium against a
``gemini-tokens serve`` process: a ``goAway`` renewed through the service.

The page (tests/browser/, bundled by esbuild with the real ``@google/genai``; see
tests/test_browser.py) is served from an origin of its own; the token endpoint is the serve
process's, on another origin that allows the page's (CORS as in production). The serve
process mints on an in-process emulator (``GEMINI_BASE_URL``), whose ``go_away()`` makes the
helper renew the conversation's token through the service and resume on it.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import jwt as pyjwt
import pytest

from gemini_tokens.testing import Emulator

from . import test_browser
from .jwks_server import AUDIENCE, ISSUER, IdentityProvider
from .test_browser import (
    MODEL,
    chromium_page,
    needs_chromium,
    page_server,
    replies,
    states_reach,
)
from .test_serve import Serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

bundle = test_browser.bundle  # the fixture: the page, the helper and @google/genai

HMAC = "serve-browser-jwt-secret-" + "h" * 32
BROKER_SECRET = "serve-browser-broker-secret-" + "b" * 32


def signed_in(user: str) -> str:
    """A JWT for ``user``, as the page's sign-in would have it."""
    return pyjwt.encode(IdentityProvider().claims(user), HMAC, algorithm="HS256")


def broker_toml(page_origin: str, audit: pathlib.Path) -> str:
    return f"""
[server]
host = "127.0.0.1"
port = 0
allowed_origins = [{json.dumps(page_origin)}]
shutdown_timeout = 5

[upstream]
max_retries = 0

[auth.jwt]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["HS256"]
hmac_secret = "{HMAC}"

[policy]
model = "{MODEL}"
config = {{ response_modalities = ["TEXT"] }}
lock_additional_fields = []  # the client's sessionResumption (its handle) is its own
uses = 1
expire_minutes = 10
new_session_expire_minutes = 1
max_session_minutes = 60

[renewal]
enabled = true
rate_limits = ["30/hour"]

[audit]
sink = "jsonl"
path = "{audit}"
"""


@attrs.define
class Service:
    """The page's origin, the serve process and the emulator it mints on."""

    page_url: str
    serve: Serve
    emu: Emulator
    audit: pathlib.Path

    def outcomes(self) -> list[tuple[str, str]]:
        lines = self.audit.read_text().splitlines()
        return [(event["outcome"], event["reason"]) for event in map(json.loads, lines)]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator.running() as emu:  # in this process, on a thread of its own
        yield emu


@pytest.fixture
async def service(
    emulator: Emulator, bundle: pathlib.Path, tmp_path: pathlib.Path
) -> AsyncIterator[Service]:
    async with page_server(bundle) as page_url:
        page_origin = page_url.rstrip("/")
        audit = tmp_path / "audit.jsonl"
        serve = Serve(
            tmp_path,
            broker_toml(page_origin, audit),
            emulator,
            GEMINI_TOKENS_BROKER_SECRET=BROKER_SECRET,
        )
        try:
            yield Service(page_origin + "/", serve, emulator, audit)
        finally:
            assert serve.stop() == 0


@pytest.fixture
async def page(service: Service) -> AsyncIterator[Any]:
    async with chromium_page(service.page_url) as tab:
        yield tab


@needs_chromium
async def test_a_goaway_is_renewed_through_the_service(
    service: Service, page: Any, tmp_path: pathlib.Path
) -> None:
    connect = "([jwt, url]) => connect(jwt, url)"
    assert await page.evaluate(connect, [signed_in("alice"), service.serve.url]) == "open"
    await page.evaluate("say('My name is Ada.')")
    first = await replies(page, 1)
    assert first[0].startswith('Emulator reply to "My name is Ada."')

    # The Live service warns; the helper renews through `serve` and resumes on a new socket.
    assert service.emu.go_away(time_left=5) == 1
    await states_reach(page, "resuming")
    await states_reach(page, "open", 2)
    await page.evaluate("say('What is my name?')")
    second = (await replies(page, 2))[1]
    assert 'Turn 2 of this conversation; earlier turns: "My name is Ada."' in second
    await page.screenshot(path=str(tmp_path / "resumed-through-serve.png"), full_page=True)

    states = await page.evaluate("window.record.states")
    assert [s for s, _ in states] == ["connecting", "connecting", "open", "resuming", "open"]
    assert states[3][1].startswith("the service sent goAway")
    assert service.outcomes() == [("minted", "ok"), ("renewed", "ok")]
    sessions = [s for s in service.emu.sessions if s.accepted]
    assert len(sessions) == 2
    old, new = sessions
    assert (old.resumed, new.resumed) == (False, True)
    assert old.token_name != new.token_name
    renewed = service.emu.token(new.token_name or "")
    assert renewed is not None
    assert renewed.uses == 1
    await page.evaluate("hangUp()")
    await states_reach(page, "closed")
