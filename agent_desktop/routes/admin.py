"""Admin screens: dispositions, pause reasons, the audit viewer, customer import (with its live progress) and
export. Admins only; every change goes through a crm_core service that audits it."""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from quart import Blueprint, Response, current_app, redirect, render_template, request, url_for
from sqlalchemy import select

from agent_desktop.auth import CSRF_KEY, check_csrf, roles_allowed
from agent_desktop.routes.common import actor, day_argument, runtime
from crm_core.audit.viewer import search_audit
from crm_core.calls.codes import all_dispositions, all_pause_reasons, save_disposition, save_pause_reason
from crm_core.customers.import_jobs import get_import, queue_import
from crm_core.customers.importer import export_customers_csv
from crm_core.errors import ValidationFailed
from crm_core.users.logins import unlock_user
from crm_core.users.models import Role, User
from crm_core.users.service import (
    activate_user,
    change_role,
    create_user,
    deactivate_user,
    generate_password,
    set_password,
)

blueprint = Blueprint("admin", __name__, url_prefix="/admin")
AUDIT_PAGE = 100
MAX_IMPORT_BYTES = 64 * 1024 * 1024


def _formula_safe(value: str) -> str:
    # a cell starting with = + - @ (or a tab or CR) would run as a formula in a spreadsheet
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@blueprint.get("")
@roles_allowed()
async def index() -> Any:
    return redirect(url_for("admin.users"))


# --- dispositions and pause reasons -------------------------------------------------------------------------


@blueprint.get("/dispositions")
@roles_allowed()
async def dispositions() -> Any:
    async with runtime().sessions() as db:
        rows = await all_dispositions(session=db)
    return await render_template("admin/dispositions.html", dispositions=rows)


@blueprint.post("/dispositions")
@roles_allowed(api=True)
async def save_dispositions() -> Any:
    form = await request.form
    async with runtime().unit_of_work() as db:
        await save_disposition(
            session=db,
            actor=actor(),
            code=form.get("code", ""),
            label=form.get("label", ""),
            active=form.get("active") == "1",
        )
    async with runtime().sessions() as db:
        rows = await all_dispositions(session=db)
    return await render_template("admin/dispositions_table.html", dispositions=rows)


@blueprint.get("/pause-reasons")
@roles_allowed()
async def pause_reasons() -> Any:
    async with runtime().sessions() as db:
        rows = await all_pause_reasons(session=db)
    return await render_template("admin/pause_reasons.html", reasons=rows)


@blueprint.post("/pause-reasons")
@roles_allowed(api=True)
async def save_pause_reasons() -> Any:
    form = await request.form
    async with runtime().unit_of_work() as db:
        await save_pause_reason(
            session=db, actor=actor(), label=form.get("label", ""), active=form.get("active") == "1"
        )
    async with runtime().sessions() as db:
        rows = await all_pause_reasons(session=db)
    return await render_template("admin/pause_reasons_table.html", reasons=rows)


# --- audit viewer -------------------------------------------------------------------------------------------


def _audit_filters() -> dict[str, Any]:
    args = request.args
    page = args.get("page", "1")
    if not page.isdigit() or not 1 <= int(page) <= 10_000:
        raise ValidationFailed("The page must be a whole number from 1.", field="page")
    filters: dict[str, Any] = {"page": int(page)}
    for key, limit in (("actor_id", 32), ("action", 16), ("entity_type", 32), ("entity_id", 64)):
        value = args.get(key, "").strip()
        if len(value) > limit:
            raise ValidationFailed(f"{key} is longer than {limit} characters.", field=key)
        filters[key] = value or None
    today = datetime.now(UTC).date()
    start = day_argument(args.get("start"), today - timedelta(days=30))
    end = day_argument(args.get("end"), today)
    if end < start:
        raise ValidationFailed("The end is before the start.", field="end")
    filters["since"] = datetime.combine(start, time(), UTC)
    filters["until"] = datetime.combine(end, time(), UTC) + timedelta(days=1)
    return filters


async def _audit_rows(filters: dict[str, Any], limit: int, offset: int) -> tuple[list[Any], dict[str, str]]:
    criteria = {k: v for k, v in filters.items() if k != "page"}
    async with runtime().sessions() as db:
        entries = await search_audit(session=db, actor=actor(), limit=limit, offset=offset, **criteria)
        ids = {e.actor_id for e in entries if e.actor_id}
        names = {
            row.id: row.username for row in await db.execute(select(User.id, User.username).where(User.id.in_(ids)))
        }
    return entries, names


@blueprint.get("/audit")
@roles_allowed()
async def audit() -> Any:
    filters = _audit_filters()
    entries, names = await _audit_rows(filters, AUDIT_PAGE + 1, (filters["page"] - 1) * AUDIT_PAGE)
    return await render_template(
        "admin/audit.html",
        entries=entries[:AUDIT_PAGE],
        names=names,
        has_next=len(entries) > AUDIT_PAGE,
        page=filters["page"],
        args=request.args,
    )


@blueprint.get("/audit.csv")
@roles_allowed()
async def audit_csv() -> Any:
    filters = _audit_filters()
    entries, names = await _audit_rows(filters, 100_000, 0)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["at", "actor", "action", "entity_type", "entity_id", "before", "after"])
    for e in entries:
        writer.writerow(
            [
                _formula_safe(value)
                for value in (
                    e.at.isoformat(),
                    names.get(e.actor_id or "", e.actor_id or "system"),
                    e.action,
                    e.entity_type,
                    e.entity_id,
                    "" if e.before is None else str(e.before),
                    "" if e.after is None else str(e.after),
                )
            ]
        )
    return Response(
        out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": 'attachment; filename="audit.csv"'}
    )


# --- customer import and export -----------------------------------------------------------------------------


@blueprint.get("/import")
@roles_allowed()
async def import_form() -> Any:
    return await render_template("admin/import.html", error=None)


@blueprint.post("/import")
@roles_allowed()
async def import_upload() -> Any:
    request.max_content_length = MAX_IMPORT_BYTES
    form = await request.form
    check_csrf(form.get(CSRF_KEY))
    upload = (await request.files).get("file")
    if upload is None or not upload.filename:
        return await render_template("admin/import.html", error="Choose a CSV file to import."), 422
    folder = runtime().settings.data_dir / "imports"
    await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)
    stored = folder / f"{secrets.token_hex(16)}.csv"
    await upload.save(stored)
    async with runtime().unit_of_work() as db:
        job = await queue_import(session=db, actor=actor(), file_name=Path(upload.filename).name, stored_path=stored)
    worker = current_app.extensions.get("import_worker")
    if worker is not None:
        worker.wake.set()
    return redirect(url_for("admin.import_status", job_id=job.id), 303)


@blueprint.get("/imports/<job_id>")
@roles_allowed()
async def import_status(job_id: str) -> Any:
    async with runtime().sessions() as db:
        job = await get_import(session=db, actor=actor(), job_id=job_id)
    partial = request.headers.get("HX-Request") == "true"
    return await render_template("admin/import_progress.html" if partial else "admin/import_status.html", job=job)


@blueprint.get("/imports/<job_id>/rejected.csv")
@roles_allowed()
async def import_rejected(job_id: str) -> Any:
    async with runtime().sessions() as db:
        job = await get_import(session=db, actor=actor(), job_id=job_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["row", "name", "reason"])
    for item in job.rejected or []:
        writer.writerow([item.get("row", ""), _formula_safe(str(item.get("name", ""))), item.get("reason", "")])
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="rejected-{job.id}.csv"'},
    )


@blueprint.get("/export/customers.csv")
@roles_allowed()
async def export_customers() -> Any:
    out = io.StringIO()
    async with runtime().sessions() as db:
        await export_customers_csv(out, session=db, actor=actor())
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="customers.csv"'},
    )


# --- users and queues ---------------------------------------------------------------------------------------


async def _users_page(message: str = "", status: int = 200) -> Any:
    async with runtime().sessions() as db:
        users = list(await db.scalars(select(User).order_by(User.is_active.desc(), User.username)))
    return await render_template("admin/users_table.html", users=users, roles=list(Role), message=message), status


def _queues_field(text: str) -> list[str]:
    return [q.strip() for q in text.split(",") if q.strip()]


@blueprint.get("/users")
@roles_allowed()
async def users() -> Any:
    async with runtime().sessions() as db:
        rows = list(await db.scalars(select(User).order_by(User.is_active.desc(), User.username)))
    return await render_template("admin/users.html", users=rows, roles=list(Role), message="")


@blueprint.post("/users")
@roles_allowed(api=True)
async def create_user_row() -> Any:
    """Create a user with a one-time password (shown once, to be changed at the first sign-in)."""
    form = await request.form
    password = generate_password()
    async with runtime().unit_of_work() as db:
        user = await create_user(
            session=db,
            actor=actor(),
            username=form.get("username", ""),
            password=password,
            role=_role(form.get("role", "")),
            display_name=form.get("display_name", "").strip()[:128] or None,
            extension=form.get("extension", "").strip() or None,
            queues=_queues_field(form.get("queues", "")),
            must_change_password=True,
        )
        name = user.username
    return await _users_page(f"{name} created. One-time password (shown once): {password}")


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationFailed(f"{value[:20]!r} is not a role.", field="role") from None


@blueprint.post("/users/<user_id>")
@roles_allowed(api=True)
async def change_user(user_id: str) -> Any:
    form = await request.form
    async with runtime().unit_of_work() as db:
        user = await change_role(
            session=db,
            actor=actor(),
            user_id=user_id,
            role=_role(form.get("role", "")),
            extension=form.get("extension", "").strip() or None,
            queues=_queues_field(form.get("queues", "")),
        )
        name = user.username
    return await _users_page(f"{name} saved; their sessions ended, so they sign in as what they are now.")


@blueprint.post("/users/<user_id>/active")
@roles_allowed(api=True)
async def set_user_active(user_id: str) -> Any:
    form = await request.form
    async with runtime().unit_of_work() as db:
        if form.get("active") == "1":
            user = await activate_user(session=db, actor=actor(), user_id=user_id)
        else:
            user = await deactivate_user(session=db, actor=actor(), user_id=user_id)
        name, active = user.username, user.is_active
    return await _users_page(f"{name} {'can sign in again' if active else 'is deactivated and signed out'}.")


@blueprint.post("/users/<user_id>/password")
@roles_allowed(api=True)
async def reset_user_password(user_id: str) -> Any:
    password = generate_password()
    async with runtime().unit_of_work() as db:
        user = await set_password(session=db, actor=actor(), user_id=user_id, password=password)
        name = user.username
    return await _users_page(f"New one-time password for {name} (shown once): {password}")


@blueprint.post("/users/<user_id>/unlock")
@roles_allowed(api=True)
async def unlock_user_row(user_id: str) -> Any:
    async with runtime().unit_of_work() as db:
        lifted = await unlock_user(session=db, actor=actor(), user_id=user_id)
    return await _users_page("Sign-in lock lifted." if lifted else "That account was not locked.")


@blueprint.get("/queues")
@roles_allowed()
async def queues() -> Any:
    """Queues as the PBX has them now (live members, paused or not) beside the users configured for each."""
    pbx = current_app.extensions.get("pbx")
    snapshot = pbx.snapshot() if pbx is not None else None
    async with runtime().sessions() as db:
        people = list(await db.scalars(select(User).where(User.is_active.is_(True)).order_by(User.username)))
    configured: dict[str, list[User]] = {}
    for user in people:
        for queue in user.queues or []:
            configured.setdefault(str(queue), []).append(user)
    live: dict[str, list[Any]] = {}
    for agent in snapshot.agents if snapshot else ():
        for queue in agent.queues:
            live.setdefault(queue, []).append(agent)
    names = sorted({*configured, *live, *(q.queue for q in (snapshot.queues if snapshot else ()))})
    by_extension = {u.extension: u for u in people if u.extension}
    return await render_template(
        "admin/queues.html",
        names=names,
        configured=configured,
        live=live,
        by_extension=by_extension,
        connected=bool(snapshot and snapshot.connected),
    )
