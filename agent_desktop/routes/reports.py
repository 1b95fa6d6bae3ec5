"""Supervision: the live wallboard page, its intervals, and the call reports (page and CSV)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from quart import Blueprint, Response, current_app, render_template, request, session

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import actor, day_argument, runtime
from agent_desktop.routes.recordings import wallboard_flagged_calls
from crm_core.calls.reports import CSV_COLUMNS, CallReport, call_report, calls_per_interval
from crm_core.calls.wallboard import agents_today, missed_today
from crm_core.csv_safety import safe_row
from crm_core.errors import ValidationFailed
from crm_core.users.models import Role

blueprint = Blueprint("reports", __name__)


@blueprint.get("/wallboard")
@roles_allowed(Role.SUPERVISOR)
async def wallboard() -> Any:
    return await render_template(
        "wallboard.html",
        me=dict(session),
        service_level_seconds=runtime().settings.service_level_seconds,
        flagged=await wallboard_flagged_calls(),
    )


@blueprint.get("/api/wallboard/intervals")
@roles_allowed(Role.SUPERVISOR, api=True)
async def api_intervals() -> Any:
    now = datetime.now(UTC)
    since = datetime.combine(now.date(), time(), UTC)
    async with runtime().sessions() as db:
        rows = await calls_per_interval(session=db, actor=actor(), since=since, until=now, minutes=30)
    return {"intervals": rows}


@blueprint.get("/api/wallboard/today")
@roles_allowed(Role.SUPERVISOR, api=True)
async def api_today() -> Any:
    """From the database (it survives restarts): each agent's calls today, their queues, missed calls per queue;
    and from the PBX, who is on each live call (the caller, not the PBX's call id)."""
    now = datetime.now(UTC)
    since = datetime.combine(now.date(), time(), UTC)
    async with runtime().sessions() as db:
        agents = await agents_today(session=db, actor=actor(), since=since)
        missed = await missed_today(session=db, actor=actor(), since=since)
    pbx = current_app.extensions.get("pbx")
    snapshot = pbx.snapshot() if pbx is not None else None
    calls = {
        call.linkedid: {"caller": call.caller_name or call.caller_number or "withheld", "number": call.caller_number}
        for call in (snapshot.calls if snapshot else ())
    }
    return {
        "agents": {
            a.extension: {"name": a.name, "queues": list(a.queues), "calls_today": a.calls_today} for a in agents
        },
        "missed": missed,
        "calls": calls,
    }


async def _report() -> CallReport:
    today = datetime.now(UTC).date()
    start = day_argument(request.args.get("start"), today - timedelta(days=6), name="start")
    end = day_argument(request.args.get("end"), today, name="end")
    if end >= date.max:  # the report runs to the end of its last day, which must itself be a day
        raise ValidationFailed(f"end must be before {date.max.isoformat()}.", field="end")
    async with runtime().sessions() as db:
        return await call_report(
            session=db,
            actor=actor(),
            start=datetime.combine(start, time(), UTC),
            end=datetime.combine(end + timedelta(days=1), time(), UTC),
            queue=request.args.get("queue") or None,
            agent=request.args.get("agent") or None,
            service_level_seconds=runtime().settings.service_level_seconds,
        )


@blueprint.get("/reports")
@roles_allowed(Role.SUPERVISOR)
async def reports() -> Any:
    report = await _report()
    last_day = (report.end - timedelta(days=1)).date()
    return await render_template("reports.html", report=report, args=request.args, last_day=last_day)


@blueprint.get("/reports.csv")
@roles_allowed(Role.SUPERVISOR)
async def reports_csv() -> Any:
    report = await _report()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in report.csv_rows():
        writer.writerow(safe_row(row))  # a queue or disposition named =… must stay text in a spreadsheet
    name = f"calls-{report.start.date()}-{(report.end - timedelta(days=1)).date()}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
