"""Demo data for a newcomer: agents matching the demo PBX's extensions, customers the demo calls come from."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from agent_desktop.runtime import Runtime
from crm_core.customers.models import Customer, CustomerPhone, Payment
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.db import utcnow
from crm_core.tickets.service import create_ticket
from crm_core.users.models import Role, User
from crm_core.users.service import SYSTEM, create_user

DEMO_USERS = [
    ("agent1001", "Ada Agent", Role.AGENT, "1001", ["support"]),
    ("agent1002", "Ben Agent", Role.AGENT, "1002", ["support"]),
    ("agent2001", "Cleo Agent", Role.AGENT, "2001", ["sales"]),
    ("agent2002", "Dan Agent", Role.AGENT, "2002", ["sales"]),
    # the supervisor's own phone: listen, whisper and barge ring it first (ChanSpy from Local/9001@agents)
    ("supervisor", "Sue Supervisor", Role.SUPERVISOR, "9001", ["support", "sales"]),
    ("marketer", "Mark Marketer", Role.MARKETER, None, []),
]
FIRST = ["Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lea"]
LAST = ["Example", "Martin", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Silva", "Tanaka", "Ueda", "Weber"]
# The recorded AMI traces and the demo PBX call from these numbers.
KNOWN_CALLERS = [("Alice Example", "+15551230001", "gold"), ("Bob Example", "+15551230002", None)]


async def create_demo_data(
    runtime: Runtime, *, customers: int, password: str, progress: Callable[[int], None] | None = None
) -> str:
    created_users = 0
    async with runtime.unit_of_work() as session:
        existing = set(await session.scalars(select(User.username)))
        for username, name, role, extension, queues in DEMO_USERS:
            if username in existing:
                continue
            await create_user(
                session=session,
                actor=SYSTEM,
                username=username,
                password=password,
                role=role,
                display_name=name,
                extension=extension,
                queues=queues,
                must_change_password=True,  # a password printed on a screen and in the README is one-time
            )
            created_users += 1
    async with runtime.unit_of_work() as session:
        already = await session.scalar(select(CustomerPhone.id).where(CustomerPhone.e164 == KNOWN_CALLERS[0][1]))
    if already:
        return f"Demo data present already; {created_users} user(s) added. Demo users' one-time password: {password}"
    rng = random.Random(7)  # the same demo every time
    region = runtime.settings.default_region
    now = utcnow()
    made = 0
    async with runtime.unit_of_work() as session:
        company = await create_customer(
            session=session, actor=SYSTEM, data=CustomerIn(name="Example Corp", kind="company"), region=region
        )
        for name, number, tier in KNOWN_CALLERS:
            customer = await create_customer(
                session=session,
                actor=SYSTEM,
                region=region,
                data=CustomerIn(
                    name=name,
                    parent_id=company.id,
                    phones=[PhoneIn(number=number)],
                    vip_tier=tier,
                    emails=[f"{name.split()[0].lower()}@example.com"],
                    city="Springfield",
                    country="US",
                    timezone="America/New_York",
                    language="en",
                    tags=["demo"],
                ),
            )
            await create_ticket(
                session=session,
                actor=SYSTEM,
                subject=f"Router keeps rebooting ({name.split()[0]})",
                customer_id=customer.id,
                priority="high",
            )
            made += 1
    for start in range(0, max(0, customers - made), 100):
        async with runtime.unit_of_work() as session:
            for offset in range(start, min(start + 100, customers - made)):
                name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
                number = f"+1555{2000000 + offset:07d}"
                customer = Customer(
                    name=name,
                    city=rng.choice(["Springfield", "Shelbyville", "Ogdenville"]),
                    country="US",
                    language="en",
                    phones=[CustomerPhone(e164=number, label="mobile", is_primary=True)],
                )
                session.add(customer)
                await session.flush()
                for _ in range(rng.randint(0, 6)):
                    session.add(
                        Payment(
                            customer_id=customer.id,
                            amount=Decimal(rng.randint(10, 500)),
                            occurred_at=now - timedelta(days=rng.randint(0, 360)),
                        )
                    )
        if progress:
            progress(min(customers, made + start + 100))
    return (
        f"Demo data ready: {created_users} user(s), {customers} customers. Demo users (agent1001, agent1002, "
        f"agent2001, agent2002, supervisor, marketer) sign in once with the password {password} and then choose "
        "their own"
    )
