"""In real headless Chromium: a supervisor has the wallboard open and a ticket crosses its SLA warning, then its
breach (the scheduler on a controlled clock): each appears live in the wallboard's tickets-at-risk section and in
the assignee's workspace. And the assignee, with the ticket's page open, sees a supervisor's change to it live."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from crm_core.db import utcnow
from crm_core.sla.scheduler import SlaScheduler
from crm_core.sla.service import create_policy
from crm_core.tickets.service import create_ticket, update_ticket
from crm_core.users.models import User
from crm_core.users.service import SYSTEM, Actor
from tests.browser.test_desktop_browser import browser, center, sign_in  # noqa: F401  (fixtures)
from tests.desktop.live import LiveCenter

pytestmark = pytest.mark.browser


async def _actor(live: LiveCenter, username: str) -> Actor:
    async with live.runtime.sessions() as db:
        user = await db.scalar(select(User).where(User.username == username))
        assert user is not None
        return Actor.of(user)


async def test_a_supervisor_sees_the_warning_and_the_breach_appear_live_on_the_wallboard(
    browser: Browser,  # noqa: F811
    center: LiveCenter,  # noqa: F811
) -> None:
    agent = await _actor(center, "agent1001")
    boss = await _actor(center, "boss")
    opened = utcnow()
    async with center.runtime.unit_of_work() as db:
        # first response in 60 minutes (always open), warning at 75 %: at 45 minutes; the center's one ticket
        # ("Router keeps rebooting", nobody's) gets its clock now too
        await create_policy(session=db, actor=SYSTEM, name="Std", first_response_minutes=60, now=opened)
        ticket = await create_ticket(
            session=db, actor=agent, subject="Phones dead in the shop", assignee_id=agent.user_id, now=opened
        )
    wallboard = await sign_in(browser, center, "boss", "/wallboard")
    section = wallboard.locator("#sla-at-risk")
    await expect(section).to_contain_text("No ticket is near or past its SLA.")  # read from the server on load
    await expect(wallboard.locator("#pbx-status")).to_have_text("Live.")  # the wallboard's socket is connected

    desk = await sign_in(browser, center, "agent1001", f"/tickets/{ticket.id}")
    await expect(desk.locator("#ticket-live")).to_have_text("Live.")
    workspace = await sign_in(browser, center, "agent1001", "/desktop")
    await expect(workspace.locator("#desktop-message")).not_to_have_text("")  # its socket is connected

    row = section.locator(f'tr[data-ticket="{ticket.number}"]')
    later = opened + timedelta(minutes=50)
    assert await SlaScheduler(center.runtime.sessions, center.runtime.bus, clock=lambda: later).run_once() == 2
    await expect(row).to_have_attribute("data-clock-state", "warning")
    await expect(section.locator('[data-count="warned"]')).to_have_text("2 warned")
    await expect(row).to_contain_text("Phones dead in the shop")
    await expect(row).to_contain_text("Agent1001")
    await expect(section.locator("tbody tr")).to_have_count(2)

    later = opened + timedelta(minutes=61)
    assert await SlaScheduler(center.runtime.sessions, center.runtime.bus, clock=lambda: later).run_once() == 2
    await expect(row).to_have_attribute("data-clock-state", "overdue")
    await expect(row.locator(".badge")).to_have_text("breached")
    await expect(section.locator('[data-count="breached"]')).to_have_text("2 breached")
    await expect(section.locator('[data-count="warned"]')).to_have_text("0 warned")
    # the assignee's workspace got both, for their ticket only (the other one is nobody's)
    alerts = workspace.locator("#sla-alerts li")
    await expect(alerts).to_have_count(2)
    await expect(alerts.first).to_have_attribute("data-kind", "sla_breach")
    await expect(alerts.first).to_contain_text(
        f"Ticket {ticket.number} Phones dead in the shop: first response overdue"
    )
    await expect(alerts.nth(1)).to_contain_text("first response nearly due")

    # the supervisor raises the priority: the assignee's open page shows it without a reload
    async with center.runtime.unit_of_work() as db:
        await update_ticket(session=db, actor=boss, ticket_id=ticket.id, priority="urgent")
    await expect(desk.locator("#ticket-live")).to_contain_text("Changed by a colleague just now: priority.")
    await expect(desk.locator('#ticket-fields select[name="priority"]')).to_have_value("urgent")
    assert wallboard.dialogs == [] and desk.dialogs == [] and workspace.dialogs == []  # type: ignore[attr-defined]
