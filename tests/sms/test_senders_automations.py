"""Senders as a table (kinds, country defaults, pools, the A2P 10DLC refusal, rates for the outbox), CSV audiences
(bad rows reported, duplicates dropped, opt-outs kept out) and the automations (missed-call text-back, ticket
opened/resolved, feedback), each once per occasion, never to an opted-out number, never in quiet hours."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.calls.models import CallLog
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.errors import ValidationFailed
from crm_core.sms.automations import run_automations, save_automation
from crm_core.sms.campaigns import (
    campaign_progress,
    change_campaign,
    create_campaign,
    estimate_campaign,
    parse_audience_csv,
    preview_recipients,
)
from crm_core.sms.models import SmsAutomationSend, SmsCampaignRecipient, SmsMessage
from crm_core.sms.senders import (
    SenderIn,
    SenderRefused,
    campaign_senders,
    pick_sender,
    save_sender,
    sender_rates,
)
from crm_core.sms.service import record_consent
from crm_core.tickets.service import create_ticket
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor

_serial = itertools.count(1)
NOON_NY = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)  # 12:00 in New York
NIGHT_NY = datetime(2026, 12, 4, 4, 0, tzinfo=UTC)  # 23:00 in New York


async def customer(session: AsyncSession, name: str, number: str) -> str:
    created = await create_customer(
        session=session,
        actor=SYSTEM,
        region="US",
        data=CustomerIn(name=f"{name} {next(_serial)}", phones=[PhoneIn(number=number)]),
        allow_duplicate=True,
    )
    return created.id


async def test_senders_are_checked_and_one_default_per_country(session: AsyncSession) -> None:
    with pytest.raises(ValidationFailed, match="toll-free"):
        await save_sender(session=session, actor=SYSTEM, data=SenderIn("+12125550100", "toll_free", "US"))
    with pytest.raises(ValidationFailed, match="MG"):
        await save_sender(session=session, actor=SYSTEM, data=SenderIn("+12125550100", "messaging_service", "US"))
    with pytest.raises(ValidationFailed, match="belongs to GB"):
        await save_sender(session=session, actor=SYSTEM, data=SenderIn("+442071838750", "long_code", "US"))
    marketer = Actor("m" * 32, Role.MARKETER)
    with pytest.raises(Exception, match="role"):
        await save_sender(session=session, actor=marketer, data=SenderIn("+18005550100", "toll_free", "US"))
    first = await save_sender(
        session=session, actor=SYSTEM, data=SenderIn("+18005550100", "toll_free", "US", mps=3, is_default=True)
    )
    second = await save_sender(
        session=session, actor=SYSTEM, data=SenderIn("12345", "short_code", "US", mps=100, is_default=True)
    )
    await save_sender(
        session=session, actor=SYSTEM, data=SenderIn("MG" + "a" * 32, "messaging_service", "GB", is_default=True)
    )
    await session.refresh(first)
    assert not first.is_default and second.is_default  # the new default replaced the old one
    rates = await sender_rates(session=session)
    assert rates["+18005550100"] == 3 and rates["12345"] == 100
    defaults = {"US": "12345", "GB": "MG" + "a" * 32}
    assert pick_sender("+12125550101", sender="", pool=[], defaults=defaults) == "12345"
    assert pick_sender("+442071838750", sender="", pool=[], defaults=defaults) == "MG" + "a" * 32
    assert pick_sender("+33142685300", sender="", pool=[], defaults=defaults) is None
    pool = ["+18005550100", "12345"]
    picks = {pick_sender(f"+1212555{n:04d}", sender="", pool=pool, defaults={}) for n in range(40)}
    assert picks == set(pool)  # the pool is shared …
    assert pick_sender("+12125550101", sender="", pool=pool, defaults={}) == pick_sender(
        "+12125550101", sender="", pool=pool, defaults={}
    )  # … and one number always gets the same sender


async def test_an_unregistered_us_long_code_is_refused_for_campaigns_with_the_reason(session: AsyncSession) -> None:
    await save_sender(session=session, actor=SYSTEM, data=SenderIn("+12125550190", "long_code", "US"))
    target = await customer(session, "Ann", "+12125550191")
    with pytest.raises(SenderRefused, match="A2P 10DLC"):
        await create_campaign(
            session=session,
            actor=SYSTEM,
            name="Refused",
            template="Hi",
            sender="+12125550190",
            customer_ids=[target],
        )
    with pytest.raises(SenderRefused, match="not a sender here"):
        await campaign_senders(session=session, sender="+12125550199", pool=[])
    registered = await save_sender(
        session=session,
        actor=SYSTEM,
        data=SenderIn("+12125550192", "long_code", "US", a2p_10dlc_registered=True),
    )
    campaign = await create_campaign(
        session=session, actor=SYSTEM, name="Fine", template="Hi", sender="+12125550192", customer_ids=[target]
    )
    # the registration withdrawn after the draft: the start is refused before anything is sent
    await save_sender(
        session=session,
        actor=SYSTEM,
        sender_id=registered.id,
        data=SenderIn("+12125550192", "long_code", "US", a2p_10dlc_registered=False),
    )
    with pytest.raises(SenderRefused, match="A2P 10DLC"):
        await change_campaign(session=session, actor=SYSTEM, campaign_id=campaign.id, action="start")
    assert campaign.status == "draft"


def test_a_csv_audience_reports_bad_rows_and_drops_duplicates() -> None:
    audience = parse_audience_csv(
        "Phone,First_Name,promo\n"
        "+12125550101,Ann,A1\n"
        "(212) 555-0102,Bob,B2\n"
        ",Nobody,X\n"
        "not a number,Bad,X\n"
        "212-555-0101,Ann again,A1\n"
        "+12125550103,Cy,C3,extra\n",
        region="US",
    )
    assert [n for n, _v in audience.rows] == ["+12125550101", "+12125550102"]
    assert audience.rows[0][1] == {"first_name": "Ann", "promo": "A1"}
    assert audience.duplicates == 1
    assert [line for line, _why in audience.problems] == [4, 5, 7]
    with pytest.raises(ValidationFailed, match="phone column"):
        parse_audience_csv("name\nAnn\n", region="US")


async def test_a_csv_campaign_minus_opt_outs_previews_and_estimates(session: AsyncSession) -> None:
    await save_sender(
        session=session,
        actor=SYSTEM,
        data=SenderIn("+18005550111", "toll_free", "US", price_per_segment=0.01, is_default=True),
    )
    known = await customer(session, "Kay Known", "+12125550121")
    await record_consent(session=session, number="+12125550123", opted_out=True, source="keyword", detail="STOP")
    audience = parse_audience_csv(
        "phone,promo\n+12125550121,K1\n+12125550122,N2\n+12125550123,O3\n+12125550124,\n", region="US"
    )
    campaign = await create_campaign(
        session=session,
        actor=SYSTEM,
        name="CSV",
        template="Hello {first_name}, code {promo}",
        csv_audience=audience,
    )
    assert campaign.sender == "" and campaign.sender_pool == []  # each country's default
    progress = await campaign_progress(session=session, actor=SYSTEM, campaign_id=campaign.id)
    assert progress == {"pending": 3, "opted_out": 1}
    linked = await session.scalar(
        select(SmsCampaignRecipient.customer_id).where(SmsCampaignRecipient.number == "+12125550121")
    )
    assert linked == known
    previews = {p.number: p for p in await preview_recipients(session=session, actor=SYSTEM, campaign_id=campaign.id)}
    assert previews["+12125550121"].body is not None and previews["+12125550121"].body.endswith("code K1")
    assert previews["+12125550122"].error is not None and "{first_name}" in previews["+12125550122"].error
    estimate = await estimate_campaign(session=session, actor=SYSTEM, campaign_id=campaign.id)
    assert (estimate.sendable, estimate.opted_out, estimate.errors) == (3, 1, 2)
    assert (estimate.segments, estimate.cost) == (1, 0.01)


async def test_automations_text_once_honour_opt_outs_and_quiet_hours(session: AsyncSession) -> None:
    await save_sender(session=session, actor=SYSTEM, data=SenderIn("+18005550131", "toll_free", "US", is_default=True))
    caller = await customer(session, "Cal Missed", "+12125550131")
    opted = await customer(session, "Olive Out", "+12125550132")
    await record_consent(session=session, number="+12125550132", opted_out=True, source="keyword", detail="STOP")
    for linkedid, number, who, outcome in (
        ("1.1", "+12125550131", caller, "abandoned"),
        ("1.2", "+12125550132", opted, "abandoned"),
        ("1.3", "+12125550133", None, "abandoned"),  # an unknown caller: texted by number
        ("1.4", "+12125550131", caller, "answered"),  # answered: no text-back (a feedback request later)
    ):
        session.add(
            CallLog(
                linkedid=linkedid,
                direction="inbound",
                caller_number=number,
                customer_id=who,
                outcome=outcome,
                offered_at=NOON_NY - timedelta(minutes=10),
                answered_at=NOON_NY - timedelta(minutes=9) if outcome == "answered" else None,
                ended_at=NOON_NY - timedelta(minutes=5),
            )
        )
    await session.flush()
    assert await run_automations(session=session, now=NOON_NY) == []  # all switched off
    await save_automation(
        session=session,
        actor=SYSTEM,
        name="missed_call",
        enabled=True,
        template="Sorry we missed your call. Reply STOP to opt out.",
        delay_days=0,
        now=NOON_NY,  # switched on then: what happened since (and LOOKBACK before) is texted
    )
    with pytest.raises(ValidationFailed, match="ticket_number"):
        await save_automation(
            session=session, actor=SYSTEM, name="missed_call", enabled=True, template="#{ticket_number}", delay_days=0
        )
    done = {d.occasion: d for d in await run_automations(session=session, now=NOON_NY)}
    assert {k: d.outcome for k, d in done.items()} == {
        "call:1.1": "queued",
        "call:1.2": "opted_out",
        "call:1.3": "queued",
    }
    assert await run_automations(session=session, now=NOON_NY) == []  # once per call
    texts = {
        m.to_number: m for m in await session.scalars(select(SmsMessage).where(SmsMessage.direction == "outbound"))
    }
    assert set(texts) == {"+12125550131", "+12125550133"}
    assert texts["+12125550131"].customer_id == caller  # on the customer's timeline
    assert texts["+12125550131"].from_number == "+18005550131"
    assert texts["+12125550131"].due_at == NOON_NY

    # a ticket opened at 23:00 in New York: queued for 09:00 there, never sent in the night
    await save_automation(
        session=session,
        actor=SYSTEM,
        name="ticket_created",
        enabled=True,
        template="Hi {first_name}, ticket #{ticket_number} is open.",
        delay_days=0,
        now=NIGHT_NY,  # switched on then: what happened since (and LOOKBACK before) is texted
    )
    ticket = await create_ticket(session=session, actor=SYSTEM, subject="Broken", customer_id=caller, now=NIGHT_NY)
    done = await run_automations(session=session, now=NIGHT_NY)
    assert [(d.occasion, d.outcome) for d in done] == [(f"ticket:{ticket.id}:created", "queued")]
    message = await session.get(SmsMessage, done[0].message_id)
    assert message is not None and message.body == f"Hi Cal, ticket #{ticket.number} is open."
    assert message.due_at == datetime(2026, 12, 4, 14, 0, tzinfo=UTC)  # 09:00 in New York

    # the feedback request, three days after an answered call
    await save_automation(
        session=session,
        actor=SYSTEM,
        name="feedback",
        enabled=True,
        template="Thanks {first_name}! How did we do?",
        delay_days=3,
        now=NOON_NY,  # switched on then: what happened since (and LOOKBACK before) is texted
    )
    assert [d.occasion for d in await run_automations(session=session, now=NOON_NY + timedelta(days=1))] == []
    later = await run_automations(session=session, now=NOON_NY + timedelta(days=3))
    assert [(d.automation, d.occasion, d.outcome) for d in later] == [("feedback", "call:1.4", "queued")]
    sends = await session.scalar(select(SmsAutomationSend.id).where(SmsAutomationSend.occasion == "call:1.4"))
    assert sends is not None
