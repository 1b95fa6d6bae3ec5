"""The outbox against the fake Twilio on SQLite and PostgreSQL: claims never overlap, a crash mid-send resends
nothing the provider accepted and skips nothing it did not; the token bucket and segment counting as units."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_core.db import make_sessionmaker
from crm_core.sms.models import SmsMessage
from crm_core.sms.segments import sms_shape
from crm_core.sms.service import queue_outbound
from sms_gateway.outbox import SmsOutbox
from sms_gateway.provider import OutgoingSms
from sms_gateway.ratelimit import TokenBucket
from sms_gateway.twilio_provider import TwilioProvider
from tests.fakes.twilio_api import FakeTwilio

SENDER = "+15550000100"
_numbers = itertools.count(1)


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio(send_callbacks=False)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def provider(twilio: FakeTwilio) -> AsyncIterator[TwilioProvider]:
    client = TwilioProvider(twilio.account_sid, twilio.auth_token, api_base=twilio.base_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def sessions(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    maker = make_sessionmaker(engine)
    numbers: list[str] = []
    maker.numbers = numbers  # type: ignore[attr-defined]
    try:
        yield maker
    finally:  # the PostgreSQL database is shared by the run: leave no message behind for another test's worker
        async with maker() as session, session.begin():
            await session.execute(delete(SmsMessage).where(SmsMessage.to_number.in_(numbers)))


async def queue(sessions: async_sessionmaker[AsyncSession], count: int) -> list[str]:
    numbers = [f"+1555300{next(_numbers):04d}" for _ in range(count)]
    sessions.numbers.extend(numbers)  # type: ignore[attr-defined]
    async with sessions() as session, session.begin():
        for number in numbers:
            queue_outbound(session, to=number, sender=SENDER, body=f"Your order to {number} has shipped.")
    return numbers


async def rows(sessions: async_sessionmaker[AsyncSession], numbers: list[str]) -> dict[str, SmsMessage]:
    async with sessions() as session:
        found = await session.scalars(select(SmsMessage).where(SmsMessage.to_number.in_(numbers)))
        return {m.to_number: m for m in found}


async def test_a_crash_mid_send_resends_nothing_accepted_and_skips_nothing(
    sessions: async_sessionmaker[AsyncSession], provider: TwilioProvider, twilio: FakeTwilio
) -> None:
    numbers = await queue(sessions, 4)
    crashed = SmsOutbox(sessions, provider, default_mps=1000, batch=4)
    claimed = await crashed._claim()
    assert sorted(c.to for c in claimed) == sorted(numbers)
    # the process dies after Twilio accepted the first two and before it recorded them; the others never left
    for message in claimed[:2]:
        await provider.send(OutgoingSms(message.id, message.to, message.sender, message.body))
    assert {m.status for m in (await rows(sessions, numbers)).values()} == {"sending"}

    restarted = SmsOutbox(sessions, provider, default_mps=1000, batch=4)
    assert await restarted.recover(stale_after_s=0) == 4
    assert await restarted.run_once() == 2
    after = await rows(sessions, numbers)
    assert {m.status for m in after.values()} == {"accepted"}
    for number in numbers:
        sent = twilio.sent_to(number)
        assert len(sent) == 1, number  # exactly one message each
        assert after[number].provider_sid == sent[0]["sid"]
    assert twilio.requests == 4


async def test_two_workers_never_claim_the_same_message(
    sessions: async_sessionmaker[AsyncSession], provider: TwilioProvider, twilio: FakeTwilio
) -> None:
    numbers = await queue(sessions, 30)
    first = SmsOutbox(sessions, provider, default_mps=1000, batch=20)
    second = SmsOutbox(sessions, provider, default_mps=1000, batch=20)
    one, two = await asyncio.gather(first._claim(), second._claim())
    assert not {c.id for c in one} & {c.id for c in two}
    assert len(one) + len(two) == 30
    for message in [*one, *two]:
        await first.send_one(message)
    assert all(len(twilio.sent_to(n)) == 1 for n in numbers)


async def test_a_claim_never_returns_more_than_its_batch_when_many_are_due(
    sessions: async_sessionmaker[AsyncSession], provider: TwilioProvider
) -> None:
    """Many workers claim at once while many rows are due and some are locked by others: each claim is at most
    its batch (PostgreSQL may re-run a plain IN (… SKIP LOCKED) subquery and claim more), none is shared and
    every row is claimed exactly once."""
    numbers = await queue(sessions, 120)
    mine = set((await rows(sessions, numbers)).keys())
    workers = [SmsOutbox(sessions, provider, default_mps=1000, batch=7) for _ in range(6)]
    seen: list[str] = []
    for _ in range(60):
        claims = await asyncio.gather(*(worker._claim() for worker in workers))
        for claim in claims:
            assert len(claim) <= 7
        ours = [c.id for claim in claims for c in claim if c.to in mine]
        seen.extend(ours)
        if not any(claims):
            break
    assert len(seen) == len(set(seen)) == 120
    assert {m.status for m in (await rows(sessions, numbers)).values()} == {"sending"}


async def test_a_message_not_yet_due_waits(
    sessions: async_sessionmaker[AsyncSession], provider: TwilioProvider
) -> None:
    from datetime import timedelta

    from crm_core.db import utcnow

    number = f"+1555300{next(_numbers):04d}"
    sessions.numbers.append(number)  # type: ignore[attr-defined]
    async with sessions() as session, session.begin():
        queue_outbound(session, to=number, sender=SENDER, body="Later", due_at=utcnow() + timedelta(hours=1))
    outbox = SmsOutbox(sessions, provider)
    assert [c for c in await outbox._claim() if c.to == number] == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_the_token_bucket_holds_the_rate_in_segments() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        await bucket.take(1)
    # 10 saved up at the start, then 90 more at 10 a second
    assert clock.now == pytest.approx(9.0)
    before = clock.now
    await bucket.take(3)  # a three-segment message costs three
    assert clock.now - before == pytest.approx(0.3)
    bucket.drain(2.0)  # the provider said slow down
    before = clock.now
    await bucket.take(1)
    assert clock.now - before == pytest.approx(2.1)


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", "GSM-7", 1),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # an extension character costs two septets
        ("€" * 81, "GSM-7", 2),
        ("a" * 159 + "€", "GSM-7", 2),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),  # 306 septets, but the escape is not split at 153
        ("Grüße aus Köln, ça va?", "UCS-2", 1),  # ß, ç are not GSM-7
        ("Привет" * 11 + "abcd", "UCS-2", 1),  # 70 UCS-2 units
        ("Привет" * 11 + "abcde", "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # a surrogate pair is two units
        ("😀" * 36, "UCS-2", 2),
        ("a" * 66 + "😀" + "a" * 66, "UCS-2", 3),  # 134 units, but the pair is not split at 67
    ],
)
def test_gsm7_or_ucs2_and_the_segment_count(text: str, encoding: str, segments: int) -> None:
    shape = sms_shape(text)
    assert (shape.encoding, shape.segments) == (encoding, segments)


async def test_batches_overlapping_send_everything_once_and_a_slow_sender_claims_little(
    sessions: async_sessionmaker[AsyncSession], provider: TwilioProvider, twilio: FakeTwilio
) -> None:
    """Many small batches with requests in flight (the next batch is claimed while the last sends of the one before
    are on their way): every message is sent exactly once and marked accepted. A claim never holds more than two
    seconds of the fastest sender's rate (rows wait `sending` meanwhile; a slow sender's would outlive their lease)."""
    numbers = await queue(sessions, 60)
    outbox = SmsOutbox(sessions, provider, default_mps=100_000, batch=7, concurrency=4)
    assert await outbox.send_due() == 60
    sent = [m["to"] for m in twilio.accepted if m["to"] in set(numbers)]
    assert sorted(sent) == sorted(numbers)
    found = await rows(sessions, numbers)
    assert {m.status for m in found.values()} == {"accepted"}
    assert len({m.provider_sid for m in found.values()}) == 60
    assert await outbox.send_due() == 0
    assert SmsOutbox(sessions, provider, default_mps=1, batch=200).claim_size() == 2
    assert SmsOutbox(sessions, provider, default_mps=1, sender_mps={SENDER: 30}, batch=200).claim_size() == 60
    assert SmsOutbox(sessions, provider, default_mps=1000, batch=200).claim_size() == 200


async def test_a_claim_keeps_only_what_each_sender_sends_in_two_seconds(
    sessions: async_sessionmaker[AsyncSession], provider: TwilioProvider
) -> None:
    """A slow sender's messages behind a fast one's batch size: the claim keeps two seconds' worth of them and puts
    the rest back `queued`, in order and with their attempts as they were (never left `sending` past the lease)."""
    numbers = await queue(sessions, 12)
    outbox = SmsOutbox(sessions, provider, default_mps=1, sender_mps={"+15550000999": 500}, batch=200)
    assert outbox.claim_size() == 200 and outbox.sender_claim_limit(SENDER) == 2
    claimed = [c for c in await outbox._claim() if c.to in set(numbers)]
    assert [c.to for c in claimed] == numbers[:2]
    found = await rows(sessions, numbers)
    assert [found[n].status for n in numbers] == ["sending"] * 2 + ["queued"] * 10
    assert [found[n].attempts for n in numbers] == [1] * 2 + [0] * 10
    claimed = [c for c in await outbox._claim() if c.to in set(numbers)]
    assert [c.to for c in claimed] == numbers[2:4]  # the next two, in order
