"""The agent desktop and the wallboard in real headless Chromium (Debian's), against the served app and demo PBX."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import select

from crm_core.calls.events import CallEnded
from crm_core.calls.models import CallLog
from tests.desktop.live import PASSWORD, XSS_NAME, LiveCenter, start_center

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = os.environ.get("CRM_SCREENSHOTS")  # set to docs/screenshots to refresh the README's pictures


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[LiveCenter]:
    live = await start_center(tmp_path, time_scale=0.05)
    try:
        yield live
    finally:
        await live.stop()


async def sign_in(browser: Browser, center: LiveCenter, username: str, page_path: str) -> Page:
    context = await browser.new_context(viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: page.dialogs.append(dialog.message))  # type: ignore[attr-defined]
    await page.goto(f"{center.base_url}/login")
    await page.fill('input[name="username"]', username)
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('button[type="submit"]')
    await page.goto(f"{center.base_url}{page_path}")
    return page


async def test_agent_pop_call_states_and_wrap_up(browser: Browser, center: LiveCenter) -> None:
    page = await sign_in(browser, center, "agent1001", "/desktop")
    await expect(page.locator("#desktop-message")).to_have_text("Connected.")
    linkedid = await center.pbx.place_inbound_call(
        "+15551230001",
        "Alice Example",
        "support",
        agent="1001",
        answer_after_s=40,
        talk_s=60,
        crm_vars={"CRM_PATH": "welcome>support", "CRM_LANGUAGE": "en"},
    )
    card = page.locator(f'article.pop[data-linkedid="{linkedid}"]')
    await expect(card.locator(".pop-title")).to_contain_text("Alice Example")
    await expect(card.locator(".call-state")).to_have_text("ringing")
    await expect(card).to_contain_text("Router keeps rebooting")
    await expect(card).to_contain_text("VIP gold")
    await expect(card.locator(".pop-ivr")).to_contain_text("welcome>support")
    await expect(card.locator(".call-state")).to_have_text("up", timeout=10_000)
    if SHOTS:
        await page.screenshot(path=f"{SHOTS}/agent-pop.png")
    await expect(card.locator(".call-state")).to_have_text("wrap-up", timeout=15_000)
    await card.locator('select[name="disposition"]').select_option("resolved")
    await card.locator('textarea[name="notes"]').fill("Rebooted the router together")
    await card.locator(".wrapup button").click()
    await expect(card.locator(".pop-message")).to_have_text("Done.")
    async with center.runtime.sessions() as session:
        call = await session.scalar(select(CallLog).where(CallLog.linkedid == linkedid))
    assert call is not None and call.disposition_code == "resolved" and call.notes == "Rebooted the router together"
    assert call.wrapped_up_by == "1001"


async def test_another_agent_never_sees_the_pop(browser: Browser, center: LiveCenter) -> None:
    mine = await sign_in(browser, center, "agent1001", "/desktop")
    theirs = await sign_in(browser, center, "agent2001", "/desktop")
    for page in (mine, theirs):
        await expect(page.locator("#desktop-message")).to_have_text("Connected.")
    linkedid = await center.pbx.place_inbound_call(
        "+15551230002", "Bob Example", "support", agent="1001", answer_after_s=20, talk_s=20
    )
    await expect(mine.locator(f'article.pop[data-linkedid="{linkedid}"] .pop-title')).to_contain_text("Bob Example")
    await expect(mine.locator(f'article.pop[data-linkedid="{linkedid}"] .call-state')).to_have_text(
        "up", timeout=10_000
    )
    assert await theirs.locator("article.pop").count() == 0
    await expect(theirs.locator("#no-calls")).to_be_visible()


async def test_a_customer_name_with_markup_is_shown_as_text(browser: Browser, center: LiveCenter) -> None:
    page = await sign_in(browser, center, "agent1001", "/desktop")
    await expect(page.locator("#desktop-message")).to_have_text("Connected.")
    linkedid = await center.pbx.place_inbound_call(
        "+15551230066", XSS_NAME, "support", agent="1001", answer_after_s=20, talk_s=20
    )
    card = page.locator(f'article.pop[data-linkedid="{linkedid}"]')
    await expect(card.locator(".pop-title")).to_have_text(XSS_NAME)
    assert await card.locator("img").count() == 0
    await page.goto(f"{center.base_url}/customers/{center.customers[XSS_NAME]}")
    await expect(page.locator("h1")).to_contain_text(XSS_NAME)
    assert await page.locator("main img").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]


async def test_supervisor_sees_queue_counters_change(browser: Browser, center: LiveCenter) -> None:
    page = await sign_in(browser, center, "boss", "/wallboard")
    sales = page.locator('article.tile[data-queue="sales"]')
    await expect(sales.locator(".figure.waiting .value")).to_have_text("0")
    await expect(sales.locator(".figure.answered .value")).to_have_text("0")
    await center.pbx.place_inbound_call("+15551230002", "Bob Example", "sales", answer_after_s=60, talk_s=20)
    await expect(sales.locator(".figure.waiting .value")).to_have_text("1", timeout=10_000)
    await expect(page.locator('tr[data-agent="2001"], tr[data-agent="2002"]').first).to_be_visible()
    if SHOTS:
        await page.screenshot(path=f"{SHOTS}/wallboard.png")
    await expect(sales.locator(".figure.answered .value")).to_have_text("1", timeout=15_000)
    await expect(sales.locator(".figure.waiting .value")).to_have_text("0")


async def test_wallboard_today_from_the_database_callers_and_log_in_again(browser: Browser, center: LiveCenter) -> None:
    from datetime import UTC, datetime

    from crm_core.calls.models import CallLeg

    async with center.runtime.unit_of_work() as session:
        for i in range(3):  # before a restart: the bridge has forgotten them, the database has not
            call = CallLog(
                linkedid=f"earlier.{i}",
                direction="inbound",
                queue="support",
                agent="1002",
                outcome="answered" if i else "abandoned",
                offered_at=datetime.now(UTC),
            )
            call.legs = [
                CallLeg(agent="1002", channel=f"Local/1002@agents-e{i};1", answered_at=datetime.now(UTC) if i else None)
            ]
            session.add(call)
    page = await sign_in(browser, center, "boss", "/wallboard")
    row = page.locator('tr[data-agent="1002"]')
    await expect(row.locator(".calls-today")).to_have_text("2")
    await expect(page.locator('article.tile[data-queue="support"] .missed')).to_have_text("1 missed to call back")
    await expect(row).to_contain_text("Agent1002")
    linkedid = await center.pbx.place_inbound_call(
        "+15551230002", "Bob Example", "support", agent="1002", answer_after_s=10, talk_s=400
    )
    await expect(row.locator(".caller")).to_have_text("Bob Example", timeout=10_000)
    assert linkedid not in await row.inner_text()
    await row.locator("button", has_text="Log out of support").click()
    await expect(row.locator("button", has_text="Log in to support")).to_be_visible(timeout=10_000)
    await row.locator("button", has_text="Log in to support").click()
    await expect(page.locator("#wallboard-message")).to_have_text("Done.")
    await expect(row.locator("button", has_text="Log out of support")).to_be_visible(timeout=10_000)
    await expect(page.locator("#wallboard-message")).to_have_text("Done.")


async def test_hold_and_resume_from_the_desktop_with_the_state_shown(browser: Browser, center: LiveCenter) -> None:
    page = await sign_in(browser, center, "agent1001", "/desktop")
    await expect(page.locator("#desktop-message")).to_have_text("Connected.")
    linkedid = await center.pbx.place_inbound_call(
        "+15551230001", "Alice Example", "support", agent="1001", answer_after_s=10, talk_s=400
    )
    card = page.locator(f'article.pop[data-linkedid="{linkedid}"]')
    await expect(card.locator(".hold")).to_be_hidden()  # nothing to hold while it rings
    await expect(card.locator(".call-state")).to_have_text("up", timeout=10_000)
    await expect(card.locator(".resume")).to_be_hidden()
    await card.locator(".hold").click()
    await expect(card.locator(".call-state")).to_have_text("held")
    await expect(card.locator(".resume")).to_be_visible()
    await expect(card.locator(".hold")).to_be_hidden()
    assert [a["Action"] for a in center.pbx.actions_received if a.get("Action") in ("Park", "Originate")] == ["Park"]
    await card.locator(".resume").click()
    await expect(card.locator(".call-state")).to_have_text("up")
    await expect(card.locator(".hold")).to_be_visible()
    ended: asyncio.Future[CallEnded] = asyncio.get_running_loop().create_future()

    def call_ended(event: CallEnded) -> None:
        if event.linkedid == linkedid and not ended.done():
            ended.set_result(event)

    center.runtime.bus.subscribe(CallEnded, call_ended)
    await card.locator(".hangup").click()
    await expect(card.locator(".call-state")).to_have_text("wrap-up")
    # the agent's leg ends first (wrap-up), the call a moment later: its log is written from CallEnded
    await asyncio.wait_for(ended, 10)
    assert center.writer is not None
    await center.writer.drain()
    async with center.runtime.sessions() as session:
        logs = (await session.scalars(select(CallLog).where(CallLog.linkedid == linkedid))).all()
    assert len(logs) == 1 and logs[0].hold_seconds > 0 and logs[0].agent == "1001"


async def test_a_control_the_pbx_cannot_carry_out_is_absent(browser: Browser, tmp_path: Path) -> None:
    # a least-privilege AMI user without the `originate` write class: no hold (resume needs an Originate)
    center = await start_center(tmp_path, pbx_options={"write_classes": frozenset({"call", "agent", "system"})})
    try:
        page = await sign_in(browser, center, "agent1001", "/desktop")
        await expect(page.locator("#desktop-message")).to_have_text("Connected.")
        linkedid = await center.pbx.place_inbound_call(
            "+15551230001", "Alice Example", "support", agent="1001", answer_after_s=10, talk_s=400
        )
        card = page.locator(f'article.pop[data-linkedid="{linkedid}"]')
        await expect(card.locator(".call-state")).to_have_text("up", timeout=10_000)
        await expect(card.locator(".hangup")).to_be_visible()
        await expect(card.locator(".blind")).to_be_visible()
        assert await card.locator(".hold, .resume").count() == 0
    finally:
        await center.stop()
