"""The agent workspace in real headless Chromium, with real data: a second call rings while the agent talks on a
first, the wrap-up typed so far survives a reload, a customer is searched from the top bar, edited and dialled from
the 360 page, and a pooled customer returns to the pool after its protection period and another agent claims it."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from crm_core.audit.models import AuditEntry
from crm_core.calls.models import CallLog
from crm_core.customers.models import Customer
from crm_core.customers.scheduled import PoolReturner
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.db import utcnow
from crm_core.users.service import SYSTEM
from tests.browser.test_desktop_browser import SHOTS, browser, center, sign_in  # noqa: F401  (fixtures)
from tests.desktop.live import LiveCenter

pytestmark = pytest.mark.browser


async def test_second_call_rings_while_talking_and_wrap_up_survives_a_reload(
    browser: Browser,  # noqa: F811
    center: LiveCenter,  # noqa: F811
) -> None:
    page = await sign_in(browser, center, "agent1001", "/desktop")
    await expect(page.locator("#desktop-message")).to_have_text("Connected.")
    first = await center.pbx.place_inbound_call(
        "+15551230001", "Alice Example", "support", agent="1001", answer_after_s=10, talk_s=160
    )
    first_card = page.locator(f'article.pop[data-linkedid="{first}"]')
    await expect(first_card.locator(".call-state")).to_have_text("up", timeout=10_000)
    second = await center.pbx.place_inbound_call(
        "+15551230002", "Bob Example", "support", agent="1001", answer_after_s=400, talk_s=20
    )
    second_item = page.locator(f'#interaction-list button[data-linkedid="{second}"]')
    await expect(second_item.locator(".what")).to_have_text("ringing")
    await expect(second_item.locator(".who")).to_have_text("Bob Example")
    # the agent keeps working on the call it talks on: the ringing one waits in the list
    await expect(first_card).to_be_visible()
    await expect(page.locator(f'article.pop[data-linkedid="{second}"]')).to_be_hidden()
    await expect(first_card.locator(".side")).to_contain_text("Router keeps rebooting")
    if SHOTS:
        await page.screenshot(path=f"{SHOTS}/workspace.png")
    await second_item.click()
    await expect(page.locator(f'article.pop[data-linkedid="{second}"] .pop-title')).to_contain_text("Bob Example")
    await page.keyboard.press("Alt+ArrowDown")
    await expect(first_card).to_be_visible()

    await expect(first_card.locator(".call-state")).to_have_text("wrap-up", timeout=20_000)
    async with page.expect_response(lambda r: "wrap-up-draft" in r.url and r.status == 204):
        await first_card.locator('select[name="disposition"]').select_option("callback")
    async with page.expect_response(lambda r: "wrap-up-draft" in r.url and r.status == 204):
        await first_card.locator('textarea[name="notes"]').fill("Call her back after 5 pm")
    await page.reload()
    kept = page.locator(f'article.pop[data-linkedid="{first}"]')
    await expect(kept.locator('select[name="disposition"]')).to_have_value("callback")
    await expect(kept.locator('textarea[name="notes"]')).to_have_value("Call her back after 5 pm")
    await expect(page.locator(f'#interaction-list button[data-linkedid="{first}"] .what')).to_have_text("wrap-up")
    await expect(page.locator("#desktop-message")).to_have_text("Connected.")
    await kept.locator('select[name="disposition"]').select_option("resolved")
    await page.keyboard.press("Alt+S")
    await expect(kept.locator(".pop-message")).to_have_text("Done.")
    async with center.runtime.sessions() as session:
        call = await session.scalar(select(CallLog).where(CallLog.linkedid == first))
    assert call is not None and call.disposition_code == "resolved" and call.notes == "Call her back after 5 pm"
    await page.reload()
    await expect(page.locator(f'article.pop[data-linkedid="{first}"]')).to_have_count(0)


async def test_search_edit_and_dial_from_the_360_page(browser: Browser, center: LiveCenter) -> None:  # noqa: F811
    page = await sign_in(browser, center, "agent1001", "/desktop")
    await page.fill('header form.search input[name="q"]', "alic")
    await page.press('header form.search input[name="q"]', "Enter")
    await expect(page.locator("table.customer-list")).to_contain_text("Alice Example")
    await page.click("table.customer-list a >> text=Alice Example")
    await expect(page.locator("h1")).to_contain_text("Alice Example")
    await page.click("details.edit summary")
    await page.fill('#edit-customer input[name="city"]', "Springfield")
    await page.fill('#edit-customer textarea[name="emails"]', "alice@example.org\nalice.work@example.org")
    await page.fill('#edit-customer input[name="tags"]', "vip, router")
    await page.fill('#edit-customer textarea[name="custom"]', "contract: C-1001")
    await page.click("#edit-customer button")
    await expect(page.locator("dl.facts")).to_contain_text("Springfield")  # the page reloaded with what was saved
    await expect(page.locator("dl.facts")).to_contain_text("C-1001")
    if SHOTS:
        await page.screenshot(path=f"{SHOTS}/customer-360.png", full_page=True)
    await page.click("details.edit summary")
    await page.fill('#edit-customer textarea[name="phones"]', "12, mobile")
    await page.click("#edit-customer button")
    await expect(page.locator('#edit-customer [role="alert"]')).to_contain_text("'12'")
    async with center.runtime.sessions() as session:
        alice = await session.get(Customer, center.customers["Alice Example"])
        assert alice is not None and alice.city == "Springfield" and alice.custom_fields == {"contract": "C-1001"}
        assert sorted(e.email for e in alice.emails) == ["alice.work@example.org", "alice@example.org"]
        assert sorted(t.name for t in alice.tags) == ["router", "vip"]
    before = len(center.pbx.actions_received)
    await page.click('a[data-dial="+15551230001"]')
    await expect(page.locator("#dial-status")).to_have_text("Your phone rings; then +15551230001.")
    originates = [a for a in center.pbx.actions_received[before:] if a.get("Action") == "Originate"]
    assert len(originates) == 1 and originates[0]["Exten"] == "15551230001"
    assert originates[0]["Channel"] == "Local/1001@agents"


async def test_a_pooled_customer_returns_after_its_protection_period(
    browser: Browser,  # noqa: F811
    center: LiveCenter,  # noqa: F811
) -> None:
    bob = center.customers["Bob Example"]
    first = await sign_in(browser, center, "agent1001", f"/customers/{bob}")
    await expect(first.locator("#owner")).to_contain_text("none (in the pool)")
    await first.click("#owner button")
    await expect(first.locator("#owner")).to_contain_text("Owner: Agent1001")
    second = await sign_in(browser, center, "agent1002", f"/customers/{bob}")
    await expect(second.locator("#owner")).to_contain_text("Owner: Agent1001")
    assert await second.locator("#owner button").count() == 0
    later = utcnow() + timedelta(days=31)  # the protection period (30 days) ran out without contact
    assert await PoolReturner(center.runtime.sessions, protection_days=30, clock=lambda: later).run_once() == [bob]
    await second.reload()
    await expect(second.locator("#owner")).to_contain_text("none (in the pool)")
    await second.click("#owner button")
    await expect(second.locator("#owner")).to_contain_text("Owner: Agent1002")


async def test_merge_a_duplicate_found_by_search(browser: Browser, center: LiveCenter) -> None:  # noqa: F811
    async with center.runtime.unit_of_work() as session:
        twin = await create_customer(
            session=session,
            actor=SYSTEM,
            region="US",
            data=CustomerIn(name="Alice Exampel", phones=[PhoneIn(number="+15551239977")]),
        )
        twin_id = twin.id
    alice = center.customers["Alice Example"]
    page = await sign_in(browser, center, "boss", f"/customers/{alice}")
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click("details.merge summary")
    await page.fill('details.merge input[name="q"]', "555 123 9977")
    candidate = page.locator("#merge-candidates li", has_text="Alice Exampel")
    await expect(candidate).to_be_visible()
    await candidate.locator("button").click()
    await expect(page.locator('a[data-dial="+15551239977"]')).to_be_visible()  # reloaded: its phone moved here
    await page.goto(f"{center.base_url}/customers/{twin_id}")  # the merged-away record leads to the survivor
    await expect(page).to_have_url(re.compile(rf"/customers/{alice}\?merged_from="))
    await expect(page.locator(".notice")).to_contain_text("“Alice Exampel” was merged into this customer.")
    assert page.dialogs == ["Merge Alice Exampel into this customer? Its calls, tickets, SMS and notes move here."]  # type: ignore[attr-defined]


async def test_an_admin_creates_a_user_who_then_takes_a_call(browser: Browser, center: LiveCenter) -> None:  # noqa: F811
    admin = await sign_in(browser, center, "root", "/admin/users")
    admin.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await admin.fill('input[name="username"]', "dana")
    await admin.fill('input[name="display_name"]', "Dana Newcomer")
    await admin.select_option('form[hx-post$="/admin/users"] select[name="role"]', "agent")
    await admin.fill('form[hx-post$="/admin/users"] input[name="extension"]', "2002")
    await admin.fill('form[hx-post$="/admin/users"] input[name="queues"]', "sales")
    await admin.click('form[hx-post$="/admin/users"] button')
    notice = admin.locator("#users .notice")
    await expect(notice).to_contain_text("dana created. One-time password (shown once): ")
    one_time = (await notice.inner_text()).rsplit(": ", 1)[1].strip()
    await expect(admin.locator('tr[data-user="dana"]')).to_contain_text("one-time password")
    if SHOTS:
        await admin.screenshot(path=f"{SHOTS}/admin-users.png")

    context = await browser.new_context(viewport={"width": 1366, "height": 768})
    dana = await context.new_page()
    await dana.goto(f"{center.base_url}/login")
    await dana.fill('input[name="username"]', "dana")
    await dana.fill('input[name="password"]', one_time)
    await dana.click('button[type="submit"]')
    await expect(dana.locator("h1")).to_have_text("Choose your password")
    await dana.fill('input[name="current"]', one_time)
    await dana.fill('input[name="password"]', "dana's own long password")
    await dana.fill('input[name="again"]', "dana's own long password")
    await dana.click('main button[type="submit"]')
    await expect(dana.locator("#desktop-message")).to_have_text("Connected.")
    await expect(dana.locator(".topbar")).to_contain_text("sales")
    linkedid = await center.pbx.place_inbound_call(
        "+15551230002", "Bob Example", "sales", agent="2002", answer_after_s=10, talk_s=20
    )
    card = dana.locator(f'article.pop[data-linkedid="{linkedid}"]')
    await expect(card.locator(".pop-title")).to_contain_text("Bob Example")
    await expect(card.locator(".call-state")).to_have_text("up", timeout=10_000)

    # deactivated: signed out at once, the workspace says so
    await admin.locator('tr[data-user="dana"] button', has_text="Deactivate").click()
    await expect(admin.locator("#users .notice")).to_contain_text("dana is deactivated and signed out")
    await expect(dana.locator("#desktop-message")).to_contain_text("sign in again", timeout=10_000)


async def test_blind_transfer_from_the_workspace_and_a_supervisor_listens_in(
    browser: Browser,  # noqa: F811
    center: LiveCenter,  # noqa: F811
) -> None:
    mine = await sign_in(browser, center, "agent1001", "/desktop")
    theirs = await sign_in(browser, center, "agent2001", "/desktop")
    boss = await sign_in(browser, center, "boss", "/wallboard")
    for page in (mine, theirs):
        await expect(page.locator("#desktop-message")).to_have_text("Connected.")
    linkedid = await center.pbx.place_inbound_call(
        "+15551230001", "Alice Example", "support", agent="1001", answer_after_s=10, talk_s=600
    )
    card = mine.locator(f'article.pop[data-linkedid="{linkedid}"]')
    await expect(card.locator(".call-state")).to_have_text("up", timeout=10_000)

    # the supervisor listens in on the agent's call: the PBX is asked to ring the supervisor's phone into ChanSpy
    row = boss.locator('tr[data-agent="1001"]')
    await expect(row.locator(".caller")).to_have_text("Alice Example", timeout=10_000)
    before = len(center.pbx.actions_received)
    await row.locator("button", has_text="Listen").click()
    await expect(boss.locator("#wallboard-message")).to_have_text("Done.")
    spies = [a for a in center.pbx.actions_received[before:] if a.get("Application") == "ChanSpy"]
    assert len(spies) == 1 and spies[0]["Channel"] == "Local/9001@agents"
    assert spies[0]["Data"] == "Local/1001@agents,q"

    await center.bridge.pause("2002", "Meeting", queue="sales")  # the other sales agent is away: 2001 gets the call
    await mine.keyboard.press("Alt+T")
    await mine.keyboard.type("sales")
    await card.locator(".blind").click()
    # the call moves: the sales agent gets the pop with the caller, the first agent is left with the wrap-up
    moved = theirs.locator(f'article.pop[data-linkedid="{linkedid}"]')
    await expect(moved.locator(".pop-title")).to_contain_text("Alice Example", timeout=10_000)
    await expect(moved.locator(".call-state")).to_have_text("up", timeout=10_000)
    await expect(card.locator(".call-state")).to_have_text("transferred")
    await expect(card.locator(".pop-message")).to_contain_text("2001 has the caller now")
    await moved.locator(".hangup").click()  # the sales agent ends the call: the first agent wraps up its part
    await expect(moved.locator(".call-state")).to_have_text("wrap-up", timeout=10_000)
    await expect(card.locator(".call-state")).to_have_text("wrap-up", timeout=10_000)
    await card.locator('select[name="disposition"]').select_option("escalated")
    await card.locator(".wrapup button").click()
    await expect(card.locator(".pop-message")).to_have_text("Done.")


async def test_a_supervisor_reassigns_and_every_view_is_audited(browser: Browser, center: LiveCenter) -> None:  # noqa: F811
    bob = center.customers["Bob Example"]
    page = await sign_in(browser, center, "boss", f"/customers/{bob}")
    await page.select_option('form.reassign select[name="owner_id"]', label="Agent1002 (agent1002)")
    await page.click("form.reassign button")
    await expect(page.locator("#owner")).to_contain_text("Owner: Agent1002")
    await page.select_option('form.reassign select[name="owner_id"]', label="nobody (back to the pool)")
    await page.click("form.reassign button")
    await expect(page.locator("#owner")).to_contain_text("none (in the pool)")
    async with center.runtime.sessions() as session:
        views = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.entity_id == bob, AuditEntry.action.in_(("read", "update")))
            )
        )
    assert [e.action for e in sorted(views, key=lambda e: e.at)] == ["read", "update", "read", "update", "read"]
