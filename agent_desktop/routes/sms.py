"""SMS: Twilio's signed webhooks (inbound texts, delivery status) and the agents' inbox and conversations."""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import STAFF, actor, json_body, runtime
from crm_core.customers.models import Customer
from crm_core.errors import ValidationFailed
from crm_core.sms import campaigns
from crm_core.sms import service as sms
from crm_core.sms.models import SmsCampaign
from crm_core.users.models import Role, User
from sms_gateway.inbound import receive_sms, record_status, signature_valid

log = logging.getLogger(__name__)
blueprint = Blueprint("sms", __name__)
VIEWS = ("unassigned", "mine", "queue")
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def _signed_form() -> dict[str, str]:
    """The posted fields of a request Twilio signed for our public URL; 403 for anything else."""
    settings = runtime().settings
    form = {k: v for k, v in (await request.form).items()}
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
    url = settings.public_base_url.rstrip("/") + request.path
    if request.query_string:
        url += "?" + request.query_string.decode()
    if not token or not signature_valid(token, url, form, request.headers.get("X-Twilio-Signature", "")):
        log.warning("refused an SMS webhook without a valid signature from %s", request.remote_addr)
        abort(403, "The request is not signed by Twilio.")
    return form


def _wake_outbox() -> None:
    outbox = current_app.extensions.get("sms_outbox")
    if outbox is not None:
        outbox.wake.set()


@blueprint.post("/sms/inbound")
async def inbound_webhook() -> Any:
    form = await _signed_form()
    settings = runtime().settings
    try:
        async with runtime().unit_of_work() as session:
            outcome = await receive_sms(
                session=session,
                params=form,
                region=settings.default_region,
                queue=settings.sms_queue,
                help_text=settings.sms_help_text,
            )
    except IntegrityError:  # the same MessageSid arriving twice at once: the other request stored it
        log.info("inbound SMS %s stored by a concurrent retry", form.get("MessageSid"))
    else:
        if not outcome.duplicate:
            _wake_outbox()
    return Response(EMPTY_TWIML, mimetype="text/xml")


@blueprint.post("/sms/status")
async def status_webhook() -> Any:
    form = await _signed_form()
    async with runtime().unit_of_work() as session:
        await record_status(session=session, params=form, ref=request.args.get("ref"))
    return Response("", status=204)


# --- the inbox ------------------------------------------------------------------------------------------------------


def _view() -> tuple[str, str | None]:
    view = request.args.get("view", "unassigned")
    if view not in VIEWS:
        raise ValidationFailed("view is one of unassigned, mine, queue.", field="view")
    queue = (request.args.get("queue") or "").strip()[:64] or None
    return view, queue


async def _inbox_context() -> dict[str, Any]:
    me = actor()
    view, queue = _view()
    async with runtime().sessions() as session:
        queues = await sms.inbox_queues(session=session, actor=me)
        if view == "queue" and queue is None:
            queue = queues[0] if queues else runtime().settings.sms_queue
        rows = await sms.list_conversations(session=session, actor=me, view=view, queue=queue)  # type: ignore[arg-type]
        counts = await sms.open_counts(session=session, actor=me)
    return {"rows": rows, "view": view, "queue": queue, "queues": queues, "counts": counts}


@blueprint.get("/sms")
@roles_allowed(*STAFF)
async def inbox() -> Any:
    return await render_template("sms/inbox.html", **await _inbox_context())


@blueprint.get("/sms/list")
@roles_allowed(*STAFF)
async def inbox_list() -> Any:
    return await render_template("sms/inbox_list.html", **await _inbox_context())


@blueprint.get("/sms/workspace")
@roles_allowed(*STAFF)
async def workspace_list() -> Any:
    """The agent workspace's SMS interactions: open conversations that are mine, then unassigned ones."""
    me = actor()
    async with runtime().sessions() as session:
        mine = await sms.list_conversations(session=session, actor=me, view="mine", limit=20)
        unassigned = await sms.list_conversations(session=session, actor=me, view="unassigned", limit=20)
    return await render_template("sms/workspace_list.html", mine=mine, unassigned=unassigned)


async def _conversation_context(conversation_id: str) -> dict[str, Any]:
    me = actor()
    async with runtime().sessions() as session:
        conversation, messages = await sms.get_conversation(session=session, actor=me, conversation_id=conversation_id)
        customer = await session.get(Customer, conversation.customer_id) if conversation.customer_id else None
        assignee = await session.get(User, conversation.assignee_id) if conversation.assignee_id else None
        opted_out = await sms.is_opted_out(session=session, number=conversation.number)
        agents = []
        if me.role in (Role.SUPERVISOR, Role.ADMIN):
            agents = list(
                await session.scalars(
                    select(User)
                    .where(User.is_active.is_(True), User.role.in_([Role.AGENT.value, Role.SUPERVISOR.value]))
                    .order_by(User.display_name)
                )
            )
    return {
        "conversation": conversation,
        "messages": messages,
        "customer": customer,
        "assignee": assignee,
        "opted_out": opted_out,
        "agents": agents,
        "me": me,
        "supervising": me.role in (Role.SUPERVISOR, Role.ADMIN),
    }


@blueprint.get("/sms/conversations/<conversation_id>")
@roles_allowed(*STAFF)
async def conversation_page(conversation_id: str) -> Any:
    return await render_template("sms/conversation.html", **await _conversation_context(conversation_id))


@blueprint.get("/sms/conversations/<conversation_id>/thread")
@roles_allowed(*STAFF)
async def conversation_thread(conversation_id: str) -> Any:
    return await render_template("sms/thread.html", **await _conversation_context(conversation_id))


@blueprint.get("/sms/customers/<customer_id>")
@roles_allowed(*STAFF)
async def customer_sms(customer_id: str) -> Any:
    """The customer 360 page's SMS section: the newest conversation and every opt-out change of their numbers."""
    me = actor()
    async with runtime().sessions() as session:
        customer = await session.get(Customer, customer_id)
        if customer is None:
            abort(404, "No such customer.")
        conversation, messages = await sms.customer_conversation(session=session, actor=me, customer_id=customer_id)
        consent = await sms.consent_history(session=session, customer_id=customer_id)
    return await render_template(
        "sms/customer_section.html", customer=customer, conversation=conversation, messages=messages, consent=consent
    )


async def _field(name: str, limit: int = 2000) -> str:
    form = await request.form
    value = form.get(name)
    if value is None:
        data = await request.get_json(silent=True)
        value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str):
        return ""
    return value[:limit]


@blueprint.post("/sms/conversations/<conversation_id>/reply")
@roles_allowed(*STAFF, api=True)
async def conversation_reply(conversation_id: str) -> Any:
    body = await _field("body")
    async with runtime().unit_of_work() as session:
        await sms.reply(
            session=session,
            actor=actor(),
            conversation_id=conversation_id,
            body=body,
            sender=runtime().settings.sms_sender,
        )
    _wake_outbox()
    return await _after_change(conversation_id)


@blueprint.post("/sms/conversations/<conversation_id>/assign")
@roles_allowed(*STAFF, api=True)
async def conversation_assign(conversation_id: str) -> Any:
    me = actor()
    choice = (await _field("assignee_id", 64)).strip()
    assignee = me.user_id if choice in ("", "me") else (None if choice == "nobody" else choice)
    async with runtime().unit_of_work() as session:
        await sms.assign(session=session, actor=me, conversation_id=conversation_id, assignee_id=assignee)
    return await _after_change(conversation_id)


@blueprint.post("/sms/conversations/<conversation_id>/close")
@roles_allowed(*STAFF, api=True)
async def conversation_close(conversation_id: str) -> Any:
    async with runtime().unit_of_work() as session:
        await sms.close(session=session, actor=actor(), conversation_id=conversation_id)
    return await _after_change(conversation_id)


async def _after_change(conversation_id: str) -> Any:
    if request.headers.get("HX-Request") == "true":
        return await render_template("sms/thread.html", **await _conversation_context(conversation_id))
    if request.accept_mimetypes.best == "application/json" or request.is_json:
        return {"ok": True, "conversation_id": conversation_id}
    return redirect(url_for("sms.conversation_page", conversation_id=conversation_id))


# --- campaigns (marketers; a JSON API for now, the screens are still to come) --------------------------------------


@blueprint.post("/api/sms/campaigns")
@roles_allowed(Role.MARKETER, api=True)
async def campaign_create() -> Any:
    data = await json_body()
    customer_ids = data.get("customer_ids")
    if customer_ids is not None and (
        not isinstance(customer_ids, list) or not all(isinstance(c, str) for c in customer_ids)
    ):
        raise ValidationFailed("customer_ids is a list of customer ids.", field="customer_ids")
    for name in ("quiet_start_hour", "quiet_end_hour"):
        if name in data and not isinstance(data[name], int):
            raise ValidationFailed(f"{name} is a whole hour from 0 to 23.", field=name)
    async with runtime().unit_of_work() as session:
        campaign = await campaigns.create_campaign(
            session=session,
            actor=actor(),
            name=str(data.get("name") or ""),
            template=str(data.get("template") or ""),
            sender=str(data.get("sender") or runtime().settings.sms_sender or ""),
            segment_id=str(data["segment_id"]) if data.get("segment_id") else None,
            customer_ids=customer_ids,
            quiet_start_hour=data.get("quiet_start_hour", 21),
            quiet_end_hour=data.get("quiet_end_hour", 9),
        )
        progress = await campaigns.campaign_progress(session=session, actor=actor(), campaign_id=campaign.id)
    return {"id": campaign.id, "status": campaign.status, "recipients": progress}, 201


@blueprint.post("/api/sms/campaigns/<campaign_id>/<action>")
@roles_allowed(Role.MARKETER, api=True)
async def campaign_action(campaign_id: str, action: str) -> Any:
    async with runtime().unit_of_work() as session:
        campaign = await campaigns.change_campaign(
            session=session, actor=actor(), campaign_id=campaign_id, action=action
        )
    return {"id": campaign.id, "status": campaign.status}


@blueprint.get("/api/sms/campaigns/<campaign_id>")
@roles_allowed(Role.MARKETER, Role.SUPERVISOR, api=True)
async def campaign_status(campaign_id: str) -> Any:
    async with runtime().sessions() as session:
        progress = await campaigns.campaign_progress(session=session, actor=actor(), campaign_id=campaign_id)
        campaign = await session.get(SmsCampaign, campaign_id)
    if campaign is None:
        abort(404, "No such campaign.")
    return {"id": campaign.id, "name": campaign.name, "status": campaign.status, "recipients": progress}
