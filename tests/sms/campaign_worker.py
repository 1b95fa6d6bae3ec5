"""The sending process of the kill test: the campaign dispatcher and the SMS outbox on one database, sending to
the fake Twilio, until it is killed. Run as `python -m tests.sms.campaign_worker DB_URL API_BASE SID TOKEN`."""

from __future__ import annotations

import asyncio
import sys

from crm_core.db import make_engine, make_sessionmaker
from sms_gateway.campaigns import CampaignDispatcher
from sms_gateway.outbox import SmsOutbox
from sms_gateway.twilio_provider import TwilioProvider


async def main(database_url: str, api_base: str, account_sid: str, auth_token: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    provider = TwilioProvider(account_sid, auth_token, api_base=api_base)
    outbox = SmsOutbox(sessions, provider, default_mps=100_000, batch=50, every_s=0.05)
    dispatcher = CampaignDispatcher(sessions, batch=500, every_s=0.05, on_queued=outbox.wake.set)
    await outbox.start(sole_worker=True)  # settles what a killed predecessor left `sending`
    dispatcher.start()
    print("started", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
