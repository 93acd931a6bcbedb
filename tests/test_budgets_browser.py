"""Budgets and cut-offs in real headless Chromium: the served helper shows the budget, and a
renewal refused for a spent budget or a suspension ends the session ``failed`` with the
broker's reason on the page (tests/browser/page.js, as tests/test_browser.py serves it)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest

import gemini_tokens
from gemini_tokens.broker import AuditEvent, BrokerRequest, Caller, Denied, TokenBroker
from gemini_tokens.testing import Emulator
from tests.test_browser import (  # noqa: F401  (fixtures)
    POLICY,
    SECRET,
    Site,
    bundle,
    needs_chromium,
    page,
    page_server,
    shot,
    states_reach,
)

pytestmark = [pytest.mark.browser]


@attrs.define
class BudgetSite(Site):
    """The site, and its broker (to suspend a caller)."""

    broker: TokenBroker | None = None


#: A budget the first token (10 minutes) fits, with 2 minutes left for the next.
BUDGET = ["12/day"]


@pytest.fixture
async def site(gemini_emulator: Emulator, bundle: pathlib.Path) -> AsyncIterator[BudgetSite]:  # noqa: F811
    events: list[AuditEvent] = []

    async def authorize(request: BrokerRequest) -> Caller:
        scheme, _, user = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or user not in ("alice", "bob"):
            raise Denied(401, "sign in first")
        return Caller(id=user)

    client = gemini_tokens.AsyncClient(max_retries=0)
    broker = TokenBroker(
        authorize=authorize,
        policy=POLICY,
        renewal=True,
        secret=SECRET,
        audit=events.append,
        client=client,
        live_minutes=BUDGET,
    )
    try:
        async with page_server(bundle, broker) as url:
            yield BudgetSite(url, gemini_emulator, events, broker=broker)
    finally:
        await client.close()


SHOW_BUDGET = """async (user) => {
  const { TokenSource } = await import("/token/client.js");
  const source = new TokenSource("/token", { headers: { Authorization: `Bearer ${user}` } });
  const before = source.budget;
  await source.get();
  return { before: before === undefined ? "none" : before, after: source.budget };
}"""


@needs_chromium
async def test_the_served_helper_shows_the_budget(site: Site, page: Any) -> None:  # noqa: F811
    shown = await page.evaluate(SHOW_BUDGET, "bob")
    assert shown["before"] == "none"
    assert shown["after"]["remainingMinutes"] == 2
    assert shown["after"]["resetsAt"].endswith("Z")


@needs_chromium
async def test_a_spent_budget_ends_the_session_with_the_reason(
    site: Site,
    page: Any,  # noqa: F811
    tmp_path: pathlib.Path,
) -> None:
    assert await page.evaluate("connect('alice')") == "open"
    # The second token takes the 2 minutes left; the third renewal finds none.
    site.emu.go_away(time_left=5)
    await states_reach(page, "open", 2)
    site.emu.go_away(time_left=5)
    await states_reach(page, "failed")
    reason = await page.text_content("#reason") or ""
    assert reason.startswith("(no Live minutes left today (your budget of 12 minutes); more in")
    await page.wait_for_function("window.record.closes === 1")
    await shot(page, tmp_path / "budget.png")
    assert await page.evaluate("window.record.retries") == []  # final, not waited for
    assert site.outcomes() == [
        ("minted", "ok"),
        ("renewed", "ok"),
        ("limited", "budget_exhausted"),
    ]
    assert [e.charged_minutes for e in site.events] == [10, 2, None]


@needs_chromium
async def test_a_suspension_ends_the_session_with_the_reason(
    site: BudgetSite,
    page: Any,  # noqa: F811
    tmp_path: pathlib.Path,
) -> None:
    assert await page.evaluate("connect('alice')") == "open"
    assert site.broker is not None
    await site.broker.suspend("alice", reason="your account is under review")
    site.emu.go_away(time_left=5)
    await states_reach(page, "failed")
    assert await page.text_content("#reason") == (
        "(you may not start Live sessions: your account is under review)"
    )
    await page.wait_for_function("window.record.closes === 1")
    await shot(page, tmp_path / "suspended.png")
    assert site.outcomes() == [("minted", "ok"), ("denied", "suspended")]
    assert len(site.emu.tokens) == 1
