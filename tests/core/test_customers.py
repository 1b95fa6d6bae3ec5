from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.models import AuditEntry
from crm_core.calls.models import CallLog
from crm_core.customers.errors import DuplicateCustomer, InvalidEmail, InvalidPhoneNumber
from crm_core.customers.lookup import find_customer_id_by_phone
from crm_core.customers.models import Customer, Note, Payment
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import (
    add_note,
    assign_owner,
    create_customer,
    delete_customer,
    find_duplicates,
    merge_customers,
    release_stale_owners,
    touch_interaction,
    update_customer,
)
from crm_core.errors import PermissionDenied, ValidationFailed
from crm_core.sms.models import SmsMessage
from crm_core.tickets.service import create_ticket
from crm_core.timeline import customer_timeline
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM
from tests.core.helpers import make_actor, make_customer


async def test_create_normalises_phones_and_is_found_by_caller_id(session: AsyncSession) -> None:
    customer = await create_customer(
        session=session,
        actor=SYSTEM,
        region="US",
        data=CustomerIn(
            name="Alice Example",
            phones=[PhoneIn(number="(555) 123-0001"), PhoneIn(number="+44 20 7946 0958")],
            emails=["Alice@Example.COM"],
            timezone="America/New_York",
            tags=["VIP", "vip"],
        ),
    )
    assert [p.e164 for p in customer.phones] == ["+15551230001", "+442079460958"]
    assert customer.phones[0].is_primary and not customer.phones[1].is_primary
    assert [e.email for e in customer.emails] == ["alice@example.com"]
    assert [t.name for t in customer.tags] == ["vip"]
    for as_dialled in ("+15551230001", "5551230001", "15551230001", "+442079460958"):
        assert await find_customer_id_by_phone(session=session, number=as_dialled, region="US") == customer.id
    assert await find_customer_id_by_phone(session=session, number="+15559999999", region="US") is None
    assert await find_customer_id_by_phone(session=session, number="anonymous", region="US") is None
    audit = await session.scalar(select(AuditEntry).where(AuditEntry.entity_id == customer.id))
    assert audit is not None and audit.action == "create" and audit.after["phones"][0] == "+15551230001"


@pytest.mark.parametrize(
    ("number", "reason"),
    [("12", "wrong number of digits"), ("call me", "not a phone number"), ("", "empty")],
)
async def test_bad_phone_numbers_are_refused_with_the_reason(session: AsyncSession, number: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber, match=reason):
        await make_customer(session, "Bad Number", number)
    assert await session.scalar(select(Customer).where(Customer.name == "Bad Number")) is None


async def test_bad_email_and_timezone(session: AsyncSession) -> None:
    with pytest.raises(InvalidEmail):
        await make_customer(session, "X", emails=("not-an-email",))
    with pytest.raises(ValidationFailed, match="time zone"):
        await create_customer(
            session=session, actor=SYSTEM, region="US", data=CustomerIn(name="Y", timezone="Mars/Base")
        )


async def test_duplicates_are_listed_on_create(session: AsyncSession) -> None:
    company = await create_customer(
        session=session, actor=SYSTEM, region="US", data=CustomerIn(name="Acme", kind="company")
    )
    first = await make_customer(session, "Jane Doe", "+15551230010", emails=("jane@acme.test",), parent_id=company.id)
    with pytest.raises(DuplicateCustomer) as caught:
        await make_customer(session, "Someone Else", "555-123-0010")
    assert caught.value.details["candidates"] == [
        {"id": first.id, "name": "Jane Doe", "reason": "same phone +15551230010"}
    ]
    with pytest.raises(DuplicateCustomer, match="looks like"):
        await make_customer(session, "Other", emails=("JANE@acme.test",))
    with pytest.raises(DuplicateCustomer):
        await make_customer(session, "jane  doe.", parent_id=company.id)
    # The same name outside that company is a different person.
    await make_customer(session, "Jane Doe")
    found = await find_duplicates(session=session, name="Jane Doe", phones=[], emails=[], parent_id=company.id)
    assert [c.id for c in found] == [first.id]
    dup = await create_customer(
        session=session,
        actor=SYSTEM,
        region="US",
        allow_duplicate=True,
        data=CustomerIn(name="Jane Doe", phones=[PhoneIn(number="+15551230010")]),
    )
    assert dup.id != first.id


async def test_roles_are_checked_in_the_service(session: AsyncSession) -> None:
    marketer = await make_actor(session, Role.MARKETER)
    agent = await make_actor(session, Role.AGENT)
    with pytest.raises(PermissionDenied):
        await create_customer(session=session, actor=marketer, region="US", data=CustomerIn(name="Z"))
    customer = await create_customer(session=session, actor=agent, region="US", data=CustomerIn(name="Z"))
    with pytest.raises(PermissionDenied):
        await delete_customer(session=session, actor=agent, customer_id=customer.id)
    with pytest.raises(PermissionDenied):
        await merge_customers(session=session, actor=agent, keep_id=customer.id, merge_id=customer.id)


async def test_update_and_delete_are_audited(session: AsyncSession) -> None:
    supervisor = await make_actor(session, Role.SUPERVISOR)
    customer = await make_customer(session, "Old Name", "+15551230020")
    await update_customer(
        session=session,
        actor=supervisor,
        customer_id=customer.id,
        region="US",
        data=CustomerIn(name="New Name", phones=[PhoneIn(number="+15551230021")], city="Lyon"),
    )
    await delete_customer(session=session, actor=supervisor, customer_id=customer.id)
    entries = list(
        await session.scalars(select(AuditEntry).where(AuditEntry.entity_id == customer.id).order_by(AuditEntry.at))
    )
    assert [e.action for e in entries] == ["create", "update", "delete"]
    assert entries[1].before["name"] == "Old Name" and entries[1].after["phones"] == ["+15551230021"]
    assert entries[1].actor_id == supervisor.user_id
    assert await session.get(Customer, customer.id) is None


async def test_merge_moves_everything_and_is_audited(session: AsyncSession) -> None:
    supervisor = await make_actor(session, Role.SUPERVISOR)
    keep = await make_customer(session, "Alice", "+15551230030", emails=("a@x.test",))
    gone = await create_customer(
        session=session,
        actor=SYSTEM,
        region="US",
        allow_duplicate=True,
        data=CustomerIn(name="Alice E.", phones=[PhoneIn(number="+15551230031")], emails=["a@x.test", "alice@y.test"]),
    )
    session.add_all(
        [
            CallLog(linkedid="1.1", direction="inbound", customer_id=gone.id),
            SmsMessage(customer_id=gone.id, direction="inbound", from_number="+15551230031", to_number="+1", body="hi"),
            Note(customer_id=gone.id, body="prefers email"),
            Payment(customer_id=gone.id, amount=10),
        ]
    )
    ticket = await create_ticket(session=session, actor=SYSTEM, subject="Broken", customer_id=gone.id)
    await session.flush()
    merged = await merge_customers(session=session, actor=supervisor, keep_id=keep.id, merge_id=gone.id)
    assert sorted(p.e164 for p in merged.phones) == ["+15551230030", "+15551230031"]
    assert sorted(e.email for e in merged.emails) == ["a@x.test", "alice@y.test"]
    for model in (CallLog, SmsMessage, Note, Payment):
        assert await session.scalar(select(model.customer_id)) == keep.id  # type: ignore[attr-defined]
    await session.refresh(ticket)
    assert ticket.customer_id == keep.id
    assert (await session.get(Customer, gone.id)).merged_into_id == keep.id  # type: ignore[union-attr]
    assert await find_customer_id_by_phone(session=session, number="+15551230031", region="US") == keep.id
    merge_entry = await session.scalar(
        select(AuditEntry).where(AuditEntry.action == "merge", AuditEntry.entity_id == keep.id)
    )
    assert merge_entry is not None and merge_entry.after["moved"]["call_logs"] == 1
    assert merge_entry.before["merged"]["name"] == "Alice E."
    with pytest.raises(ValidationFailed):
        await merge_customers(session=session, actor=supervisor, keep_id=keep.id, merge_id=gone.id)


async def test_pool_ownership(session: AsyncSession) -> None:
    ann = await make_actor(session, Role.AGENT, "ann")
    bob = await make_actor(session, Role.AGENT, "bob")
    customer = await make_customer(session, "Pooled", "+15551230040")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await assign_owner(session=session, actor=ann, customer_id=customer.id, owner_id=ann.user_id, now=start)
    with pytest.raises(PermissionDenied, match="owned by another agent"):
        await assign_owner(session=session, actor=bob, customer_id=customer.id, owner_id=bob.user_id)
    await touch_interaction(session=session, customer_id=customer.id, at=start + timedelta(days=20))
    assert await release_stale_owners(session=session, days=30, now=start + timedelta(days=45)) == []
    released = await release_stale_owners(session=session, days=30, now=start + timedelta(days=51))
    assert released == [customer.id]
    await session.refresh(customer)
    assert customer.owner_id is None
    await assign_owner(session=session, actor=bob, customer_id=customer.id, owner_id=bob.user_id)
    assert customer.owner_id == bob.user_id


async def test_timeline_orders_every_kind_newest_first(session: AsyncSession) -> None:
    agent = await make_actor(session, Role.AGENT)
    customer = await make_customer(session, "Tim Line", "+15551230050")
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    session.add_all(
        [
            CallLog(linkedid="9.1", direction="inbound", customer_id=customer.id, offered_at=t0, outcome="answered"),
            SmsMessage(
                customer_id=customer.id,
                direction="inbound",
                from_number="+1",
                to_number="+1",
                body="sms",
                created_at=t0 + timedelta(hours=2),
            ),
        ]
    )
    note = await add_note(session=session, actor=agent, customer_id=customer.id, body="called back")
    note.created_at = t0 + timedelta(hours=1)
    ticket = await create_ticket(session=session, actor=agent, subject="T", customer_id=customer.id)
    ticket.created_at = t0 + timedelta(hours=3)
    await session.flush()
    items = await customer_timeline(session=session, actor=agent, customer_id=customer.id)
    assert [i.kind for i in items] == ["ticket", "sms", "note", "call"]
    older = await customer_timeline(session=session, actor=agent, customer_id=customer.id, before=items[1].at, limit=1)
    assert [i.kind for i in older] == ["note"]
