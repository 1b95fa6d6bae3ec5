"""Customer search on SQLite and PostgreSQL: email, phone in any written form, name prefix, word prefix, typos,
filters (company, tag, owner, the pool) and pages — through the real indexes the migration builds."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.customers.schemas import CustomerIn
from crm_core.customers.search import PAGE_SIZE, CustomerQuery, search_customers
from crm_core.customers.service import create_customer, update_customer
from crm_core.errors import ValidationFailed
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor
from tests.core.helpers import make_actor, make_customer


async def _names(session: AsyncSession, actor: Actor, text: str = "", **filters: object) -> tuple[list[str], str]:
    page = await search_customers(session=session, actor=actor, query=CustomerQuery(text=text, **filters), region="US")  # type: ignore[arg-type]
    return [c.name for c in page.customers], page.matched_by


async def test_search_by_each_way_a_person_writes_it(session: AsyncSession) -> None:
    agent = await make_actor(session, Role.AGENT)
    await make_customer(session, "Alice Wonder", "+15551230060", emails=("alice@w.test",))
    await make_customer(session, "Bob Builder", "+15551230061", emails=("bob@b.test",))
    await make_customer(session, "Alicia Keys", "+15551230062")
    await make_customer(session, "Zoë Müller", "+4930555716001")
    assert await _names(session, agent, "alice@w.test") == (["Alice Wonder"], "email")
    assert await _names(session, agent, "ALICE@w") == (["Alice Wonder"], "email")
    for written in ("555 123 0060", "(555) 123-0060", "+1 555.123.0060", "+15551230060", "001 555 123 0060"):
        assert await _names(session, agent, written) == (["Alice Wonder"], "phone"), written
    assert await _names(session, agent, "+49 30 555716001") == (["Zoë Müller"], "phone")
    assert await _names(session, agent, "ali") == (["Alice Wonder", "Alicia Keys"], "name")
    assert await _names(session, agent, "Alice  W") == (["Alice Wonder"], "name")
    assert await _names(session, agent, "wond") == (["Alice Wonder"], "word")  # the last name's prefix
    assert await _names(session, agent, "keys ali") == (["Alicia Keys"], "word")  # words in any order
    assert await _names(session, agent, "muller") == (["Zoë Müller"], "word")  # without the accent
    assert (await _names(session, agent, "Alice Wondre"))[0][0] == "Alice Wonder"  # a typo
    assert (await _names(session, agent, "Bob Bilder"))[0][0] == "Bob Builder"  # a missing letter
    assert await _names(session, agent, "qqqxxx") == ([], "")


async def test_search_follows_renames_and_ignores_merged_customers(session: AsyncSession) -> None:
    agent = await make_actor(session, Role.AGENT)
    carol = await make_customer(session, "Carol Smith", "+15551230070")
    await update_customer(
        session=session, actor=SYSTEM, customer_id=carol.id, data=CustomerIn(name="Carol Jones"), region="US"
    )
    assert await _names(session, agent, "jones") == (["Carol Jones"], "word")
    assert await _names(session, agent, "smith") == ([], "")


async def test_filters_and_pages(session: AsyncSession) -> None:
    agent = await make_actor(session, Role.AGENT)
    owner = await make_actor(session, Role.AGENT, name="owner", extension="1009")
    acme = await create_customer(
        session=session, actor=SYSTEM, region="US", data=CustomerIn(name="Acme", kind="company")
    )
    for i in range(PAGE_SIZE + 3):
        await create_customer(
            session=session,
            actor=SYSTEM,
            region="US",
            data=CustomerIn(
                name=f"Person {i:02d}",
                parent_id=acme.id if i < 4 else None,
                tags=["gold"] if i % 2 else [],
                owner_id=owner.user_id if i < 2 else None,
            ),
        )
    first = await search_customers(session=session, actor=agent, query=CustomerQuery(text="person"), region="US")
    assert len(first.customers) == PAGE_SIZE and first.has_next
    second = await search_customers(
        session=session, actor=agent, query=CustomerQuery(text="person", page=2), region="US"
    )
    assert [c.name for c in second.customers] == ["Person 25", "Person 26", "Person 27"] and not second.has_next
    assert (await _names(session, agent, "person", company_id=acme.id))[0] == [f"Person {i:02d}" for i in range(4)]
    assert len((await _names(session, agent, "", tag="Gold"))[0]) == (PAGE_SIZE + 3) // 2
    assert (await _names(session, agent, "", owner_id=owner.user_id))[0] == ["Person 00", "Person 01"]
    pool = (await _names(session, agent, "person", unowned=True))[0]
    assert "Person 00" not in pool and "Person 02" in pool


async def test_bad_searches_are_refused_with_the_field(session: AsyncSession) -> None:
    agent = await make_actor(session, Role.AGENT)
    for query, field in (
        (CustomerQuery(text="x" * 201), "q"),
        (CustomerQuery(text="a\x00b"), "q"),
        (CustomerQuery(page=0), "page"),
    ):
        with pytest.raises(ValidationFailed) as raised:
            await search_customers(session=session, actor=agent, query=query, region="US")
        assert raised.value.details.get("field") == field
