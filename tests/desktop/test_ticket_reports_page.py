"""The service-desk report page and its CSV, served for real, with data in them: SVG charts, escaped names, cells
that stay text in a spreadsheet, bad dates refused."""

from __future__ import annotations

import csv
import html
import io
from datetime import timedelta

from crm_core.db import utcnow
from crm_core.sla.service import create_policy
from crm_core.tickets.service import add_message, create_ticket, update_ticket
from crm_core.users.service import SYSTEM
from tests.desktop.live import XSS_NAME, LiveCenter
from tests.desktop.test_authorization import signed_in_as

FORMULA_TEAM = "=1+2"


async def test_the_report_page_and_csv_show_the_desk(center: LiveCenter) -> None:
    now = utcnow()
    async with center.runtime.unit_of_work() as db:
        await create_policy(session=db, actor=SYSTEM, name="Std", first_response_minutes=60, resolution_minutes=600)
        late = await create_ticket(
            session=db, actor=SYSTEM, subject="Late", team=XSS_NAME, now=now - timedelta(hours=4)
        )
        await add_message(session=db, actor=SYSTEM, ticket_id=late.id, body="Sorry", now=now - timedelta(hours=2))
        quick = await create_ticket(
            session=db, actor=SYSTEM, subject="Quick", team=FORMULA_TEAM, now=now - timedelta(hours=1)
        )
        await update_ticket(session=db, actor=SYSTEM, ticket_id=quick.id, status="resolved", now=now)
    http, _token = await signed_in_as(center, "boss")
    try:
        async with http.get(f"{center.base_url}/reports") as r:
            assert r.status == 200 and "/reports/tickets" in await r.text()
        async with http.get(f"{center.base_url}/reports/tickets") as r:
            page = await r.text()
            assert r.status == 200
        assert html.escape(XSS_NAME) in page and XSS_NAME not in page
        assert f'data-key="{html.escape(XSS_NAME)}" data-breached="1"' in page  # late first response
        assert 'id="sla-by-team"' in page and "<svg" in page and 'data-figure="fcr">100.0 %' in page
        async with http.get(f"{center.base_url}/reports/tickets.csv") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(await r.text())))
        teams = {row["key"]: (row["met"], row["breached"]) for row in rows if row["section"] == "sla_by_team"}
        assert teams == {
            XSS_NAME: ("0", "1"),
            "'" + FORMULA_TEAM: ("1", "0"),
        }  # resolved without a reply: first response cancelled
        async with http.get(f"{center.base_url}/reports/tickets?start=yesterday") as r:
            assert r.status == 422
        async with http.get(f"{center.base_url}/reports/tickets?start=2020-01-01&end=2026-01-01") as r:
            assert r.status == 422
    finally:
        await http.close()
    http, _token = await signed_in_as(center, "agent1001")
    try:
        async with http.get(f"{center.base_url}/reports/tickets.csv", allow_redirects=False) as r:
            assert r.status == 403
    finally:
        await http.close()
