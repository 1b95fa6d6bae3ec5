"""/api/v1/webhooks: outgoing webhook subscriptions and their deliveries, for a token with the scope
`webhooks:admin`. The webhooks service keeps its own check (admins only): a token holding that scope acts as an admin
for the webhooks service, and only there (everywhere else a token acts with TOKEN_ROLE). The signing secret is in the
answer to create and to rotate, never in a list or a read."""

from __future__ import annotations

from datetime import datetime

from quart_schema import tag, validate_querystring, validate_request, validate_response

from agent_desktop.api.auth import current_principal, require_token
from agent_desktop.api.blueprint import token_blueprint
from agent_desktop.api.errors import no_body
from agent_desktop.api.schemas import (
    DeliveryList,
    DeliveryOut,
    DeliveryQuery,
    NewSubscription,
    SubscriptionChange,
    SubscriptionDeleted,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionWithSecret,
)
from agent_desktop.routes.common import runtime
from crm_core.errors import ValidationFailed
from crm_core.tokens import reads
from crm_core.tokens.errors import MissingScope
from crm_core.users.models import Role
from crm_core.users.service import Actor
from crm_core.webhooks import service as webhooks
from crm_core.webhooks.models import WebhookDelivery, WebhookSubscription

SCOPE = "webhooks:admin"
blueprint = token_blueprint("api_v1_webhooks", __name__, "/api/v1/webhooks")


def webhooks_actor() -> Actor:
    """Who the webhooks service sees: an admin without a user, for a token holding `webhooks:admin` (the views
    require it already; checked again here so no other caller can borrow the role)."""
    principal = current_principal()
    if SCOPE not in principal.scopes:
        raise MissingScope(f"This token lacks the scope {SCOPE}.", scope=SCOPE)
    return Actor(user_id=None, role=Role.ADMIN)


def _cursor_position(cursor: str) -> tuple[datetime, str]:
    when, last = reads.decode_cursor(cursor, 2)
    try:
        at = datetime.fromisoformat(str(when))
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ValidationFailed("The cursor is not one this API gave out.", field="cursor")
    return at, str(last)


def subscription_out(subscription: WebhookSubscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=subscription.id,
        name=subscription.name,
        url=subscription.url,
        events=list(subscription.events),
        active=subscription.active,
        max_in_flight=subscription.max_in_flight,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )


def with_secret(subscription: WebhookSubscription) -> SubscriptionWithSecret:
    return SubscriptionWithSecret(**subscription_out(subscription).model_dump(), secret=subscription.secret)


def delivery_out(row: webhooks.DeliveryRow | WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        subscription_id=row.subscription_id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        last_attempt_at=row.last_attempt_at,
        delivered_at=row.delivered_at,
    )


@blueprint.get("/subscriptions")
@tag(["webhooks"])
@require_token(SCOPE)
@validate_response(SubscriptionList)
async def list_subscriptions() -> SubscriptionList:
    """List webhook subscriptions

    Oldest first; without their secrets."""
    async with runtime().sessions() as db:
        found = await webhooks.list_subscriptions(session=db, actor=webhooks_actor())
        return SubscriptionList(items=[subscription_out(s) for s in found])


@blueprint.post("/subscriptions")
@tag(["webhooks"])
@require_token(SCOPE)
@validate_request(NewSubscription)
@validate_response(SubscriptionWithSecret, 201)
async def create_subscription(data: NewSubscription) -> tuple[SubscriptionWithSecret, int]:
    """Create a webhook subscription

    The answer holds the signing secret, shown this once. The URL is checked against the SSRF guard (its host must
    resolve to allowed addresses). Audited."""
    async with runtime().unit_of_work() as db:
        subscription = await webhooks.create_subscription(
            session=db,
            actor=webhooks_actor(),
            name=data.name,
            url=data.url,
            events=list(data.events),
            policy=runtime().settings.webhook_address_policy,
            max_in_flight=data.max_in_flight,
            active=data.active,
        )
        out = with_secret(subscription)
    return out, 201


@blueprint.get("/subscriptions/<subscription_id>")
@tag(["webhooks"])
@require_token(SCOPE)
@validate_response(SubscriptionOut)
async def read_subscription(subscription_id: str) -> SubscriptionOut:
    """Read a webhook subscription

    Without its secret (rotate it for a new one)."""
    async with runtime().sessions() as db:
        subscription = await webhooks.get_subscription(
            session=db, actor=webhooks_actor(), subscription_id=subscription_id
        )
        return subscription_out(subscription)


@blueprint.patch("/subscriptions/<subscription_id>")
@tag(["webhooks"])
@require_token(SCOPE)
@validate_request(SubscriptionChange)
@validate_response(SubscriptionOut)
async def update_subscription(subscription_id: str, data: SubscriptionChange) -> SubscriptionOut:
    """Update a webhook subscription

    Only the fields sent change; all are checked before any is changed. Audited."""
    async with runtime().unit_of_work() as db:
        subscription = await webhooks.update_subscription(
            session=db,
            actor=webhooks_actor(),
            subscription_id=subscription_id,
            policy=runtime().settings.webhook_address_policy,
            name=data.name,
            url=data.url,
            events=list(data.events) if data.events is not None else None,
            active=data.active,
            max_in_flight=data.max_in_flight,
        )
        return subscription_out(subscription)


@blueprint.delete("/subscriptions/<subscription_id>")
@tag(["webhooks"])
@require_token(SCOPE)
@validate_response(SubscriptionDeleted)
async def delete_subscription(subscription_id: str) -> SubscriptionDeleted:
    """Delete a webhook subscription

    With its deliveries: the pending ones are not sent. Audited."""
    async with runtime().unit_of_work() as db:
        await webhooks.delete_subscription(session=db, actor=webhooks_actor(), subscription_id=subscription_id)
    return SubscriptionDeleted(id=subscription_id, deleted=True)


@blueprint.post("/subscriptions/<subscription_id>/rotate-secret")
@tag(["webhooks"])
@require_token(SCOPE)
@no_body
@validate_response(SubscriptionWithSecret)
async def rotate_secret(subscription_id: str) -> SubscriptionWithSecret:
    """Rotate a subscription's signing secret

    The answer holds the new secret, shown this once; deliveries signed from now on use it. Audited."""
    async with runtime().unit_of_work() as db:
        subscription = await webhooks.rotate_secret(session=db, actor=webhooks_actor(), subscription_id=subscription_id)
        return with_secret(subscription)


@blueprint.get("/subscriptions/<subscription_id>/deliveries")
@tag(["webhooks"])
@require_token(SCOPE)
@validate_querystring(DeliveryQuery)
@validate_response(DeliveryList)
async def list_deliveries(subscription_id: str, query_args: DeliveryQuery) -> DeliveryList:
    """List a subscription's deliveries

    Newest first, optionally in one status (`dead`: the dead letters, which can be replayed)."""
    before = _cursor_position(query_args.cursor) if query_args.cursor else None
    async with runtime().sessions() as db:
        me = webhooks_actor()
        await webhooks.get_subscription(session=db, actor=me, subscription_id=subscription_id)
        rows = await webhooks.list_deliveries(
            session=db,
            actor=me,
            subscription_id=subscription_id,
            status=query_args.status,
            limit=query_args.limit + 1,
            before=before,
        )
    more = len(rows) > query_args.limit
    rows = rows[: query_args.limit]
    after = reads.encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
    return DeliveryList(items=[delivery_out(r) for r in rows], next_cursor=after)


@blueprint.post("/deliveries/<delivery_id>/replay")
@tag(["webhooks"])
@require_token(SCOPE)
@no_body
@validate_response(DeliveryOut)
async def replay_delivery(delivery_id: str) -> DeliveryOut:
    """Replay a dead letter

    It goes out again now with a fresh retry window, under the same delivery id. Only a `dead` delivery can be
    replayed. Audited."""
    async with runtime().unit_of_work() as db:
        delivery = await webhooks.replay_delivery(session=db, actor=webhooks_actor(), delivery_id=delivery_id)
        return delivery_out(delivery)
