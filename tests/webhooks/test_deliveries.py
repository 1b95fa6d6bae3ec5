"""Deliveries against a local receiver on SQLite and PostgreSQL: signed, failing, timing out and succeeding on
demand; a restart in the middle of a retry series; dead letters and their replay; the per-receiver cap; one row
for an event however many processes see it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_core.bus import InMemoryEventBus
from crm_core.customers.schemas import CustomerIn
from crm_core.customers.service import create_customer, merge_customers
from crm_core.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from crm_core.errors import NotFound, PermissionDenied, ValidationFailed
from crm_core.tickets.events import TicketUpdated
from crm_core.tickets.service import create_ticket, update_ticket
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor
from crm_core.webhooks.catalog import webhook_event_of
from crm_core.webhooks.models import WebhookDelivery, WebhookSubscription
from crm_core.webhooks.sender import WebhookSender
from crm_core.webhooks.service import list_deliveries, replay_delivery
from crm_core.webhooks.worker import WebhookWorker
from tests.webhooks.conftest import LOCAL, WorkerFactory, subscribe
from tests.webhooks.marks import Marks
from tests.webhooks.receiver import Receiver

SUPERVISOR = Actor(user_id=None, role=Role.SUPERVISOR)


def ticket_event(number: int) -> TicketUpdated:
    return TicketUpdated("t" * 32, number, ("status",), "open", "normal", None, None, utcnow())


async def delivery(sessions: async_sessionmaker[AsyncSession], delivery_id: str) -> WebhookDelivery:
    async with sessions() as session:
        row = await session.get(WebhookDelivery, delivery_id)
    assert row is not None
    return row


def signed(secret: str, header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, parts["v1"])


async def test_a_ticket_created_by_the_service_reaches_the_receiver_signed(
    sessions: async_sessionmaker[AsyncSession], receiver: Receiver, make_worker: WorkerFactory
) -> None:
    subscription = await subscribe(sessions, receiver.url, ["ticket.created"])
    other = await subscribe(sessions, receiver.url, ["customer.created"])  # wants nothing that happens here
    bus = InMemoryEventBus()
    worker = make_worker()
    worker.attach(bus)
    marks = Marks(worker)
    await worker.start()
    async with unit_of_work(sessions, bus) as session:
        ticket = await create_ticket(session=session, actor=SYSTEM, subject="Router keeps rebooting")
        await update_ticket(session=session, actor=SYSTEM, ticket_id=ticket.id, priority="high")  # not subscribed
    [got] = await receiver.wait_for(1)
    await marks.wait_for("delivered")
    assert got.event_type == "ticket.created"
    assert signed(subscription.secret, got.signature, got.body)
    assert not signed(other.secret, got.signature, got.body)
    body = json.loads(got.body)
    assert body["type"] == "ticket.created" and body["id"].startswith("evt_")
    assert body["data"]["ticket_id"] == ticket.id and body["data"]["subject"] == "Router keeps rebooting"
    row = await delivery(sessions, got.delivery_id)
    assert (row.status, row.attempts, row.last_status_code, row.subscription_id) == (
        "delivered",
        1,
        200,
        subscription.id,
    )
    assert row.body.encode() == got.body  # exactly what was signed and stored
    async with sessions() as session:
        assert await list_deliveries(session=session, actor=SYSTEM, subscription_id=other.id) == []
    assert await worker.run_once() == 0  # delivered: never sent again
    assert len(receiver.requests) == 1


async def test_fails_times_out_then_succeeds_with_one_delivery_id(
    sessions: async_sessionmaker[AsyncSession], receiver: Receiver, make_worker: WorkerFactory
) -> None:
    await subscribe(sessions, receiver.url, ["ticket.updated"])
    receiver.script.extend(["fail:500", "timeout", "fail:503"])
    bus = InMemoryEventBus()
    worker = make_worker(timeout_s=0.3)
    worker.attach(bus)
    marks = Marks(worker)
    await worker.start()
    await bus.publish(ticket_event(1))
    requests = await receiver.wait_for(4)
    await marks.wait_for("delivered")
    assert [r.answered for r in requests] == ["fail:500", "timeout", "fail:503", "ok"]
    assert len({r.delivery_id for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    row = await delivery(sessions, requests[0].delivery_id)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("delivered", 4, 200, None)
    assert [s for _, s in marks.seen] == ["pending", "pending", "pending", "delivered"]
    assert await worker.run_once() == 0
    assert len(receiver.requests) == 4


async def test_a_restart_in_the_middle_of_a_retry_series(
    engine: AsyncEngine,
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    receiver: Receiver,
    make_worker: WorkerFactory,
) -> None:
    """Two failures with the first process; it stops; a new process (its own engine) carries on the same series."""
    await subscribe(sessions, receiver.url, ["ticket.updated"])
    receiver.script.extend(["fail:500", "fail:502"])
    receiver.otherwise = "hold"  # the third attempt waits, so the first process is stopped before it
    bus = InMemoryEventBus()
    first = make_worker()
    first.attach(bus)
    await first.start(sole_worker=True)
    await bus.publish(ticket_event(2))
    requests = await receiver.wait_for(3)
    delivery_id = requests[0].delivery_id
    # the first process dies with the third attempt in flight: nothing is marked, the row stays `sending`
    await first.stop(drain_s=0)
    row = await delivery(sessions, delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("sending", 3, 502)
    receiver.otherwise = "ok"
    receiver.hold.set()
    restarted_engine = make_engine(database_url)
    try:
        second = make_worker(make_sessionmaker(restarted_engine))
        marks = Marks(second)
        await second.start(sole_worker=True)  # the one worker: what was in flight is due at once
        await marks.wait_for("delivered")
        await second.drain()
    finally:
        await second.stop()
        await restarted_engine.dispose()
    requests = list(receiver.requests)
    assert [r.answered for r in requests] == ["fail:500", "fail:502", "hold", "ok"]
    assert {r.delivery_id for r in requests} == {delivery_id}  # the receiver can drop the repeat
    row = await delivery(sessions, delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 4, 200)


async def test_a_dead_letter_is_replayed_by_an_admin_only(
    sessions: async_sessionmaker[AsyncSession], receiver: Receiver, make_worker: WorkerFactory
) -> None:
    await subscribe(sessions, receiver.url, ["ticket.updated"])
    receiver.otherwise = "fail:500"
    bus = InMemoryEventBus()
    worker = make_worker(window=timedelta(milliseconds=500))
    worker.attach(bus)
    marks = Marks(worker)
    await worker.start()
    await bus.publish(ticket_event(3))
    await marks.wait_for("dead")
    [(delivery_id, _)] = [m for m in marks.seen if m[1] == "dead"]
    row = await delivery(sessions, delivery_id)
    assert row.status == "dead" and row.next_attempt_at is None and row.last_error == "HTTP 500 Internal Server Error"
    tried = len(receiver.requests)
    assert tried == row.attempts >= 1  # as many as fit in the window (a loaded machine may fit one)
    assert await worker.run_once() == 0  # a dead letter waits for a person
    async with sessions() as session:
        [listed] = await list_deliveries(session=session, actor=SYSTEM, status="dead")
    assert listed.id == delivery_id and listed.attempts == tried
    with pytest.raises(PermissionDenied):
        async with unit_of_work(sessions) as session:
            await replay_delivery(session=session, actor=SUPERVISOR, delivery_id=delivery_id)
    with pytest.raises(NotFound):
        async with unit_of_work(sessions) as session:
            await replay_delivery(session=session, actor=SYSTEM, delivery_id="0" * 32)
    receiver.otherwise = "ok"
    async with unit_of_work(sessions) as session:
        await replay_delivery(session=session, actor=SYSTEM, delivery_id=delivery_id, retry_window=timedelta(hours=1))
    worker.wake.set()
    await marks.wait_for("delivered")
    row = await delivery(sessions, delivery_id)
    assert (row.status, row.attempts) == ("delivered", 1)
    assert receiver.requests[-1].delivery_id == delivery_id and len(receiver.requests) == tried + 1
    with pytest.raises(ValidationFailed):  # only dead letters are replayed
        async with unit_of_work(sessions) as session:
            await replay_delivery(session=session, actor=SYSTEM, delivery_id=delivery_id)


async def test_at_most_max_in_flight_requests_per_receiver(
    sessions: async_sessionmaker[AsyncSession], receiver: Receiver, make_worker: WorkerFactory
) -> None:
    await subscribe(sessions, receiver.url, ["ticket.updated"], max_in_flight=2)
    receiver.otherwise = "hold"
    bus = InMemoryEventBus()
    worker = make_worker()
    worker.attach(bus)
    marks = Marks(worker)
    await worker.start()
    for number in range(10, 16):
        await bus.publish(ticket_event(number))
    await receiver.wait_in_flight(2)
    assert worker.stats()["in_flight"] == 2
    assert await worker.run_once() == 0  # no free slot: nothing more is claimed
    receiver.hold.set()
    await marks.wait_for("delivered", 6)
    assert receiver.most_in_flight == 2
    assert len({r.delivery_id for r in receiver.requests}) == 6


async def test_one_delivery_per_event_however_many_processes_record_it(
    sessions: async_sessionmaker[AsyncSession], receiver: Receiver, make_worker: WorkerFactory
) -> None:
    """The Redis bus gives every process every event: each records it, one row results."""
    subscription = await subscribe(sessions, receiver.url, ["ticket.updated"])
    event = webhook_event_of(ticket_event(4))
    assert event is not None
    one, two = make_worker(), make_worker()
    assert await one.record([event]) == 1
    assert await two.record([event]) == 0
    async with sessions() as session:
        rows = list(
            await session.scalars(select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id))
        )
    assert [r.event_id for r in rows] == [event.id]


async def test_customer_created_and_merged_are_delivered(
    sessions: async_sessionmaker[AsyncSession], receiver: Receiver, make_worker: WorkerFactory
) -> None:
    await subscribe(sessions, receiver.url, ["customer.created", "customer.merged"])
    bus = InMemoryEventBus()
    worker = make_worker()
    worker.attach(bus)
    await worker.start()
    async with unit_of_work(sessions, bus) as session:
        keep = await create_customer(session=session, actor=SYSTEM, data=CustomerIn(name="Ada Keep"), region="US")
        gone = await create_customer(session=session, actor=SYSTEM, data=CustomerIn(name="Bea Gone"), region="US")
    async with unit_of_work(sessions, bus) as session:
        await merge_customers(session=session, actor=SYSTEM, keep_id=keep.id, merge_id=gone.id)
    requests = await receiver.wait_for(3)
    bodies = sorted((json.loads(r.body) for r in requests), key=lambda b: (b["type"], json.dumps(b["data"])))
    assert [b["type"] for b in bodies] == ["customer.created", "customer.created", "customer.merged"]
    assert {b["data"]["name"] for b in bodies[:2]} == {"Ada Keep", "Bea Gone"}
    assert (bodies[2]["data"]["kept_id"], bodies[2]["data"]["merged_id"]) == (keep.id, gone.id)


async def test_the_same_event_twice_in_one_batch_is_one_delivery(
    sessions: async_sessionmaker[AsyncSession], receiver: Receiver, make_worker: WorkerFactory
) -> None:
    await subscribe(sessions, receiver.url, ["ticket.updated"])
    recorded = webhook_event_of(ticket_event(5))
    assert recorded is not None
    worker = make_worker()  # never started: it only records
    assert await worker.record([recorded, recorded]) == 1
    assert await worker.record([recorded]) == 0
    assert receiver.requests == []


async def test_the_documented_check_verifies_a_delivery_as_received(
    sessions: async_sessionmaker[AsyncSession], receiver: Receiver, make_worker: WorkerFactory
) -> None:
    from tests.webhooks.test_docs_example import docs_verify

    subscription = await subscribe(sessions, receiver.url, ["ticket.updated"])
    bus = InMemoryEventBus()
    worker = make_worker()
    worker.attach(bus)
    await worker.start()
    await bus.publish(ticket_event(6))
    [got] = await receiver.wait_for(1)
    assert docs_verify()(subscription.secret, got.body, got.signature)


@pytest.mark.postgres
async def test_on_postgresql_a_sender_that_never_polls_gets_what_another_process_records(
    postgres_database: str, receiver: Receiver
) -> None:
    """LISTEN/NOTIFY: the recording process's commit wakes the sending one, which here would otherwise look for
    due deliveries once an hour."""
    engines = [make_engine(postgres_database, pool_size=2) for _ in range(2)]
    recording, sending = (make_sessionmaker(engine) for engine in engines)
    recorder = WebhookWorker(recording, WebhookSender(LOCAL), send=False)
    sender = WebhookWorker(sending, WebhookSender(LOCAL), every_s=3600)
    try:
        subscription = await subscribe(recording, receiver.url, ["ticket.updated"])
        await sender.start()
        async with asyncio.timeout(15):
            await sender.listening.wait()
            await sender.wait_until_idle()  # from here only a NOTIFY (or an hour) wakes it
        bus = InMemoryEventBus()
        recorder.attach(bus)
        await recorder.start()
        for number in (1, 2, 3):
            await bus.publish(ticket_event(number))
        got = await receiver.wait_for(3)
        assert sorted(json.loads(r.body)["data"]["number"] for r in got) == [1, 2, 3]
        async with sending() as session:
            rows = list(
                await session.scalars(select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id))
            )
        assert len(rows) == 3 and all(row.attempts == 1 for row in rows)
    finally:
        for worker in (sender, recorder):
            await worker.stop(drain_s=1)
            await worker.sender.close()
        async with unit_of_work(recording) as session:
            await session.execute(delete(WebhookSubscription))
        for engine in engines:
            await engine.dispose()
    assert not sender.listening.is_set()  # stopped: the listening connection was given back
