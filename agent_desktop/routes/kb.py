"""The knowledge base in the desktop: the solutions list and search (agents read published ones), the editor
(supervisors and admins), and on a ticket's page the suggestions panel — link a solution, send it to the customer —
and the ticket's satisfaction (CSAT)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app, redirect, render_template, request, url_for
from sqlalchemy import select

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, actor, runtime
from agent_desktop.routes.tickets import _ticket_context as ticket_context
from crm_core.kb.models import KbSolution
from crm_core.kb.service import (
    create_solution,
    get_solution,
    link_solution,
    linked_solutions,
    search_solutions,
    send_solution,
    suggest_for_text,
    update_solution,
)
from crm_core.sms.models import SmsMessage
from crm_core.tickets.csat import csat_of
from crm_core.tickets.service import get_ticket
from crm_core.users.models import Role, User

blueprint = Blueprint("kb", __name__)
EDITORS = (Role.SUPERVISOR,)


async def _form() -> dict[str, str]:
    form = await request.form
    if form:
        return {k: str(v) for k, v in form.items()}
    data = await request.get_json(silent=True)
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _editing() -> bool:
    return actor().role in (Role.SUPERVISOR, Role.ADMIN)


@blueprint.get("/kb")
@roles_allowed(*STAFF)
async def solution_list() -> Any:
    """Solutions: the newest, or those holding every word searched; an htmx search swaps the results only."""
    query = request.args.get("q", "")[:200]
    status = request.args.get("status") or None
    async with runtime().sessions() as db:
        found = await search_solutions(session=db, actor=actor(), query=query, status=status)
    template = "kb/_results.html" if request.headers.get("HX-Request") == "true" else "kb/list.html"
    return await render_template(template, found=found, editing=_editing())


@blueprint.get("/kb/new")
@roles_allowed(*EDITORS)
async def solution_new() -> Any:
    return await render_template("kb/edit.html", solution=None, values={"status": "draft"}, error=None)


async def _names(db: Any, *user_ids: str | None) -> dict[str, str]:
    ids = {u for u in user_ids if u}
    if not ids:
        return {}
    return {uid: name for uid, name in await db.execute(select(User.id, User.display_name).where(User.id.in_(ids)))}


@blueprint.get("/kb/<solution_id>")
@roles_allowed(*STAFF)
async def solution_page(solution_id: str) -> Any:
    async with runtime().sessions() as db:
        solution = await get_solution(session=db, actor=actor(), solution_id=solution_id)
        names = await _names(db, solution.created_by, solution.updated_by)
    return await render_template("kb/solution.html", solution=solution, names=names, editing=_editing())


@blueprint.get("/kb/<solution_id>/edit")
@roles_allowed(*EDITORS)
async def solution_edit(solution_id: str) -> Any:
    async with runtime().sessions() as db:
        solution = await get_solution(session=db, actor=actor(), solution_id=solution_id)
    values = {"title": solution.title, "body": solution.body, "tags": solution.tags, "status": solution.status}
    return await render_template("kb/edit.html", solution=solution, values=values, error=None)


def _saved(solution: KbSolution) -> Any:
    target = url_for("kb.solution_page", solution_id=solution.id)
    if request.headers.get("HX-Request") == "true":
        return "", 200, {"HX-Redirect": target}
    if request.is_json:
        return {"id": solution.id, "status": solution.status}, 200
    return redirect(target, 303)


def _values(form: dict[str, str]) -> dict[str, str]:
    return {
        "title": form.get("title", "")[:1000],
        "body": form.get("body", "")[:40_000],
        "tags": form.get("tags", "")[:2000],
        "status": form.get("status", "draft") or "draft",
    }


@blueprint.post("/kb")
@roles_allowed(*EDITORS, api=True)
async def solution_create() -> Any:
    values = _values(await _form())
    async with runtime().unit_of_work() as db:
        solution = await create_solution(session=db, actor=actor(), **values)
    return _saved(solution)


@blueprint.post("/kb/<solution_id>")
@roles_allowed(*EDITORS, api=True)
async def solution_update(solution_id: str) -> Any:
    values = _values(await _form())
    async with runtime().unit_of_work() as db:
        solution = await update_solution(session=db, actor=actor(), solution_id=solution_id, **values)
    return _saved(solution)


# --- on the ticket page ---------------------------------------------------------------------------------------------


async def _ticket_panel(ticket_id: str, *, query: str = "", notice: str | None = None) -> Any:
    me = actor()
    async with runtime().sessions() as db:
        ticket = await get_ticket(session=db, actor=me, ticket_id=ticket_id)
        linked = await linked_solutions(session=db, actor=me, ticket_id=ticket.id)
        if query.strip():
            found = (await search_solutions(session=db, actor=me, query=query, status="published", limit=5)).solutions
        else:
            found = await suggest_for_text(session=db, subject=ticket.subject, limit=3)
        sms_ids = [item.link.sms_id for item in linked if item.link.sms_id]
        sms_status: dict[str, str] = {}
        if sms_ids:
            found_sms = await db.execute(select(SmsMessage.id, SmsMessage.status).where(SmsMessage.id.in_(sms_ids)))
            sms_status = {sid: status for sid, status in found_sms}
    linked_ids = {item.solution.id for item in linked}
    return await render_template(
        "tickets/_kb_suggestions.html",
        ticket=ticket,
        linked=linked,
        suggestions=[s for s in found if s.id not in linked_ids],
        query=query,
        notice=notice,
        sms_status=sms_status,
        loaded=True,
    )


@blueprint.get("/tickets/<ticket_id>/kb")
@roles_allowed(*STAFF)
async def ticket_solutions(ticket_id: str) -> Any:
    """The ticket page's knowledge panel: solutions suggested from the subject, or found by a search."""
    return await _ticket_panel(ticket_id, query=request.args.get("q", "")[:200])


@blueprint.post("/tickets/<ticket_id>/kb/<solution_id>/link")
@roles_allowed(*STAFF, api=True)
async def ticket_link_solution(ticket_id: str, solution_id: str) -> Any:
    async with runtime().unit_of_work() as db:
        await link_solution(session=db, actor=actor(), ticket_id=ticket_id, solution_id=solution_id)
    if request.is_json:
        return {"ok": True}
    return await _ticket_panel(ticket_id, notice="Linked to the ticket.")


@blueprint.post("/tickets/<ticket_id>/kb/<solution_id>/send")
@roles_allowed(*STAFF, api=True)
async def ticket_send_solution(ticket_id: str, solution_id: str) -> Any:
    """Send a solution to the customer: a reply on the ticket, and an SMS when the customer can get one."""
    async with runtime().unit_of_work() as db:
        sent = await send_solution(
            session=db,
            actor=actor(),
            ticket_id=ticket_id,
            solution_id=solution_id,
            sms_sender=runtime().settings.sms_sender,
        )
    if sent.sms is not None:
        outbox = current_app.extensions.get("sms_outbox")
        if outbox is not None:
            outbox.wake.set()
    if request.is_json:
        return {"ok": True, "sms_id": sent.sms.id if sent.sms else None, "sms_skipped": sent.sms_skipped}
    if request.headers.get("HX-Request") == "true":
        # the reply is in the ticket's conversation now: the whole ticket is swapped (its panels load again)
        async with runtime().sessions() as db:
            context = await ticket_context(db, actor(), ticket_id)
        return await render_template("tickets/_ticket.html", **context)
    return redirect(url_for("tickets.ticket_page", ticket_id=ticket_id), 303)


@blueprint.get("/tickets/<ticket_id>/csat")
@roles_allowed(*STAFF)
async def ticket_csat(ticket_id: str) -> Any:
    """The ticket page's satisfaction panel: each resolution's request and score."""
    async with runtime().sessions() as db:
        ticket = await get_ticket(session=db, actor=actor(), ticket_id=ticket_id)
        rows = await csat_of(session=db, ticket_id=ticket.id)
    if request.args.get("format") == "json":
        return {"csat": [{"status": r.status, "score": r.score, "channel": r.channel} for r in rows]}
    return await render_template("tickets/_csat.html", ticket=ticket, csat=rows, loaded=True)
