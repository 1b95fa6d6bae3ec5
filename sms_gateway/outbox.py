"""The SMS outbox worker: messages are rows written `queued` before anything is sent; one loop claims due rows
(row locks, SKIP LOCKED on PostgreSQL), sends each at its sender's rate and marks it after. A message a crash left
`sending` is settled by asking the provider what it accepted, so nothing accepted is sent twice and nothing is
skipped."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.bus import EventBus
from crm_core.db import record_event, unit_of_work, utcnow
from crm_core.sms.events import SmsStatusChanged
from crm_core.sms.models import SmsMessage
from crm_core.sms.senders import sender_rates
from crm_core.sms.service import record_consent
from crm_core.tasks import cancel_and_wait, wait_for_wake
from sms_gateway.errors import OptedOut, SmsSendError, Throttled
from sms_gateway.provider import OutgoingSms, SmsProvider
from sms_gateway.ratelimit import TokenBucket

log = logging.getLogger(__name__)
STATUS_RANK = {"queued": 0, "sending": 1, "accepted": 2, "sent": 3, "delivered": 4, "undelivered": 4, "failed": 4}
STATUS_RANK["opted_out"] = 4
MAX_VALIDITY_S = 36_000  # Twilio's longest validity period
CLAIM_AHEAD_S = 2.0  # seconds of sending a claim holds at most
# a sender that fell behind (a slow answer, a pause) catches up with at most this many seconds of its rate at once:
# over any stretch of time it sends its rate, give or take half a second's worth, never a whole second's burst
BURST_S = 0.5


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    to: str
    sender: str
    body: str
    segments: int
    attempts: int
    customer_id: str | None
    expires_at: datetime | None = None


def status_callback_for(base_url: str, message_id: str) -> str:
    """Our status webhook, naming the outbox row: a callback that beats the send's answer still finds its row."""
    return f"{base_url.rstrip('/')}/sms/status?ref={message_id}"


class SmsOutbox:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        provider: SmsProvider,
        *,
        bus: EventBus | None = None,
        public_base_url: str | None = None,
        default_mps: float = 1.0,
        sender_mps: dict[str, float] | None = None,
        batch: int = 20,
        every_s: float = 1.0,
        lease_s: float = 120.0,
        max_attempts: int = 8,
        backoff_s: float = 2.0,
        concurrency: int = 1,
        rates_every_s: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.provider = provider
        self.bus = bus
        self.public_base_url = public_base_url
        self.default_mps = default_mps
        self.sender_mps = dict(sender_mps or {})
        self.batch = batch
        self.every_s = every_s
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        # sends in flight at once: their start is still paced by each sender's bucket, so more only hides latency
        self.concurrency = max(1, concurrency)
        self.rates_every_s = rates_every_s
        self._rates_at = float("-inf")
        self.wake = asyncio.Event()
        self._buckets: dict[str, TokenBucket] = {}
        self._task: asyncio.Task[None] | None = None

    def bucket(self, sender: str) -> TokenBucket:
        bucket = self._buckets.get(sender)
        if bucket is None:
            # empty at first: a new worker does not open with a whole second's burst on top of the rate
            mps = self.sender_mps.get(sender, self.default_mps)
            bucket = TokenBucket(mps, burst=mps * BURST_S, start_full=False)
            self._buckets[sender] = bucket
        return bucket

    async def refresh_rates(self) -> None:
        """Take each sender's rate from the senders table (an admin may change it while the outbox runs)."""
        async with self.sessions() as session:
            rates = await sender_rates(session=session)
        for address, mps in rates.items():
            self.sender_mps[address] = mps
            bucket = self._buckets.get(address)
            if bucket is not None and bucket.rate != mps:
                bucket.rate, bucket.burst = mps, max(mps * BURST_S, 1.0)
        self._rates_at = time.monotonic()

    def rates_due(self) -> None:
        """Read the senders' rates again before the next batch (an admin changed one)."""
        self._rates_at = float("-inf")
        self.wake.set()

    def _claim_limit(self, mps: float) -> int:
        return max(1, min(self.batch, int(mps * CLAIM_AHEAD_S)))

    def claim_size(self) -> int:
        """Rows to claim at once: `batch`, but never more than the fastest sender sends in CLAIM_AHEAD_S."""
        return self._claim_limit(max([self.default_mps, *self.sender_mps.values()]))

    def sender_claim_limit(self, sender: str) -> int:
        """A claim keeps at most what `sender` sends in CLAIM_AHEAD_S: claimed rows wait in `sending`, and a slow
        sender's would outlive their lease, to be settled and queued again (and so sent twice) by recovery."""
        return self._claim_limit(self.sender_mps.get(sender, self.default_mps))

    async def _claim(self) -> list[Claimed]:
        """One UPDATE … RETURNING: the write lock is taken by the first statement (SQLite never meets a stale read
        snapshot), and on PostgreSQL the rows are picked FOR UPDATE SKIP LOCKED in a materialized CTE (run once, so
        never more than `batch` rows), so workers never share one."""
        now = utcnow()
        async with self.sessions() as session, session.begin():
            due = (
                select(SmsMessage.id)
                .where(SmsMessage.status == "queued", SmsMessage.due_at <= now)
                .order_by(SmsMessage.due_at, SmsMessage.created_at)
                .limit(self.claim_size())
            )
            if session.get_bind().dialect.name == "postgresql":
                # WITH due AS MATERIALIZED (… LIMIT n FOR UPDATE SKIP LOCKED) UPDATE … FROM due: a plain
                # IN (subquery) may be run more than once by PostgreSQL and so claim more than `batch` rows
                picked = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
                which: Any = SmsMessage.id == picked.c.id
            else:
                which = SmsMessage.id.in_(due.scalar_subquery())
            claimed = await session.execute(
                update(SmsMessage)
                .where(which, SmsMessage.status == "queued")
                .values(status="sending", claimed_at=now, attempts=SmsMessage.attempts + 1)
                .returning(
                    SmsMessage.id,
                    SmsMessage.to_number,
                    SmsMessage.from_number,
                    SmsMessage.body,
                    SmsMessage.segments,
                    SmsMessage.attempts,
                    SmsMessage.customer_id,
                    SmsMessage.expires_at,
                    SmsMessage.due_at,
                    SmsMessage.created_at,
                )
                .execution_options(synchronize_session=False)
            )
            found = sorted(claimed, key=lambda r: (r.due_at, r.created_at))
            kept, over = [], []
            per_sender: dict[str, int] = {}
            for row in found:  # no sender holds more than it sends in CLAIM_AHEAD_S: the rest go back, in order
                taken = per_sender.get(row.from_number, 0)
                if taken < self.sender_claim_limit(row.from_number):
                    per_sender[row.from_number] = taken + 1
                    kept.append(row)
                else:
                    over.append(row.id)
            if over:
                await session.execute(
                    update(SmsMessage)
                    .where(SmsMessage.id.in_(over))
                    .values(status="queued", attempts=SmsMessage.attempts - 1)
                    .execution_options(synchronize_session=False)
                )
            return [Claimed(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in kept]

    async def _mark(self, message_id: str, **values: Any) -> None:
        """Record what became of a send, never moving a message back (a status callback may have come first)."""
        async with unit_of_work(self.sessions, self.bus) as session:
            # a write first: it takes the lock (the row's on PostgreSQL, the database's on SQLite) before the read
            await session.execute(update(SmsMessage).where(SmsMessage.id == message_id).values(updated_at=utcnow()))
            row = await session.get(SmsMessage, message_id, populate_existing=True)
            if row is None:
                return
            status = values.pop("status")
            if STATUS_RANK.get(status, 0) >= STATUS_RANK.get(row.status, 0) or row.status == "sending":
                row.status = status
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            if status == "opted_out":
                await record_consent(
                    session=session,
                    number=row.to_number,
                    opted_out=True,
                    source="provider",
                    detail=str(values.get("provider_error") or "21610"),
                    customer_id=row.customer_id,
                    message_id=row.id,
                )
            record_event(session, SmsStatusChanged(row.id, row.conversation_id, row.status, row.error_code, utcnow()))

    async def send_one(self, claimed: Claimed, accepted: list[tuple[str, str]] | None = None) -> None:
        """Send one claimed message at its sender's rate and mark what became of it; an accepted send is only
        noted in `accepted` (message id, provider id) when given, to be marked with others in one transaction."""
        await self.bucket(claimed.sender).take(claimed.segments)
        callback = status_callback_for(self.public_base_url, claimed.id) if self.public_base_url else None
        validity: int | None = None
        if claimed.expires_at is not None:
            # Twilio drops what it still holds at the end of the validity period (1 s to 10 h): nothing it queued
            # goes out once the recipient's quiet hours begin
            left = int((claimed.expires_at - utcnow()).total_seconds())
            if left < 1:
                await self._mark(
                    claimed.id,
                    status="failed",
                    error_code="expired",
                    error_detail="The recipient's quiet hours began before it could be sent.",
                )
                return
            validity = min(left, MAX_VALIDITY_S)
        outgoing = OutgoingSms(
            claimed.id, claimed.to, claimed.sender, claimed.body, status_callback=callback, validity_period_s=validity
        )
        try:
            sid = await self.provider.send(outgoing)
        except OptedOut as exc:
            await self._mark(
                claimed.id,
                status="opted_out",
                error_code=exc.code,
                provider_error=exc.provider_code,
                error_detail=exc.message[:255],
            )
        except SmsSendError as exc:
            if exc.retryable and claimed.attempts < self.max_attempts:
                delay = self.backoff_s * 2 ** (claimed.attempts - 1)
                if isinstance(exc, Throttled):
                    self.bucket(claimed.sender).drain(delay)
                log.info("SMS %s to %s: %s; again in %.1f s", claimed.id, claimed.to, exc.code, delay)
                await self._mark(
                    claimed.id,
                    status="queued",
                    due_at=utcnow() + timedelta(seconds=delay),
                    error_code=exc.code,
                    provider_error=exc.provider_code,
                    error_detail=exc.message[:255],
                )
            else:
                await self._mark(
                    claimed.id,
                    status="failed",
                    error_code=exc.code,
                    provider_error=exc.provider_code,
                    error_detail=exc.message[:255],
                )
        else:
            if accepted is not None:  # many in flight: marked together, one transaction
                accepted.append((claimed.id, sid))
            else:
                await self._mark(claimed.id, status="accepted", provider_sid=sid, error_code=None, error_detail=None)

    async def _mark_accepted(self, accepted: list[tuple[str, str]]) -> None:
        """Mark a batch's accepted sends at once (only those still `sending`: a status callback that came first
        has already moved its row further)."""
        if not accepted:
            return
        now = utcnow()
        table = SmsMessage.__table__  # Core executemany: one statement, many rows
        params = [{"ref": ref, "sid": sid} for ref, sid in accepted]
        async with unit_of_work(self.sessions, self.bus) as session:
            await session.execute(
                update(table)
                .where(table.c.id == bindparam("ref"), table.c.status == "sending")
                .values(
                    status="accepted", provider_sid=bindparam("sid"), error_code=None, error_detail=None, updated_at=now
                ),
                params,
            )
            await session.execute(
                update(table)
                .where(table.c.id == bindparam("ref"), table.c.provider_sid.is_(None))
                .values(provider_sid=bindparam("sid")),
                params,
            )
            rows = await session.execute(
                select(SmsMessage.id, SmsMessage.conversation_id, SmsMessage.status).where(
                    SmsMessage.id.in_([ref for ref, _sid in accepted])
                )
            )
            for ref, conversation_id, status in rows:
                if conversation_id is not None:  # a campaign's messages are in no agent's thread: no live fan-out
                    record_event(session, SmsStatusChanged(ref, conversation_id, status, None, now))

    async def _send_guarded(self, message: Claimed, accepted: list[tuple[str, str]] | None = None) -> None:
        try:
            await self.send_one(message, accepted)
        except Exception:  # the row stays `sending`; recovery settles it with the provider
            log.exception("SMS %s: sending failed unexpectedly", message.id)

    async def run_once(self) -> int:
        """Claim one batch of due messages and send them; the number claimed."""
        if time.monotonic() - self._rates_at >= self.rates_every_s:
            await self.refresh_rates()
        claimed = await self._claim()
        if self.concurrency == 1:
            for message in claimed:
                await self._send_guarded(message)
            return len(claimed)
        await self._send_batch(claimed, asyncio.Semaphore(self.concurrency), asyncio.Event())
        return len(claimed)

    async def _send_batch(self, claimed: list[Claimed], gate: asyncio.Semaphore, all_started: asyncio.Event) -> None:
        """Send a batch `gate` requests at a time, then mark its accepted sends in one transaction; `all_started` is
        set once the last message of the batch has its slot (only the last few are still on their way)."""
        accepted: list[tuple[str, str]] = []
        waiting = len(claimed)

        async def gated(message: Claimed) -> None:
            nonlocal waiting
            async with gate:
                waiting -= 1
                if not waiting:
                    all_started.set()
                await self._send_guarded(message, accepted)

        try:
            await asyncio.gather(*(gated(m) for m in claimed))
        finally:
            all_started.set()
            await self._mark_accepted(accepted)

    async def send_due(self) -> int:
        """Send everything due, claiming the next batch while the last messages of the one before are still on
        their way (a batch boundary never leaves the sender's rate unused); the number sent."""
        if self.concurrency == 1:
            sent = 0
            while count := await self.run_once():
                sent += count
            return sent
        gate = asyncio.Semaphore(self.concurrency)
        batches: set[asyncio.Task[None]] = set()
        sent = 0
        try:
            while True:
                if time.monotonic() - self._rates_at >= self.rates_every_s:
                    await self.refresh_rates()
                claimed = await self._claim()
                if not claimed:
                    break
                sent += len(claimed)
                all_started = asyncio.Event()
                batch = asyncio.create_task(self._send_batch(claimed, gate, all_started), name="sms-outbox-batch")
                batches.add(batch)
                batch.add_done_callback(batches.discard)
                await all_started.wait()
        except asyncio.CancelledError:
            for batch in batches:  # a stop cuts sends off as run_once does: their rows stay `sending` for recovery
                batch.cancel()
            raise
        finally:
            await asyncio.gather(*batches, return_exceptions=True)  # each marks what it had sent
        return sent

    async def recover(self, *, stale_after_s: float | None = None) -> int:
        """Settle messages left `sending` (the process died mid-send): the provider's record decides whether it
        was accepted (then its id is kept) or not (then it is queued again). Returns how many were settled."""
        cutoff = utcnow() - timedelta(seconds=self.lease_s if stale_after_s is None else stale_after_s)
        async with self.sessions() as session:
            stuck = list(
                await session.scalars(
                    select(SmsMessage).where(SmsMessage.status == "sending", SmsMessage.claimed_at <= cutoff)
                )
            )
        settled = 0
        for row in stuck:
            since = (row.claimed_at or row.created_at) - timedelta(minutes=5)
            try:
                accepted = await self.provider.accepted_since(to=row.to_number, sender=row.from_number, since=since)
            except SmsSendError as exc:
                log.warning("cannot settle SMS %s now: %s", row.id, exc.message)
                continue
            async with self.sessions() as session:
                known = set(
                    await session.scalars(
                        select(SmsMessage.provider_sid).where(
                            SmsMessage.provider_sid.in_([a.provider_id for a in accepted])
                        )
                    )
                )
            match = next((a for a in accepted if a.body == row.body and a.provider_id not in known), None)
            if match is not None:
                await self._mark(row.id, status="accepted", provider_sid=match.provider_id)
            else:
                await self._mark(row.id, status="queued", due_at=utcnow())
            settled += 1
        return settled

    async def _loop(self) -> None:
        while True:
            try:
                await self.send_due()
                await self.recover()
            except Exception:
                log.exception("the SMS outbox failed; trying again")
            await wait_for_wake(self.wake, self.every_s)

    async def start(self, *, sole_worker: bool = True) -> None:
        """Start the loop; the sole worker (one process) settles every message a previous run left `sending`."""
        await self.recover(stale_after_s=0 if sole_worker else None)
        self._task = asyncio.create_task(self._loop(), name="sms-outbox")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
