"""Marketer screens for SMS campaigns (list, build, preview, start/pause/resume/cancel, live progress, results) and
the admin screens for SMS senders and automations. Progress is polled by htmx once a second: it is an aggregate over
every recipient that changes hundreds of times a second during a send, so a bounded one-query-a-second poll costs
the same at any sending rate, where a Socket.IO push per status callback would not (and marketers are on no
Socket.IO namespace)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from quart import Blueprint, Response, abort, render_template, request, url_for
from sqlalchemy import select

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import actor, runtime
from crm_core.errors import ValidationFailed
from crm_core.segments.models import Segment
from crm_core.sms import automations
from crm_core.sms import campaigns as service
from crm_core.sms.models import SENDER_KINDS, SmsCampaign
from crm_core.sms.senders import KIND_NAMES, SenderIn, campaign_refusal, list_senders, save_sender
from crm_core.sms.templates import template_fields
from crm_core.users.models import Role

blueprint = Blueprint("campaigns", __name__)
STATUS_ORDER = (
    "pending",
    "queued",
    "sending",
    "accepted",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "opted_out",
    "skipped",
)
FINAL = frozenset({"delivered", "undelivered", "failed", "opted_out", "skipped"})
MAX_CSV_BYTES = 20 * 1024 * 1024


def _hx_redirect(url: str) -> Response:
    response = Response("", status=204)
    response.headers["HX-Redirect"] = url
    return response


@blueprint.get("/campaigns")
@roles_allowed(Role.MARKETER)
async def campaign_list() -> Any:
    async with runtime().sessions() as session:
        rows = await service.list_campaigns(session=session, actor=actor())
    return await render_template("campaigns/list.html", rows=rows)


async def _form_context() -> dict[str, Any]:
    async with runtime().sessions() as session:
        segments = list(await session.scalars(select(Segment).order_by(Segment.name)))
        senders = await list_senders(session=session, active_only=True)
    return {
        "segments": segments,
        "senders": [(s, campaign_refusal(s)) for s in senders],
        "kind_names": KIND_NAMES,
    }


@blueprint.get("/campaigns/new")
@roles_allowed(Role.MARKETER)
async def campaign_new() -> Any:
    return await render_template("campaigns/new.html", **await _form_context())


def _hour(value: str | None, name: str, default: int) -> int:
    if value is None or not value.strip():
        return default
    if not value.strip().isdigit() or not 0 <= int(value) <= 23:
        raise ValidationFailed(f"{name.replace('_', ' ').capitalize()} is a whole hour from 0 to 23.", field=name)
    return int(value)


def _schedule(value: str, zone_name: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        zone = ZoneInfo(zone_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed("The schedule's time zone is not known.", field="zone") from None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationFailed(
            "The schedule is a date and time, like 2026-12-24T10:00.", field="scheduled_at"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


@blueprint.post("/campaigns")
@roles_allowed(Role.MARKETER, api=True)
async def campaign_create() -> Any:
    form = await request.form
    files = await request.files
    audience = form.get("audience", "segment")
    segment_id = customer_ids = csv_audience = None
    settings = runtime().settings
    if audience == "segment":
        segment_id = form.get("segment_id", "").strip() or None
        if not segment_id:
            raise ValidationFailed("Choose a segment.", field="segment_id")
    elif audience == "customers":
        picked = [line.strip() for line in form.get("customers", "").replace(",", "\n").splitlines() if line.strip()]
        if not picked:
            raise ValidationFailed("List the customers: one id or phone number a line.", field="customers")
        async with runtime().sessions() as session:
            customer_ids, unknown = await service.resolve_customers(
                session=session, picked=picked, region=settings.default_region
            )
        if unknown:
            shown = ", ".join(repr(u[:40]) for u in unknown[:5])
            raise ValidationFailed(
                f"{len(unknown)} line(s) match no customer: {shown}. Nothing was created.", field="customers"
            )
    elif audience == "csv":
        upload = files.get("csv")
        raw = upload.read(MAX_CSV_BYTES + 1) if upload is not None else b""
        if not raw:
            raise ValidationFailed("Choose a CSV file.", field="csv")
        if len(raw) > MAX_CSV_BYTES:
            raise ValidationFailed("The CSV is larger than 20 MB.", field="csv")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("The CSV is not UTF-8 text.", field="csv") from None
        csv_audience = service.parse_audience_csv(text, region=settings.default_region)
        if not csv_audience.rows:
            lines = "; ".join(f"line {n}: {why}" for n, why in csv_audience.problems[:5])
            raise ValidationFailed(f"No row of the CSV can be used ({lines}).", field="csv")
    else:
        raise ValidationFailed("The audience is a segment, chosen customers or a CSV.", field="audience")
    choice = form.get("sender_mode", "one")
    sender = form.get("sender", "").strip() if choice == "one" else ""
    pool = form.getlist("pool") if choice == "pool" else []
    if choice == "pool" and len(pool) < 2:
        raise ValidationFailed("A pool is two senders or more.", field="pool")
    async with runtime().unit_of_work() as session:
        campaign = await service.create_campaign(
            session=session,
            actor=actor(),
            name=form.get("name", "")[:200],
            template=form.get("template", "")[:1600],
            sender=sender,
            sender_pool=pool,
            segment_id=segment_id,
            customer_ids=customer_ids,
            csv_audience=csv_audience,
            quiet_start_hour=_hour(form.get("quiet_start_hour"), "quiet_start_hour", 21),
            quiet_end_hour=_hour(form.get("quiet_end_hour"), "quiet_end_hour", 9),
            scheduled_at=_schedule(form.get("scheduled_at", ""), form.get("zone", "UTC")),
        )
    return _hx_redirect(url_for("campaigns.campaign_page", campaign_id=campaign.id))


@blueprint.post("/campaigns/preview")
@roles_allowed(Role.MARKETER, api=True)
async def template_preview() -> Any:
    """The template as typed, made for a sample customer: merge fields, encoding, segments."""
    form = await request.form
    template = form.get("template", "")[:1600]
    try:
        fields = template_fields(template) if template.strip() else []
        error = None
    except ValidationFailed as exc:
        fields, error = [], exc.message
    async with runtime().sessions() as session:
        sample = await service.sample_preview(
            session=session, actor=actor(), template=template, segment_id=form.get("segment_id") or None
        )
    return await render_template("campaigns/template_preview.html", fields=fields, error=error, sample=sample)


async def _detail(campaign_id: str) -> dict[str, Any]:
    me = actor()
    async with runtime().sessions() as session:
        campaign = await session.get(SmsCampaign, campaign_id)
        if campaign is None:
            abort(404, "No such campaign.")
        results = await service.campaign_results(session=session, actor=me, campaign_id=campaign_id)
        estimate = (
            await service.estimate_campaign(session=session, actor=me, campaign_id=campaign_id)
            if campaign.status == "draft"
            else None
        )
        previews = await service.preview_recipients(session=session, actor=me, campaign_id=campaign_id)
        recipients = await service.campaign_recipients(
            session=session, actor=me, campaign_id=campaign_id, status=_status_filter()
        )
    return {
        "campaign": campaign,
        "results": results,
        "estimate": estimate,
        "previews": previews,
        "recipients": recipients,
        "status_filter": _status_filter(),
        "order": STATUS_ORDER,
        "final": FINAL,
    }


def _status_filter() -> str | None:
    value = request.args.get("status") or None
    if value is not None and value not in STATUS_ORDER:
        raise ValidationFailed("Unknown status.", field="status")
    return value


@blueprint.get("/campaigns/<campaign_id>")
@roles_allowed(Role.MARKETER)
async def campaign_page(campaign_id: str) -> Any:
    return await render_template("campaigns/detail.html", **await _detail(campaign_id))


@blueprint.get("/campaigns/<campaign_id>/progress")
@roles_allowed(Role.MARKETER)
async def campaign_progress(campaign_id: str) -> Any:
    return await render_template("campaigns/progress.html", **await _detail(campaign_id))


@blueprint.get("/campaigns/<campaign_id>/preview")
@roles_allowed(Role.MARKETER)
async def recipient_preview(campaign_id: str) -> Any:
    recipient_id = (request.args.get("recipient_id") or "")[:32] or None
    async with runtime().sessions() as session:
        previews = await service.preview_recipients(
            session=session, actor=actor(), campaign_id=campaign_id, recipient_id=recipient_id, limit=1
        )
    return await render_template("campaigns/recipient_preview.html", preview=previews[0] if previews else None)


@blueprint.post("/campaigns/<campaign_id>/<action>")
@roles_allowed(Role.MARKETER, api=True)
async def campaign_action(campaign_id: str, action: str) -> Any:
    async with runtime().unit_of_work() as session:
        await service.change_campaign(session=session, actor=actor(), campaign_id=campaign_id, action=action)
    return _hx_redirect(url_for("campaigns.campaign_page", campaign_id=campaign_id))


# --- admin: senders and automations ------------------------------------------------------------------------------


@blueprint.get("/admin/sms/senders")
@roles_allowed()
async def senders_page() -> Any:
    async with runtime().sessions() as session:
        senders = await list_senders(session=session)
    return await render_template(
        "campaigns/senders.html",
        senders=[(s, campaign_refusal(s)) for s in senders],
        kinds=SENDER_KINDS,
        kind_names=KIND_NAMES,
    )


def _number(value: str | None, name: str, default: float) -> float:
    if value is None or not value.strip():
        return default
    try:
        return float(value)
    except ValueError:
        raise ValidationFailed(f"{name} is a number.", field=name) from None


@blueprint.post("/admin/sms/senders")
@roles_allowed(api=True)
async def sender_save() -> Any:
    form = await request.form
    data = SenderIn(
        address=form.get("address", "")[:40],
        kind=form.get("kind", "")[:20],
        country=form.get("country", "")[:2],
        label=form.get("label", "")[:100],
        mps=_number(form.get("mps"), "mps", 1.0),
        price_per_segment=_number(form.get("price_per_segment"), "price_per_segment", 0.0079),
        is_default=form.get("is_default") == "1",
        a2p_10dlc_registered=form.get("a2p_10dlc_registered") == "1",
        active=form.get("active", "1") == "1",
    )
    sender_id = (form.get("sender_id") or "").strip()[:32] or None
    async with runtime().unit_of_work() as session:
        await save_sender(session=session, actor=actor(), data=data, sender_id=sender_id)
    outbox = runtime_outbox()
    if outbox is not None:
        outbox.rates_due()
    return _hx_redirect(url_for("campaigns.senders_page"))


def runtime_outbox() -> Any:
    from quart import current_app

    return current_app.extensions.get("sms_outbox")


@blueprint.get("/admin/sms/automations")
@roles_allowed()
async def automations_page() -> Any:
    async with runtime().sessions() as session:
        rows = await automations.list_automations(session=session)
        recent = await automations.recent_sends(session=session)
    return await render_template(
        "campaigns/automations.html", rows=rows, recent=recent, names=automations.AUTOMATION_NAMES
    )


@blueprint.post("/admin/sms/automations/<name>")
@roles_allowed(api=True)
async def automation_save(name: str) -> Any:
    form = await request.form
    async with runtime().unit_of_work() as session:
        await automations.save_automation(
            session=session,
            actor=actor(),
            name=name,
            enabled=form.get("enabled") == "1",
            template=form.get("template", "")[:1600],
            delay_days=int(_number(form.get("delay_days"), "delay_days", 0)),
        )
    return _hx_redirect(url_for("campaigns.automations_page"))
