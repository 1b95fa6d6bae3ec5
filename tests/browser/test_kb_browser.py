"""The knowledge base and satisfaction in real headless Chromium, with the SMS outbox on the fake Twilio: an agent
opens a ticket, sees a solution suggested from its subject, links it and sends it (a reply on the ticket and an SMS
the fake Twilio receives), resolves the ticket; the CSAT request goes out by SMS, the customer answers "5" through
Twilio's signed webhook, and the score shows on the ticket page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from crm_core.kb.service import create_solution
from crm_core.tickets.csat import CsatDispatcher, CsatPolicy
from crm_core.tickets.csat_models import TicketCsat
from crm_core.tickets.models import Ticket
from crm_core.tickets.service import create_ticket
from crm_core.users.models import User
from crm_core.users.service import Actor
from tests.browser.test_desktop_browser import browser, center, sign_in  # noqa: F401  (fixtures)
from tests.browser.test_tickets_browser import HTMX_IDLE
from tests.desktop.live import LiveCenter
from tests.sms.live import ALICE, SENDER, SmsCenter, start_sms_center

pytestmark = pytest.mark.browser


@pytest.fixture
async def sms_center(tmp_path: Path) -> AsyncIterator[SmsCenter]:
    live = await start_sms_center(tmp_path)
    try:
        yield live
    finally:
        await live.stop()


async def _actor(live: SmsCenter, username: str) -> Actor:
    async with live.runtime.sessions() as db:
        user = await db.scalar(select(User).where(User.username == username))
        assert user is not None
        return Actor.of(user)


async def test_agent_sends_a_suggested_solution_and_the_customers_csat_shows(
    browser: Browser,  # noqa: F811
    sms_center: SmsCenter,
) -> None:
    agent = await _actor(sms_center, "agent1001")
    boss = await _actor(sms_center, "boss")
    async with sms_center.runtime.unit_of_work() as db:
        await create_solution(
            session=db,
            actor=boss,
            title="Track a parcel that shows no update",
            body="Parcels show no update for up to 48 hours.\nUse the tracking link in your confirmation.",
            tags="parcel, delivery",
            status="published",
        )
        await create_solution(session=db, actor=boss, title="Refunds", body="Within 14 days.", status="published")
        ticket = await create_ticket(
            session=db,
            actor=agent,
            subject="Parcel tracking shows nothing",
            customer_id=sms_center.customers["Alice Example"],
            assignee_id=agent.user_id,
        )
    csat = CsatDispatcher(
        sms_center.runtime.sessions,
        CsatPolicy(enabled=True, sms_sender=SENDER, delay=timedelta(0)),
        every_s=0.05,
        on_queued=sms_center.outbox.wake.set,
    )
    csat.start()
    try:
        page = await sign_in(browser, sms_center, "agent1001", f"/tickets/{ticket.id}")  # type: ignore[arg-type]
        panel = page.locator("#kb-suggestions")
        suggested = panel.locator("ul.kb-suggested li")
        await expect(suggested).to_have_count(1)  # from the subject: the parcel one, not refunds
        await expect(suggested).to_contain_text("Track a parcel that shows no update")
        await expect(page.locator("#csat")).to_contain_text("Asked after the ticket is resolved.")

        await suggested.locator("button.kb-link").click()
        linked = panel.locator("ul.kb-linked li")
        await expect(linked).to_contain_text("Track a parcel that shows no update")
        await expect(panel.locator("ul.kb-suggested")).to_have_count(0)
        await linked.locator("button.kb-send").click()
        await expect(page.locator("#conversation")).to_contain_text("Use the tracking link in your confirmation.")
        await expect(page.locator("#kb-suggestions ul.kb-linked .kb-sent")).to_contain_text("SMS")

        await sms_center.twilio.wait_for(lambda fake: len(fake.sent_to(ALICE)) == 1)
        [solution_sms] = sms_center.twilio.sent_to(ALICE)
        assert solution_sms["from"] == SENDER
        assert solution_sms["body"].startswith(f"Ticket {ticket.number}: Track a parcel that shows no update")

        await page.wait_for_function(HTMX_IDLE)
        await page.select_option('#ticket-fields select[name="status"]', "resolved")
        await expect(page.locator("#ticket")).to_have_attribute("data-status", "resolved")
        await sms_center.twilio.wait_for(lambda fake: len(fake.sent_to(ALICE)) == 2)
        request = sms_center.twilio.sent_to(ALICE)[1]
        assert f"ticket {ticket.number}" in request["body"] and "1 (bad) to 5 (great)" in request["body"]

        assert await sms_center.text_in("5") == 200  # the customer's answer, a signed webhook
        async with sms_center.runtime.sessions() as db:
            row = await db.scalar(select(TicketCsat).where(TicketCsat.ticket_id == ticket.id))
            assert row is not None and (row.status, row.score, row.channel) == ("answered", 5, "sms")
        await page.reload()
        await expect(page.locator("#csat .csat-score")).to_have_text("5 / 5")
        await expect(page.locator("#csat")).to_contain_text("by SMS")
        assert page.dialogs == []  # type: ignore[attr-defined]
    finally:
        await csat.stop()


@pytest.fixture
async def quick_form_center(tmp_path: Path) -> AsyncIterator[SmsCenter]:
    live = await start_sms_center(tmp_path, extra_settings={"CRM_INTAKE_MIN_SECONDS": "0"})
    try:
        yield live
    finally:
        await live.stop()


async def test_editor_reader_web_form_and_a_ticket_from_an_sms(
    browser: Browser,  # noqa: F811
    quick_form_center: SmsCenter,
) -> None:
    live = quick_form_center
    # a supervisor writes and publishes a solution in the editor
    boss = await sign_in(browser, live, "boss", "/kb/new")  # type: ignore[arg-type]
    await boss.fill('#kb-editor input[name="title"]', "Parcel <b>late</b>")
    await boss.fill('#kb-editor input[name="tags"]', "Parcel, Delivery")
    await boss.fill('#kb-editor textarea[name="body"]', "Wait two days.\nThen call us.")
    await boss.select_option('#kb-editor select[name="status"]', "published")
    await boss.click('#kb-editor button[type="submit"]')
    await expect(boss.locator("h1")).to_have_text("Parcel <b>late</b>")  # the text, not markup
    await expect(boss.locator("article.kb-body")).to_have_text("Wait two days.\nThen call us.")
    await expect(boss.locator("main")).to_contain_text("Tags: parcel, delivery")

    # an agent finds it by a word of it, as typed (no button press)
    agent = await sign_in(browser, live, "agent1001", "/kb")  # type: ignore[arg-type]
    await expect(agent.locator("#kb-results")).to_contain_text("Parcel <b>late</b>")
    await agent.fill('#kb-search input[name="q"]', "refund")
    await expect(agent.locator("#kb-results")).to_contain_text("No solution holds every word")
    await agent.fill('#kb-search input[name="q"]', "parcels")
    await agent.locator("#kb-results a", has_text="Parcel <b>late</b>").click()
    await expect(agent.locator("article.kb-body")).to_contain_text("Then call us.")
    await expect(agent.locator("a", has_text="Edit")).to_have_count(0)

    # a customer, signed in to nothing, sends the public form
    context = await browser.new_context()
    visitor = await context.new_page()
    await visitor.goto(f"{live.base_url}/intake")
    box = await visitor.locator('input[name="website"]').bounding_box()
    assert box is None or box["x"] + box["width"] <= 0  # the honeypot is off screen for a person
    await visitor.fill('#intake-form input[name="name"]', "Alice Example")
    await visitor.fill('#intake-form input[name="phone"]', ALICE)
    await visitor.fill('#intake-form input[name="subject"]', "Parcel still missing")
    await visitor.fill('#intake-form textarea[name="message"]', "Ordered on Monday.")
    await visitor.click('#intake-form button[type="submit"]')
    await expect(visitor.locator("#intake-thanks")).to_contain_text("We received your request")
    async with live.runtime.sessions() as db:
        ticket = await db.scalar(select(Ticket).where(Ticket.subject == "Parcel still missing"))
        assert ticket is not None and ticket.customer_id == live.customers["Alice Example"]

    # a text comes in; the agent makes a ticket of the conversation
    assert await live.text_in("Where is my parcel?") == 200
    conversation = await live.conversation_of()
    await agent.goto(f"{live.base_url}/sms/conversations/{conversation.id}")
    await agent.click("#sms-ticket-form button")
    await expect(agent.locator("h1")).to_contain_text("SMS: Where is my parcel?")
    await expect(agent.locator("#conversation")).to_contain_text("Where is my parcel?")
    await expect(agent.locator("#kb-suggestions ul.kb-suggested")).to_contain_text("Parcel <b>late</b>")


async def test_the_screen_pop_suggests_a_solution_for_the_callers_open_ticket(
    browser: Browser,  # noqa: F811
    center: LiveCenter,  # noqa: F811
) -> None:
    async with center.runtime.unit_of_work() as db:
        boss = await db.scalar(select(User).where(User.username == "boss"))
        assert boss is not None
        solution = await create_solution(
            session=db,
            actor=Actor.of(boss),
            title="A router that keeps rebooting",
            body="Move it away from the heater.",
            tags="router",
            status="published",
        )
    page = await sign_in(browser, center, "agent1001", "/desktop")
    await expect(page.locator("#desktop-message")).to_have_text("Connected.")
    # Alice's open ticket is "Router keeps rebooting" (the live center's seed data)
    linkedid = await center.pbx.place_inbound_call(
        "+15551230001", "Alice Example", "support", agent="1001", answer_after_s=20, talk_s=20
    )
    card = page.locator(f'article.pop[data-linkedid="{linkedid}"]')
    await expect(card).to_contain_text("Router keeps rebooting")
    link = card.locator("a.pop-solution")
    await expect(link).to_have_text("A router that keeps rebooting")
    assert await link.get_attribute("href") == f"/kb/{solution.id}"
