"""Tickets from outside the desk: the public web form (no sign-in; honeypot, signed time token, per-address limit,
size limits, and the same answer whether or not the sender is a known customer), and "Create ticket" in the SMS
inbox."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from quart import Blueprint, redirect, render_template, request, url_for

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, actor, runtime
from crm_core.db import utcnow
from crm_core.errors import CrmError
from crm_core.tickets.intake import (
    MESSAGE_LENGTH,
    WebRequest,
    check_form_token,
    count_submission,
    form_token,
    submit_web_request,
    ticket_from_conversation,
)

log = logging.getLogger(__name__)
blueprint = Blueprint("intake", __name__)
HONEYPOT = "website"  # hidden from people by the stylesheet; a bot that fills every field fills it
MAX_FIELD = 10_000  # anything longer is cut before the checks (which then say it is too long)


async def _page(values: dict[str, str], error: str | None, status: int = 200) -> Any:
    token = form_token(runtime().secret_key, utcnow())
    page = await render_template(
        "intake/form.html", values=values, error=error, token=token, message_length=MESSAGE_LENGTH
    )
    return page, status


@blueprint.get("/intake")
async def intake_form() -> Any:
    return await _page({}, None)


@blueprint.post("/intake")
async def intake_submit() -> Any:
    form = await request.form
    values = {k: str(form.get(k, ""))[:MAX_FIELD] for k in ("name", "email", "phone", "subject", "message")}
    settings = runtime().settings
    now = utcnow()
    try:
        async with runtime().unit_of_work() as db:  # counted on its own: a refused form counts too
            await count_submission(
                session=db, address=request.remote_addr or "unknown", now=now, per_hour=settings.intake_per_hour
            )
        if form.get(HONEYPOT):
            # a bot: the same answer a person gets, and nothing written
            log.info("web form: honeypot filled from %s; nothing created", request.remote_addr)
            return await render_template("intake/thanks.html"), 200
        check_form_token(
            str(form.get("form_token", "")),
            secret=runtime().secret_key,
            now=now,
            min_age=timedelta(seconds=settings.intake_min_seconds),
        )
        async with runtime().unit_of_work() as db:
            await submit_web_request(session=db, form=WebRequest(**values), region=settings.default_region, now=now)
    except CrmError as error:
        return await _page(values, error.message, error.http_status)
    return await render_template("intake/thanks.html"), 200


@blueprint.post("/sms/conversations/<conversation_id>/ticket")
@roles_allowed(*STAFF, api=True)
async def ticket_from_sms(conversation_id: str) -> Any:
    """ "Create ticket" in the SMS inbox: a ticket for the conversation's customer with its texts linked."""
    form = await request.form
    subject = str(form.get("subject", ""))[:200] if form else ""
    async with runtime().unit_of_work() as db:
        ticket = await ticket_from_conversation(
            session=db, actor=actor(), conversation_id=conversation_id, subject=subject or None
        )
    target = url_for("tickets.ticket_page", ticket_id=ticket.id)
    if request.headers.get("HX-Request") == "true":
        return "", 200, {"HX-Redirect": target}
    if request.is_json:
        return {"id": ticket.id, "number": ticket.number}, 201
    return redirect(target, 303)
