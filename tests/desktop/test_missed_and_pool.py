"""Missed calls and the pool over HTTP, as the pages use them (htmx partials, the CSRF header)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from crm_core.calls.models import CallLeg, CallLog
from crm_core.customers.models import Customer
from crm_core.users.models import User
from tests.desktop.live import LiveCenter
from tests.desktop.test_authorization import signed_in


async def test_missed_calls_page_call_back_and_handled(center: LiveCenter) -> None:
    async with center.runtime.unit_of_work() as session:
        for i, queue in enumerate(("support", "support", "sales")):
            call = CallLog(
                linkedid=f"missed.{i}",
                direction="inbound",
                caller_number=f"+1555123000{i + 1}",
                caller_name="Alice Example" if i == 0 else "",
                customer_id=center.customers["Alice Example"] if i == 0 else None,
                queue=queue,
                outcome="abandoned",
                wait_seconds=42.4,
                offered_at=datetime(2026, 12, 1, 9, i, tzinfo=UTC),
            )
            call.legs = [CallLeg(agent="1002", channel=f"Local/1002@agents-{i};1")]
            session.add(call)
    http, token = await signed_in(center, "agent")  # agent1001, queue support
    try:
        async with http.get(f"{center.base_url}/missed-calls") as page:
            html = await page.text()
        assert html.count('data-dial="+1555123000') == 2  # its queue's two, not sales'
        assert "Alice Example" in html and "42 s" in html and "Mark all handled" in html
        first = await _call_id(center, "missed.0")
        async with http.post(
            f"{center.base_url}/missed-calls/handled", data={"call_id": first}, headers={"X-CSRF-Token": token}
        ) as partial:
            html = await partial.text()
            assert partial.status == 200 and html.startswith('<section id="missed-list"')
        assert "Alice Example" not in html and html.count("data-dial=") == 1
        async with http.post(f"{center.base_url}/missed-calls/handled", data={"call_id": first}) as refused:
            assert refused.status == 400  # no CSRF header: a forged form from another site
        async with http.post(
            f"{center.base_url}/missed-calls/handled", data={"all": "1"}, headers={"X-CSRF-Token": token}
        ) as partial:
            assert "No missed call waits" in await partial.text()
    finally:
        await http.close()
    boss, _boss_token = await signed_in(center, "supervisor")
    try:
        async with boss.get(f"{center.base_url}/missed-calls", params={"queue": "sales"}) as page:
            assert (await page.text()).count("data-dial=") == 1
    finally:
        await boss.close()


async def _call_id(center: LiveCenter, linkedid: str) -> str:
    async with center.runtime.sessions() as session:
        return str(await session.scalar(select(CallLog.id).where(CallLog.linkedid == linkedid)))


async def test_claim_from_the_customer_page(center: LiveCenter) -> None:
    bob = center.customers["Bob Example"]
    http, token = await signed_in(center, "agent")
    try:
        async with http.get(f"{center.base_url}/customers/{bob}") as page:
            html = await page.text()
        assert "none (in the pool)" in html and ">Claim</button>" in html and 'data-dial="+15551230002"' in html
        async with http.post(f"{center.base_url}/api/customers/{bob}/claim", headers={"X-CSRF-Token": token}) as r:
            assert r.status == 200 and r.headers["HX-Refresh"] == "true"
        async with http.get(f"{center.base_url}/customers/{bob}") as page:
            html = await page.text()
        assert "Owner: <strong>Agent1001</strong>" in html and ">Claim</button>" not in html
    finally:
        await http.close()
    async with center.runtime.sessions() as session:
        owner = await session.scalar(select(Customer.owner_id).where(Customer.id == bob))
        assert owner == await session.scalar(select(User.id).where(User.username == "agent1001"))
