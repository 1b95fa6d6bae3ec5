"""Admin screens over HTTP as the browser uses them (htmx partials with the CSRF header, a multipart upload):
dispositions and pause reasons reach the agent desktop, the audit viewer filters and exports safely, a CSV import
runs in the worker with its progress and row-by-row report, and customers export."""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import select

from crm_core.customers.import_jobs import ImportWorker
from crm_core.customers.models import Customer
from tests.desktop.live import LiveCenter
from tests.desktop.test_authorization import signed_in


async def test_dispositions_and_pause_reasons_reach_the_desktop(center: LiveCenter) -> None:
    admin, token = await signed_in(center, "admin")
    headers = {"X-CSRF-Token": token, "HX-Request": "true"}
    try:
        async with admin.post(
            f"{center.base_url}/admin/dispositions",
            data={"code": "refund", "label": "Refund <issued>", "active": "1"},
            headers=headers,
        ) as partial:
            html = await partial.text()
            assert partial.status == 200 and html.startswith('<table id="dispositions"')
        assert "Refund &lt;issued&gt;" in html
        async with admin.post(
            f"{center.base_url}/admin/dispositions",
            data={"code": "sale", "label": "Sale", "active": "0"},
            headers=headers,
        ) as partial:
            assert partial.status == 200
        async with admin.post(
            f"{center.base_url}/admin/dispositions", data={"code": "Bad Code!", "label": "x"}, headers=headers
        ) as refused:
            assert refused.status == 422 and (await refused.json())["details"]["field"] == "code"
        async with admin.post(
            f"{center.base_url}/admin/pause-reasons", data={"label": "Team huddle", "active": "1"}, headers=headers
        ) as partial:
            assert "Team huddle" in await partial.text()
        async with admin.post(
            f"{center.base_url}/admin/pause-reasons", data={"label": "Lunch", "active": "0"}, headers=headers
        ) as partial:
            assert partial.status == 200
        for bad in ("Line\r\nAction: QueueRemove", "Wrap-up", "x" * 81):
            async with admin.post(
                f"{center.base_url}/admin/pause-reasons", data={"label": bad, "active": "1"}, headers=headers
            ) as refused:
                assert refused.status == 422, bad
        async with admin.post(f"{center.base_url}/admin/pause-reasons", data={"label": "No token"}) as forged:
            assert forged.status == 400  # no CSRF header
        async with admin.get(f"{center.base_url}/admin/audit", params={"entity_type": "disposition"}) as page:
            audit = await page.text()
        assert audit.count("<tr><td>") == 2 and "<td>root</td>" in audit  # who, by user name
    finally:
        await admin.close()
    agent, _ = await signed_in(center, "agent")
    try:
        async with agent.get(f"{center.base_url}/desktop") as page:
            desktop = await page.text()
    finally:
        await agent.close()
    assert "Refund &lt;issued&gt;" in desktop and ">Sale<" not in desktop
    assert "<option>Team huddle</option>" in desktop and "<option>Lunch</option>" not in desktop


async def test_audit_export_neutralises_formulas(center: LiveCenter) -> None:
    admin, token = await signed_in(center, "admin")
    try:
        async with admin.post(
            f"{center.base_url}/admin/pause-reasons",
            data={"label": "-Break", "active": "1"},
            headers={"X-CSRF-Token": token},
        ) as partial:
            assert partial.status == 200
        async with admin.get(f"{center.base_url}/admin/audit.csv", params={"entity_type": "pause_reason"}) as answer:
            rows = list(csv.reader(io.StringIO(await answer.text())))
        assert rows[0][:3] == ["at", "actor", "action"]
        assert rows[1][2:5] == ["create", "pause_reason", "'-Break"] and rows[1][1] == "root"
        async with admin.get(f"{center.base_url}/admin/audit", params={"start": "2026-13-01"}) as refused:
            assert refused.status == 422
    finally:
        await admin.close()


async def test_import_with_progress_and_report_then_export(center: LiveCenter) -> None:
    rows = ["name,phones,emails,city", "Imported One,+15557770001,one@example.org,Springfield"]
    rows += [f"Imported {i},+1555777{i:04d},,Shelbyville" for i in range(2, 40)]
    rows += ["Broken Phone,12,,Nowhere", ",+15557779999,,No name"]
    admin, _token = await signed_in(center, "admin")
    try:
        async with admin.get(f"{center.base_url}/admin/import") as page:
            form_token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert form_token is not None
        async with admin.post(
            f"{center.base_url}/admin/import",
            data={"csrf_token": form_token.group(1), "file": io.BytesIO("\n".join(rows).encode())},
            allow_redirects=False,
        ) as started:
            assert started.status == 303
            status_url = f"{center.base_url}{started.headers['Location']}"
        async with admin.get(status_url) as page:
            queued = await page.text()
        assert "queued" in queued and 'hx-trigger="every 1s"' in queued
        worker = ImportWorker(center.runtime.sessions, region="US")
        assert await worker.run_once() is not None
        async with admin.get(status_url, headers={"HX-Request": "true"}) as partial:
            done = await partial.text()
        assert done.startswith('<section id="import-progress"') and "every 1s" not in done
        assert "39 customers imported, 2 rows rejected" in done and "Broken Phone" in done
        async with admin.get(f"{status_url}/rejected.csv") as report:
            rejected = list(csv.reader(io.StringIO(await report.text())))
        assert [r[0] for r in rejected[1:]] == ["41", "42"]
        async with admin.get(f"{center.base_url}/admin/export/customers.csv") as export:
            exported = list(csv.DictReader(io.StringIO(await export.text())))
        assert {"Imported One", "Bob Example"} <= {r["name"] for r in exported}
    finally:
        await admin.close()
    async with center.runtime.sessions() as session:
        assert await session.scalar(select(Customer.city).where(Customer.name == "Imported One")) == "Springfield"
