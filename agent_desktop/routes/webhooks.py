"""Admin screens for outgoing webhooks: subscriptions (create, switch on/off, change events, rotate the secret,
delete), the deliveries with their status, attempts, last error and next try, and dead letters with Replay. Admins
only; every change goes through crm_core.webhooks.service, which checks the role and audits."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app, render_template, request

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import actor, runtime
from crm_core.errors import ValidationFailed
from crm_core.webhooks.catalog import EVENT_NAMES
from crm_core.webhooks.models import DELIVERY_STATUSES, WebhookSubscription
from crm_core.webhooks.service import (
    create_subscription,
    delete_subscription,
    delivery_counts,
    list_deliveries,
    list_subscriptions,
    replay_delivery,
    rotate_secret,
    update_subscription,
)

blueprint = Blueprint("webhooks", __name__, url_prefix="/admin/webhooks")
DELIVERIES_SHOWN = 100


def _wake_worker() -> None:
    worker = current_app.extensions.get("webhooks")
    if worker is not None:
        worker.wake.set()


def _status_filter() -> str | None:
    status = request.args.get("status", "") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(DELIVERY_STATUSES)}.", field="status")
    return status


def _max_in_flight(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 3:
        raise ValidationFailed("Requests at once must be a whole number.", field="max_in_flight")
    return int(raw)


async def _page_data(status: str | None) -> dict[str, Any]:
    async with runtime().sessions() as db:
        subscriptions = await list_subscriptions(session=db, actor=actor())
        deliveries = await list_deliveries(session=db, actor=actor(), status=status, limit=DELIVERIES_SHOWN)
        counts = await delivery_counts(session=db, actor=actor())
    return {
        "subscriptions": subscriptions,
        "deliveries": deliveries,
        "counts": counts,
        "status": status,
        "event_names": EVENT_NAMES,
        "statuses": DELIVERY_STATUSES,
        "retry_hours": runtime().settings.webhook_retry_hours,
    }


async def _subscriptions_partial(new_secret_of: WebhookSubscription | None = None) -> Any:
    async with runtime().sessions() as db:
        subscriptions = await list_subscriptions(session=db, actor=actor())
    return await render_template(
        "admin/webhooks_subscriptions.html",
        subscriptions=subscriptions,
        event_names=EVENT_NAMES,
        shown_secret=new_secret_of,
    )


@blueprint.get("")
@roles_allowed()
async def page() -> Any:
    return await render_template("admin/webhooks.html", shown_secret=None, **await _page_data(_status_filter()))


@blueprint.get("/deliveries")
@roles_allowed()
async def deliveries() -> Any:
    """The deliveries table alone: the page refreshes it every few seconds (htmx), so retries show as they go."""
    data = await _page_data(_status_filter())
    return await render_template("admin/webhooks_deliveries.html", **data)


@blueprint.post("")
@roles_allowed(api=True)
async def create() -> Any:
    form = await request.form
    async with runtime().unit_of_work() as db:
        subscription = await create_subscription(
            session=db,
            actor=actor(),
            name=form.get("name", ""),
            url=form.get("url", ""),
            events=form.getlist("events"),
            policy=runtime().settings.webhook_address_policy,
            max_in_flight=_max_in_flight(form.get("max_in_flight")) or 8,
        )
    return await _subscriptions_partial(new_secret_of=subscription)  # the secret is shown this once


@blueprint.post("/<subscription_id>")
@roles_allowed(api=True)
async def change(subscription_id: str) -> Any:
    """Switch on/off (`active`), the events (`events`, with `events_sent=1`), name, URL, requests at once."""
    form = await request.form
    active = form.get("active")
    if active not in (None, "0", "1"):
        raise ValidationFailed("active is 0 or 1.", field="active")
    async with runtime().unit_of_work() as db:
        await update_subscription(
            session=db,
            actor=actor(),
            subscription_id=subscription_id,
            policy=runtime().settings.webhook_address_policy,
            name=form.get("name"),
            url=form.get("url"),
            events=form.getlist("events") if form.get("events_sent") == "1" else None,
            active=None if active is None else active == "1",
            max_in_flight=_max_in_flight(form.get("max_in_flight")),
        )
    _wake_worker()
    return await _subscriptions_partial()


@blueprint.post("/<subscription_id>/secret")
@roles_allowed(api=True)
async def rotate(subscription_id: str) -> Any:
    async with runtime().unit_of_work() as db:
        subscription = await rotate_secret(session=db, actor=actor(), subscription_id=subscription_id)
    return await _subscriptions_partial(new_secret_of=subscription)


@blueprint.post("/<subscription_id>/delete")
@roles_allowed(api=True)
async def delete(subscription_id: str) -> Any:
    async with runtime().unit_of_work() as db:
        await delete_subscription(session=db, actor=actor(), subscription_id=subscription_id)
    return await _subscriptions_partial()


@blueprint.post("/deliveries/<delivery_id>/replay")
@roles_allowed(api=True)
async def replay(delivery_id: str) -> Any:
    async with runtime().unit_of_work() as db:
        await replay_delivery(
            session=db,
            actor=actor(),
            delivery_id=delivery_id,
            retry_window=runtime().settings.webhook_retry_window,
        )
    _wake_worker()
    return await render_template("admin/webhooks_deliveries.html", **await _page_data(_status_filter()))
