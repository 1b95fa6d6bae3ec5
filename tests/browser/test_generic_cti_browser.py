"""A generic CTI PBX in real headless Chromium: the admin maps a PBX user name to an agent in Admin → PBXes, the
agent's desktop pops a call pushed by the PBX's gateway, without the controls that PBX cannot carry out (an Asterisk
call beside it keeps them), and the agent wraps the call up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from crm_core.calls.models import CallLog
from tests.browser.test_desktop_browser import browser, sign_in  # noqa: F401  (fixtures)
from tests.cti.test_generic_cti import (  # noqa: F401  (fixtures)
    PBX,
    FakeDialGateway,
    gateway,
    post,
    start_generic_center,
)
from tests.desktop.live import LiveCenter

pytestmark = pytest.mark.browser


@pytest.fixture
async def center(tmp_path: Path, gateway: FakeDialGateway) -> AsyncIterator[LiveCenter]:  # noqa: F811
    live = await start_generic_center(tmp_path, gateway)
    try:
        yield live
    finally:
        await live.stop()


def event(kind: str, **fields: str) -> dict[str, str]:
    common = {"from": "+49 30/555-71600", "to": "030 1234 5670", "direction": "in", "callId": "web-1"}
    return {"event": kind, **common, **fields}


async def test_admin_maps_a_pbx_user_and_the_agent_gets_its_calls_without_foreign_controls(
    browser: Browser,  # noqa: F811
    center: LiveCenter,
) -> None:
    admin = await sign_in(browser, center, "root", "/admin/pbx")
    await expect(admin.locator(f'#pbx-list tr[data-pbx="{PBX}"]')).to_contain_text("DE")
    await expect(admin.locator("#pbx-mappings")).to_contain_text("No PBX user is mapped yet.")
    form = admin.locator("#pbx-map-form")
    await form.locator('input[name="pbx_user"]').fill("Emma Taylor")
    await form.locator('select[name="user_id"]').select_option(label="agent1001 (1001)")
    await form.locator('button[type="submit"]').click()
    await expect(admin.locator("#pbx-mappings")).to_contain_text("Emma Taylor")
    await expect(admin.locator("#pbx-mappings")).to_contain_text("agent1001")
    # the same name again is refused with a sentence, and nothing changes
    await admin.locator('#pbx-map-form input[name="pbx_user"]').fill("emma  taylor")
    await admin.locator('#pbx-map-form button[type="submit"]').click()
    await expect(admin.locator("#form-error")).to_contain_text("already mapped")
    await expect(admin.locator("#pbx-mappings tbody tr")).to_have_count(1)

    page = await sign_in(browser, center, "agent1001", "/desktop")
    await expect(page.locator("#desktop-message")).to_have_text("Connected.")
    status, _ = await post(center, event("newCall", queue="support", **{"user[]": "Emma Taylor"}), encoding="form")
    assert status == 200
    card = page.locator(f'article.pop[data-linkedid="{PBX}:web-1"]')
    await expect(card.locator(".pop-title")).to_contain_text("Erika Mustermann")
    await expect(card.locator(".call-state")).to_have_text("ringing")
    # the generic PBX cannot hang up, hold or transfer: those controls are not there at all
    for control in (".hangup", ".hold", ".resume", ".blind", ".attended", ".transfer-target"):
        await expect(card.locator(control)).to_have_count(0)
    await post(center, event("answer", answeringNumber="1001"), encoding="form")
    await expect(card.locator(".call-state")).to_have_text("up")

    # an Asterisk call beside it keeps every control
    asterisk = await center.pbx.place_inbound_call(
        "+15551230002", "Bob Example", "support", agent="1001", answer_after_s=400, talk_s=5
    )
    await page.locator(f'#interaction-list button[data-linkedid="{asterisk}"]').click()
    other = page.locator(f'article.pop[data-linkedid="{asterisk}"]')
    await expect(other.locator(".hangup")).to_have_count(1)
    await expect(other.locator(".blind")).to_have_count(1)

    await post(center, event("hangup", cause="normalClearing"), encoding="form")
    await page.locator(f'#interaction-list button[data-linkedid="{PBX}:web-1"]').click()
    await expect(card.locator(".call-state")).to_have_text("wrap-up")
    await card.locator('select[name="disposition"]').select_option("resolved")
    await card.locator(".wrapup button").click()
    await expect(card.locator(".pop-message")).to_have_text("Done.")
    async with center.runtime.sessions() as session:
        call = await session.scalar(select(CallLog).where(CallLog.linkedid == f"{PBX}:web-1"))
    assert call is not None
    assert (call.outcome, call.agent, call.disposition_code) == ("answered", "1001", "resolved")
    assert call.customer_id == center.customers["Erika Mustermann"]
