"""Campaigns: the audience de-duplicated and minus opt-outs, quiet hours in each recipient's zone, one bad recipient
never stopping the rest, pause, resume and cancel, per-recipient status; sent through the outbox to the fake
Twilio with the real SDK."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_core.customers.models import Customer
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.db import make_sessionmaker
from crm_core.errors import Conflict
from crm_core.sms.campaigns import (
    campaign_progress,
    change_campaign,
    create_campaign,
    next_allowed,
    quiet_begins,
    recipient_zone,
)
from crm_core.sms.models import SmsCampaign, SmsCampaignRecipient, SmsMessage, SmsSender
from crm_core.sms.senders import SenderIn, save_sender
from crm_core.sms.service import record_consent
from crm_core.users.service import SYSTEM
from sms_gateway.campaigns import CampaignDispatcher
from sms_gateway.outbox import SmsOutbox
from sms_gateway.twilio_provider import TwilioProvider
from tests.fakes.twilio_api import FakeTwilio

SENDER = "+15550000200"
_serial = itertools.count(1)
EVENING_UTC = datetime(2026, 12, 3, 22, 30, tzinfo=UTC)  # New York 17:30, London 22:30


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio(send_callbacks=False)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def sessions(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    maker = make_sessionmaker(engine)
    async with maker() as session, session.begin():
        await session.execute(delete(SmsSender).where(SmsSender.address == SENDER))
        await save_sender(
            session=session, actor=SYSTEM, data=SenderIn(SENDER, "long_code", "US", a2p_10dlc_registered=True)
        )
    try:
        yield maker
    finally:  # a PostgreSQL database is shared by the run: leave nothing queued for another test's worker
        async with maker() as session, session.begin():
            await session.execute(delete(SmsMessage).where(SmsMessage.from_number == SENDER))
            await session.execute(delete(SmsCampaign))
            await session.execute(delete(SmsSender))


async def customer(session: AsyncSession, name: str, number: str, **custom: str) -> str:
    created = await create_customer(
        session=session,
        actor=SYSTEM,
        region="US",
        data=CustomerIn(name=f"{name} {next(_serial)}", phones=[PhoneIn(number=number)]),
        allow_duplicate=True,
    )
    created.custom_fields = dict(custom)
    return created.id


def test_quiet_hours_in_the_recipients_own_zone() -> None:
    new_york, london = recipient_zone("+12125550101"), recipient_zone("+442071838750")
    assert (new_york.key, london.key) == ("America/New_York", "Europe/London")
    assert recipient_zone("+12125550101", "Asia/Tokyo").key == "Asia/Tokyo"  # the customer's own zone first
    assert next_allowed(EVENING_UTC, new_york, 21, 9) is None
    assert next_allowed(EVENING_UTC, london, 21, 9) == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    early = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)  # New York 22:00 the day before
    assert next_allowed(early, new_york, 21, 9) == datetime(2026, 12, 4, 14, 0, tzinfo=UTC)
    assert next_allowed(EVENING_UTC, london, 0, 0) is None  # no quiet hours
    assert quiet_begins(EVENING_UTC, new_york, 21, 9) == datetime(2026, 12, 4, 2, 0, tzinfo=UTC)  # 21:00 there
    assert quiet_begins(EVENING_UTC, london, 0, 0) is None


async def test_a_campaign_reaches_each_number_once_outside_quiet_hours(
    sessions: async_sessionmaker[AsyncSession], twilio: FakeTwilio
) -> None:
    # This evening (the outbox sends and expires on the real clock): New York's afternoon, London's late evening
    tonight = datetime.combine(datetime.now(UTC).date(), time(22, 30), UTC)
    tomorrow = tonight.date() + timedelta(days=1)
    london_morning = datetime.combine(tomorrow, time(9), ZoneInfo("Europe/London")).astimezone(UTC)
    async with sessions() as session, session.begin():
        ny = await customer(session, "Nina York", "+12125550101", promo="NY10")
        twin = await customer(session, "Nina Twin", "+12125550101", promo="NY10")  # same number: one message
        london = await customer(session, "Len Don", "+442071838750", promo="UK10")
        opted = await customer(session, "Olly Out", "+12125550103", promo="X")
        no_promo = await customer(session, "Nora Field", "+12125550104")
        invalid = await customer(session, "Ivan Valid", "+12125550105", promo="IV")
        await record_consent(session=session, number="+12125550103", opted_out=True, source="keyword", detail="STOP")
        campaign = await create_campaign(
            session=session,
            actor=SYSTEM,
            name="Winter promo",
            template="Hi {first_name}, use code {promo} this week. Reply STOP to opt out.",
            sender=SENDER,
            customer_ids=[ny, twin, london, opted, no_promo, invalid, ny],
            scheduled_at=tonight,
        )
        await change_campaign(session=session, actor=SYSTEM, campaign_id=campaign.id, action="start")
    twilio.refuse("+12125550105", 21211)
    provider = TwilioProvider(twilio.account_sid, twilio.auth_token, api_base=twilio.base_url)
    outbox = SmsOutbox(sessions, provider, default_mps=1000)
    dispatcher = CampaignDispatcher(sessions, clock=lambda: tonight)
    try:
        assert await dispatcher.run_once() == 4  # New York x3 (one no promo, one invalid) and London (deferred)
        while await outbox.run_once():
            pass
    finally:
        await provider.close()
    assert [m["to"] for m in twilio.accepted] == ["+12125550101"]
    assert twilio.accepted[0]["body"].startswith("Hi Nina, use code NY10 this week.")
    # Twilio is told to drop it if still unsent when the quiet hours begin there (capped at its 10 h maximum)
    assert 0 < int(twilio.accepted[0]["validity_period"]) <= 36_000
    async with sessions() as session:
        recipients = {r.number: r for r in await session.scalars(select(SmsCampaignRecipient))}
        progress = await campaign_progress(session=session, actor=SYSTEM, campaign_id=campaign.id)
        state = await session.get(SmsCampaign, campaign.id)
    assert set(recipients) == {"+12125550101", "+442071838750", "+12125550103", "+12125550104", "+12125550105"}
    assert recipients["+12125550103"].status == "opted_out"
    assert recipients["+12125550104"].status == "failed" and "{promo}" in (recipients["+12125550104"].reason or "")
    assert recipients["+442071838750"].status == "pending"
    assert recipients["+442071838750"].due_at == london_morning
    assert progress == {"accepted": 1, "failed": 2, "opted_out": 1, "pending": 1}
    assert state is not None and state.status == "running"  # London is still to come

    morning = CampaignDispatcher(sessions, clock=lambda: london_morning)
    provider = TwilioProvider(twilio.account_sid, twilio.auth_token, api_base=twilio.base_url)
    outbox = SmsOutbox(sessions, provider, default_mps=1000)
    try:
        assert await morning.run_once() == 1
        while await outbox.run_once():
            pass
    finally:
        await provider.close()
    assert [m["to"] for m in twilio.accepted] == ["+12125550101", "+442071838750"]
    async with sessions() as session:
        state = await session.get(SmsCampaign, campaign.id)
    assert state is not None and state.status == "done"


async def test_pause_resume_and_cancel(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        ids = [await customer(session, "Pat", f"+1212555{next(_serial):04d}") for _ in range(3)]
        campaign = await create_campaign(
            session=session,
            actor=SYSTEM,
            name="Pausable",
            template="Hello {first_name}",
            sender=SENDER,
            customer_ids=ids,
            quiet_start_hour=0,
            quiet_end_hour=0,
        )
        with pytest.raises(Conflict):
            await change_campaign(session=session, actor=SYSTEM, campaign_id=campaign.id, action="pause")
        await change_campaign(session=session, actor=SYSTEM, campaign_id=campaign.id, action="start")
        await change_campaign(session=session, actor=SYSTEM, campaign_id=campaign.id, action="pause")
    dispatcher = CampaignDispatcher(sessions, batch=1)
    assert await dispatcher.run_once() == 0  # paused: nothing handed over
    async with sessions() as session, session.begin():
        await change_campaign(session=session, actor=SYSTEM, campaign_id=campaign.id, action="resume")
    assert await dispatcher.run_once() == 1
    async with sessions() as session, session.begin():
        await change_campaign(session=session, actor=SYSTEM, campaign_id=campaign.id, action="cancel")
    assert await dispatcher.run_once() == 0
    async with sessions() as session:
        progress = await campaign_progress(session=session, actor=SYSTEM, campaign_id=campaign.id)
        customers = list(await session.scalars(select(Customer).where(Customer.id.in_(ids))))
    # the one handed over was still waiting in the outbox: withdrawn with the campaign
    assert progress == {"failed": 1, "skipped": 2}
    assert len(customers) == 3


async def test_a_message_whose_quiet_hours_began_before_sending_is_not_sent(
    sessions: async_sessionmaker[AsyncSession], twilio: FakeTwilio
) -> None:
    from datetime import timedelta

    from crm_core.db import utcnow
    from crm_core.sms.service import queue_outbound

    async with sessions() as session, session.begin():
        late = queue_outbound(
            session, to="+12125550199", sender=SENDER, body="Too late", expires_at=utcnow() - timedelta(seconds=5)
        )
        soon = queue_outbound(
            session, to="+12125550198", sender=SENDER, body="In time", expires_at=utcnow() + timedelta(minutes=30)
        )
    provider = TwilioProvider(twilio.account_sid, twilio.auth_token, api_base=twilio.base_url)
    try:
        while await SmsOutbox(sessions, provider, default_mps=1000).run_once():
            pass
    finally:
        await provider.close()
    async with sessions() as session:
        expired = await session.get(SmsMessage, late.id)
        sent = await session.get(SmsMessage, soon.id)
    assert expired is not None and (expired.status, expired.error_code) == ("failed", "expired")
    assert sent is not None and sent.status == "accepted"
    assert [m["to"] for m in twilio.accepted] == ["+12125550198"]
    assert 1_700 <= int(twilio.accepted[0]["validity_period"]) <= 1_800
