"""/api/v1/webhooks over real HTTP with real tokens: subscriptions created, read, listed, updated, rotated and
deleted (the secret shown on create and rotate only), the SSRF guard answering 4xx, deliveries paged with a cursor,
a dead letter replayed; every change audited, every use audited under the token's name."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from crm_core.audit.models import AuditEntry
from crm_core.db import new_id, utcnow
from crm_core.webhooks.models import WebhookDelivery, WebhookSubscription
from tests.api.conftest import issue
from tests.api.test_rest import ERROR_KEYS, Api, token_audit
from tests.desktop.live import LiveCenter

SUBSCRIPTIONS = "/webhooks/subscriptions"


async def test_subscriptions_through_the_api_show_the_secret_only_on_create_and_rotate(center: LiveCenter) -> None:
    center.runtime.settings = center.runtime.settings.model_copy(update={"webhook_allowed_networks": "127.0.0.0/8"})
    token_id, secret = await issue(center, "hooks", ["webhooks:admin"])
    api = Api(center, secret)
    try:
        status, made, _ = await api.call(
            "POST",
            SUBSCRIPTIONS,
            json={"name": "ERP", "url": "http://127.0.0.1:9/hook", "events": ["ticket.created", "call.ended"]},
        )
        assert status == 201, made
        assert len(made["secret"]) >= 32
        assert made["events"] == ["call.ended", "ticket.created"] and made["active"] is True
        sid = made["id"]

        status, listed, _ = await api.call("GET", SUBSCRIPTIONS)
        assert status == 200 and [s["id"] for s in listed["items"]] == [sid]
        assert "secret" not in listed["items"][0]
        status, read, _ = await api.call("GET", f"{SUBSCRIPTIONS}/{sid}")
        assert status == 200 and "secret" not in read and read["url"] == "http://127.0.0.1:9/hook"

        status, changed, _ = await api.call("PATCH", f"{SUBSCRIPTIONS}/{sid}", json={"active": False, "name": "ERP 2"})
        assert status == 200 and changed["active"] is False and changed["name"] == "ERP 2" and "secret" not in changed

        status, rotated, _ = await api.call("POST", f"{SUBSCRIPTIONS}/{sid}/rotate-secret")
        assert status == 200 and rotated["secret"] != made["secret"]
        async with center.runtime.sessions() as db:
            stored = await db.get(WebhookSubscription, sid)
            assert stored is not None and stored.secret == rotated["secret"]

        # the SSRF guard and bad input: a clear 4xx in the one shape, nothing changed
        for body in (
            {"url": "http://10.1.2.3/hook"},
            {"url": "ftp://example.com/x"},
            {"url": "http://user:pw@127.0.0.1/x"},
            {"url": "not a url"},
            {"events": ["no.such.event"]},
            {"events": []},
            {"max_in_flight": 0},
        ):
            status, error, _ = await api.call("PATCH", f"{SUBSCRIPTIONS}/{sid}", json=body)
            assert 400 <= status < 500 and set(error) == ERROR_KEYS, (body, status, error)
        status, error, _ = await api.call(
            "POST", SUBSCRIPTIONS, json={"name": "x", "url": "http://169.254.169.254/latest", "events": ["call.ended"]}
        )
        assert status == 422 and error["code"] == "unsafe_webhook_url"
        status, read, _ = await api.call("GET", f"{SUBSCRIPTIONS}/{sid}")
        assert read["url"] == "http://127.0.0.1:9/hook" and read["name"] == "ERP 2"
        status, listed, _ = await api.call("GET", SUBSCRIPTIONS)
        assert [s["id"] for s in listed["items"]] == [sid]

        status, gone, _ = await api.call("DELETE", f"{SUBSCRIPTIONS}/{sid}")
        assert status == 200 and gone == {"id": sid, "deleted": True}
        status, error, _ = await api.call("GET", f"{SUBSCRIPTIONS}/{sid}")
        assert status == 404 and error["code"] == "not_found"
    finally:
        await api.close()

    async with center.runtime.sessions() as db:
        changes = list(
            await db.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.entity_type == "webhook_subscription", AuditEntry.entity_id == sid)
                .order_by(AuditEntry.at)
            )
        )
        assert changes == ["create", "update", "update", "delete"]
        snapshots = await db.scalars(select(AuditEntry).where(AuditEntry.entity_type == "webhook_subscription"))
        assert all(made["secret"] not in str((a.before, a.after)) for a in snapshots)
    uses = await token_audit(center, token_id)
    assert {"POST", "GET", "PATCH", "DELETE"} <= {u["method"] for u in uses}
    assert all(u["token"] == "hooks" for u in uses)


async def test_deliveries_page_with_a_cursor_and_a_dead_letter_is_replayed(center: LiveCenter) -> None:
    _token_id, secret = await issue(center, "hooks", ["webhooks:admin"])
    now = utcnow()
    async with center.runtime.unit_of_work() as db:
        subscription = WebhookSubscription(name="r", url="http://127.0.0.1:9/h", events=["call.ended"], secret="s")
        subscription.active = False  # the worker leaves its deliveries alone
        db.add(subscription)
        await db.flush()
        ids = []
        for n in range(7):
            delivery = WebhookDelivery(
                id=new_id(),
                subscription_id=subscription.id,
                event_id=new_id(),
                event_type="call.ended",
                body="{}",
                status="dead" if n % 2 else "delivered",
                attempts=5,
                next_attempt_at=None,
                retry_until=now,
                created_at=now - timedelta(minutes=n // 2),  # pairs share a time: the cursor breaks ties by id
            )
            db.add(delivery)
            ids.append(delivery.id)
        sid = subscription.id
    newest_first = [
        d
        for _at, d in sorted(
            ((now - timedelta(minutes=n // 2), d) for n, d in enumerate(ids)), key=lambda p: (p[0], p[1]), reverse=True
        )
    ]
    api = Api(center, secret)
    try:
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
            status, page, _ = await api.call("GET", f"{SUBSCRIPTIONS}/{sid}/deliveries", params=params)
            assert status == 200, page
            assert len(page["items"]) <= 3
            seen.extend(d["id"] for d in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == newest_first

        status, dead, _ = await api.call("GET", f"{SUBSCRIPTIONS}/{sid}/deliveries", params={"status": "dead"})
        assert status == 200 and {d["status"] for d in dead["items"]} == {"dead"} and len(dead["items"]) == 3
        status, error, _ = await api.call("GET", f"{SUBSCRIPTIONS}/{sid}/deliveries", params={"cursor": "bm90IG1pbmU"})
        assert status == 422 and error["details"]["field"] == "cursor"
        status, error, _ = await api.call("GET", f"{SUBSCRIPTIONS}/{'0' * 32}/deliveries")
        assert status == 404 and set(error) == ERROR_KEYS

        letter = dead["items"][0]["id"]
        status, replayed, _ = await api.call("POST", f"/webhooks/deliveries/{letter}/replay")
        assert status == 200 and replayed["id"] == letter and replayed["status"] == "pending"
        assert replayed["attempts"] == 0
        status, error, _ = await api.call("POST", f"/webhooks/deliveries/{letter}/replay")
        assert 400 <= status < 500 and "dead letters" in error["message"]
        delivered = next(d for d in seen if d not in {x["id"] for x in dead["items"]})
        status, error, _ = await api.call("POST", f"/webhooks/deliveries/{delivered}/replay")
        assert 400 <= status < 500 and set(error) == ERROR_KEYS
    finally:
        await api.close()
    async with center.runtime.sessions() as db:
        row = await db.get(WebhookDelivery, letter)
        assert row is not None and row.status == "pending"
        other = await db.get(WebhookDelivery, delivered)
        assert other is not None and other.status == "delivered"
        audited = await db.scalar(
            select(AuditEntry).where(AuditEntry.entity_type == "webhook_delivery", AuditEntry.entity_id == letter)
        )
        assert audited is not None and audited.after == {"status": "pending", "replayed": True}


async def test_a_token_without_the_scope_is_no_admin_for_webhooks(center: LiveCenter) -> None:
    _token_id, secret = await issue(center, "everything else", ["customers:read", "tickets:write", "users:read"])
    api = Api(center, secret)
    try:
        status, error, _ = await api.call(
            "POST", SUBSCRIPTIONS, json={"name": "x", "url": "http://127.0.0.1:9/x", "events": ["call.ended"]}
        )
        assert status == 403 and error["code"] == "insufficient_scope"
        status, error, _ = await api.call("GET", SUBSCRIPTIONS)
        assert status == 403 and error["code"] == "insufficient_scope"
    finally:
        await api.close()
    async with center.runtime.sessions() as db:
        assert list(await db.scalars(select(WebhookSubscription.id))) == []
