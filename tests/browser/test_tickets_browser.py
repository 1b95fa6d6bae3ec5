"""The desk's tickets in real headless Chromium: an agent opens the list, filters it, opens a ticket, replies, adds
an internal note, sets it pending (the SLA clock shows paused) and resolves it."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from crm_core.sla.service import create_policy
from crm_core.tickets.models import Ticket, TicketMessage
from crm_core.tickets.service import create_ticket
from crm_core.users.models import User
from crm_core.users.service import SYSTEM, Actor
from tests.browser.test_desktop_browser import browser, center, sign_in  # noqa: F401  (fixtures)
from tests.desktop.live import LiveCenter

# no htmx request in flight and no swap settling (what a person waits for by looking before the next click)
HTMX_IDLE = "() => document.querySelectorAll('.htmx-request, .htmx-swapping, .htmx-settling').length === 0"
pytestmark = pytest.mark.browser


async def test_agent_works_a_ticket_from_the_list_to_resolved(
    browser: Browser,  # noqa: F811
    center: LiveCenter,  # noqa: F811
) -> None:
    async with center.runtime.unit_of_work() as db:
        user = await db.scalar(select(User).where(User.username == "agent1001"))
        assert user is not None
        agent = Actor.of(user)
        await create_policy(
            session=db,
            actor=SYSTEM,
            name="Std",
            first_response_minutes=60,
            next_response_minutes=240,
            resolution_minutes=480,
        )
        urgent = await create_ticket(
            session=db,
            actor=agent,
            subject="Fibre cut in the street",
            priority="urgent",
            customer_id=center.customers["Alice Example"],
            assignee_id=agent.user_id,
        )
        await create_ticket(session=db, actor=agent, subject="Change of address", priority="low")

    page = await sign_in(browser, center, "agent1001", "/desktop")
    await page.click("header nav a >> text=Tickets")
    results = page.locator("#ticket-results")
    await expect(results).to_contain_text("Change of address")
    await expect(results).to_contain_text("Fibre cut in the street")
    await page.select_option('#ticket-filters select[name="priority"]', "urgent")
    await expect(results).not_to_contain_text("Change of address")
    await expect(page).to_have_url(
        f"{center.base_url}/tickets?view=all&status=&priority=urgent&tag=&age=&sort=-created"
    )
    await page.click("#ticket-results a >> text=Fibre cut in the street")
    await expect(page.locator("h1")).to_contain_text(f"Ticket {urgent.number}: Fibre cut in the street")
    clocks = page.locator("#clocks")
    await expect(clocks.locator('li[data-clock-state="running"]')).to_have_count(2)

    await page.fill('#ticket-message textarea[name="body"]', "A technician is on the way.")
    await page.click("#ticket-message button >> text=Send reply to customer")
    await expect(page.locator("#conversation")).to_contain_text("A technician is on the way.")
    await expect(clocks.locator('li[data-clock-state="met"]')).to_contain_text("First response")
    await page.fill('#ticket-message textarea[name="body"]', "Street works permit pending.")
    await page.click("#ticket-message button >> text=Add internal note")
    await expect(page.locator("#internal-notes")).to_contain_text("Street works permit pending.")
    await expect(page.locator("#conversation")).not_to_contain_text("Street works permit pending.")

    await page.wait_for_function(HTMX_IDLE)  # the note's swap has settled: the new form listens for changes
    await page.select_option('#ticket-fields select[name="status"]', "pending")
    await expect(page.locator("#ticket")).to_have_attribute("data-status", "pending")
    await expect(clocks.locator('li[data-clock-state="paused"]')).to_have_count(2)  # next response, resolution
    await expect(clocks.locator('li[data-clock-state="running"]')).to_have_count(0)
    await expect(clocks).to_contain_text("paused, ")

    await page.wait_for_function(HTMX_IDLE)
    await page.select_option('#ticket-fields select[name="status"]', "resolved")
    await expect(page.locator("#ticket")).to_have_attribute("data-status", "resolved")
    await expect(clocks.locator('li[data-clock-state="met"]')).to_contain_text(["First response", "Resolution"])
    await page.reload()
    await expect(page.locator('#ticket-fields select[name="status"]')).to_have_value("resolved")
    assert page.dialogs == []  # type: ignore[attr-defined]
    async with center.runtime.sessions() as db:
        ticket = await db.get(Ticket, urgent.id)
        assert ticket is not None and ticket.status == "resolved" and ticket.resolved_at is not None
        kinds = list(await db.scalars(select(TicketMessage.kind).where(TicketMessage.ticket_id == urgent.id)))
        assert sorted(kinds) == ["note", "reply"]
