"""The kill test: a campaign's sending process is killed with SIGKILL half way and started again; every recipient
got exactly one message and none was skipped (the fake Twilio counts what it accepted)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from crm_core import migrate
from crm_core.customers.models import Customer, CustomerPhone
from crm_core.db import make_engine, make_sessionmaker, new_id, utcnow
from crm_core.sms.campaigns import change_campaign, create_campaign
from crm_core.sms.models import SmsCampaign, SmsMessage
from crm_core.sms.senders import SenderIn, save_sender
from crm_core.users.service import SYSTEM
from tests.fakes.twilio_api import FakeTwilio
from tests.sqlite_template import migrated_sqlite

ROOT = Path(__file__).resolve().parents[2]
# 10,000 in the issue's own run (see the report); fewer by default so the suite stays fast
RECIPIENTS = int(os.environ.get("CRM_SMS_KILL_TEST_RECIPIENTS", "400"))


async def spawn(database_url: str, twilio: FakeTwilio) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.sms.campaign_worker",
        database_url,
        twilio.base_url,
        twilio.account_sid,
        twilio.auth_token,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 30) == b"started\n"
    return process


@pytest.mark.slow
async def test_a_campaign_killed_midway_sends_every_recipient_exactly_once(tmp_path: Path) -> None:
    database_url = migrated_sqlite(tmp_path / "crm.db")
    engine = make_engine(database_url)
    await migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    numbers = [f"+1646{i:07d}" for i in range(RECIPIENTS)]
    ids = [new_id() for _ in numbers]
    now = utcnow()
    async with sessions() as session, session.begin():
        await session.execute(
            insert(Customer),
            [
                {
                    "id": i,
                    "name": f"Customer {n}",
                    "kind": "person",
                    "created_at": now,
                    "updated_at": now,
                    "custom_fields": {},
                    "sms_opt_out": False,
                }
                for i, n in zip(ids, numbers, strict=True)
            ],
        )
        await session.execute(
            insert(CustomerPhone),
            [
                {"id": new_id(), "customer_id": i, "e164": n, "label": "mobile", "is_primary": True}
                for i, n in zip(ids, numbers, strict=True)
            ],
        )
        await save_sender(
            session=session,
            actor=SYSTEM,
            data=SenderIn("+15550000300", "long_code", "US", mps=1000, a2p_10dlc_registered=True),
        )
        campaign = await create_campaign(
            session=session,
            actor=SYSTEM,
            name="Kill test",
            template="Hello {first_name}, this is the kill test.",
            sender="+15550000300",
            customer_ids=ids,
            quiet_start_hour=0,
            quiet_end_hour=0,
        )
        await change_campaign(session=session, actor=SYSTEM, campaign_id=campaign.id, action="start")
    twilio = FakeTwilio(send_callbacks=False)
    await twilio.start()
    try:
        first = await spawn(database_url, twilio)
        await twilio.wait_for(lambda fake: len(fake.accepted) >= RECIPIENTS // 2, within=120)
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        sent_before_restart = len(twilio.accepted)
        assert sent_before_restart < RECIPIENTS

        second = await spawn(database_url, twilio)
        try:

            async def settled() -> None:
                while True:
                    async with sessions() as session:
                        open_messages = await session.scalar(
                            select(func.count())
                            .select_from(SmsMessage)
                            .where(SmsMessage.status.in_(["queued", "sending"]))
                        )
                        state = await session.scalar(select(SmsCampaign.status).where(SmsCampaign.id == campaign.id))
                    if state == "done" and open_messages == 0:
                        return
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(settled(), 300)
        finally:
            second.send_signal(signal.SIGKILL)
            await second.wait()
    finally:
        await twilio.stop()
    per_number = Counter(m["to"] for m in twilio.accepted)
    assert set(per_number) == set(numbers)  # none skipped
    assert set(per_number.values()) == {1}  # none twice
    async with sessions() as session:
        rows = list(await session.execute(select(SmsMessage.to_number, SmsMessage.status, SmsMessage.provider_sid)))
    await engine.dispose()
    assert len(rows) == RECIPIENTS
    assert {status for _, status, _ in rows} == {"accepted"}
    assert {sid for _, _, sid in rows} == {m["sid"] for m in twilio.accepted}
    print(f"kill test: {RECIPIENTS} recipients, {sent_before_restart} sent before SIGKILL, the rest after restart")
