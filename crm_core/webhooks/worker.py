"""The webhook worker: turns domain events from the bus into delivery rows (written before anything is sent,
in batches), claims due rows per subscription (UPDATE … RETURNING; FOR UPDATE SKIP LOCKED on PostgreSQL; a lease
that a dead worker lets run out), sends them signed with at most `max_in_flight` requests per receiver, and marks
them: delivered on 2xx (never sent again), else again after an exponential backoff with full jitter, dead once
the retry window (24 h) has closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ARRAY, String, any_, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from crm_core.bus import EventBus
from crm_core.db import unit_of_work, utcnow
from crm_core.webhooks.catalog import WebhookEvent, webhook_event_of
from crm_core.webhooks.models import DELIVERIES, WebhookSubscription
from crm_core.webhooks.sender import Outcome, WebhookSender
from crm_core.webhooks.service import mark_all_sending_due, record_deliveries

log = logging.getLogger(__name__)
RECORD_BATCH = 500
# On PostgreSQL a recorder NOTIFYs this channel once its deliveries are written (committed), and sending workers
# LISTEN to it: a delivery is claimed as soon as it is there, not at the next poll
NOTIFY_CHANNEL = "crm_webhook_deliveries"
_NOTIFY = text(f"NOTIFY {NOTIFY_CHANNEL}")
CLAIMABLE = ["pending", "sending"]  # the statuses a claim takes (`sending` ones once their lease ran out)
TARGETS_TTL_S = 1.0  # how long the active subscriptions read for claiming are used before they are read again


def _one_of(dialect: str, column: Any, name: str, values: list[str] | None = None) -> Any:
    """`column` is one of the parameter `name`'s values. On PostgreSQL one array parameter (`= ANY`): one prepared
    statement for any number of values, which SQLAlchemy need not render again at every run; elsewhere an expanding
    IN. `values` fills the parameter once for good (statuses); without it, each run gives them (ids)."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, values, type_=ARRAY(String)))
    return column.in_(bindparam(name, values, expanding=True))


def _mark_delivered_statement(dialect: str) -> Any:
    """Delivered wins over anything (another worker that took over after a lease ran out included)."""
    picked = _one_of(dialect, DELIVERIES.c.id, "ids")
    return (
        update(DELIVERIES)
        .where(picked, DELIVERIES.c.status != "delivered")
        .values(
            status="delivered",
            delivered_at=bindparam("at"),
            next_attempt_at=None,
            last_status_code=bindparam("code"),
            last_error=None,
        )
    )


def _claim_statement(dialect: str) -> Any:
    """Due rows of one subscription (`for_subscription`), at most `limit`, oldest first, made `sending` until
    `lease_until`: built once, run with its parameters."""
    rows = DELIVERIES.c
    # a literal IN would be rendered into the SQL again at every run (a twentieth of a busy worker)
    claimable = _one_of(dialect, rows.status, "claimable", CLAIMABLE)
    due = (
        select(rows.id)
        .where(
            rows.subscription_id == bindparam("for_subscription"),
            claimable,
            rows.next_attempt_at <= bindparam("now"),
        )
        .order_by(rows.next_attempt_at)
        .limit(bindparam("limit"))
    )
    if dialect == "postgresql":
        # a materialized CTE: as a plain IN (subquery) PostgreSQL may run the SKIP LOCKED subquery more than once
        # and claim more than `limit` rows (more requests than the receiver's cap)
        picked = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
        due_ids: Any = select(picked.c.id).scalar_subquery()
    else:
        due_ids = due.scalar_subquery()
    return (
        update(DELIVERIES)
        .where(rows.id.in_(due_ids), claimable, rows.next_attempt_at <= bindparam("now"))
        .values(
            status="sending",
            attempts=rows.attempts + 1,
            next_attempt_at=bindparam("lease_until"),
            last_attempt_at=bindparam("claimed_at"),
        )
        .returning(rows.id, rows.subscription_id, rows.event_type, rows.body, rows.attempts, rows.retry_until)
    )


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A Core statement compiled once for asyncpg: its SQL ($1, $2, … with casts), the names of its parameters in
    that order, and the values of those the statement itself holds (`status = 'sending'`, `attempts + 1`)."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        return [parameters[name] if name in parameters else self.fixed[name] for name in self.names]


class HotConnection:
    """One connection kept by a loop that runs statements for every batch (records, claims, delivered marks), in
    autocommit: each statement is atomic on its own, so one round trip per statement, with no pool checkout,
    pre-ping, BEGIN or COMMIT around it. Closed on any error (the next use connects again) and at stop.

    `rows` runs a Core statement built once. On PostgreSQL it goes to asyncpg directly, compiled once: SQLAlchemy's
    work around each execution (cache key, parameter processing, result set-up) cost a worker more than asyncpg's
    own at 1,000 deliveries/s. The statement is still the one Core statement, so SQLite runs the same."""

    def __init__(self, engine: AsyncEngine, *, custom_plans: bool = False) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._driver: Any = None  # asyncpg's connection under it, on PostgreSQL
        self._compiled: dict[int, tuple[Any, _Compiled]] = {}
        # PostgreSQL plans a prepared statement for its parameters five times, then may keep one generic plan: the
        # claim's, made while the table was small, was a sequential scan that later read every delivery ever written
        # (0.5 ms of the server per row claimed, at 1,000 deliveries/s). Planned for each run instead: ~0.3 ms.
        self._custom_plans = custom_plans and engine.dialect.name == "postgresql"
        self._direct = engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg"
        self._one_at_a_time = asyncio.Lock()  # one connection, one statement at a time (and one connect)

    async def _connect(self) -> AsyncConnection:
        if self._connection is not None:
            return self._connection
        connection = await self._engine.connect()
        try:  # kept only once it is set up whole (a failed SET would leave it planning generically)
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            if self._custom_plans:
                await connection.execute(text("SET plan_cache_mode = force_custom_plan"))
            driver = (await connection.get_raw_connection()).driver_connection if self._direct else None
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._connection, self._driver = connection, driver
        return connection

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with self._one_at_a_time:
            connection = await self._connect()
            try:
                result = await work(connection)
                await connection.commit()  # ends SQLAlchemy's own transaction; nothing is sent in autocommit
                return result
            except BaseException:
                await self.close()
                raise

    async def rows(self, statement: Any, parameters: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """The rows a statement returns (none for one without RETURNING), run on its own in autocommit."""
        if not self._direct:
            return await self.run(lambda connection: self._through_sqlalchemy(connection, statement, parameters))
        compiled = self._compile(statement)
        async with self._one_at_a_time:
            await self._connect()
            try:
                found: Sequence[Sequence[Any]] = await self._driver.fetch(compiled.sql, *compiled.arguments(parameters))
                return found
            except BaseException:
                await self.close()
                raise

    @staticmethod
    async def _through_sqlalchemy(
        connection: AsyncConnection, statement: Any, parameters: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        result = await connection.execute(statement, dict(parameters))
        return result.all() if result.returns_rows else []

    def _compile(self, statement: Any) -> _Compiled:
        known = self._compiled.get(id(statement))
        if known is not None and known[0] is statement:
            return known[1]
        compiled = statement.compile(dialect=self._engine.dialect)
        fixed = dict(compiled.construct_params(_check=False))
        made = _Compiled(compiled.string, tuple(compiled.positiontup or ()), fixed)
        self._compiled[id(statement)] = (statement, made)  # the statement kept: its id is not reused meanwhile
        return made

    async def close(self) -> None:
        connection, self._connection, self._driver = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter (a random wait between 0 and base·2^(attempt−1), at most `cap_s`),
    for `window` after the delivery was written; then it is dead."""

    base_s: float = 10.0
    cap_s: float = 3600.0
    window: timedelta = timedelta(hours=24)

    def delay_s(self, attempts: int, rand: Callable[[float, float], float] = random.uniform) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        return rand(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    subscription_id: str
    event_type: str
    body: str
    attempts: int
    retry_until: datetime


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    url: str
    secret: str
    max_in_flight: int


class WebhookWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        sender: WebhookSender,
        *,
        retry: RetryPolicy | None = None,
        lease_s: float = 60.0,
        every_s: float = 1.0,
        send: bool = True,
    ) -> None:
        self.sessions = sessions
        self._engine: AsyncEngine = sessions.kw["bind"]
        self._claims = HotConnection(self._engine, custom_plans=True)
        self._marks_connection = HotConnection(self._engine)
        self._records = HotConnection(self._engine)
        self._claim_statement = _claim_statement(self._engine.dialect.name)
        self._mark_delivered_statement = _mark_delivered_statement(self._engine.dialect.name)
        self.sender = sender
        self.retry = retry or RetryPolicy()
        self.lease_s = lease_s
        self.every_s = every_s
        self.sending = send
        self.wake = asyncio.Event()
        self._events: asyncio.Queue[WebhookEvent] = asyncio.Queue()
        self._in_flight: dict[str, int] = defaultdict(int)
        # receivers whose last claim filled every free slot: more may be due, so a finished send looks again
        self._backlogged: set[str] = set()
        self.claims = 0  # claim statements run, and the rows they took
        self.claimed = 0
        self._sends: set[asyncio.Task[None]] = set()
        self._marks: set[asyncio.Future[str]] = set()
        # 2xx answers, marked `delivered` in batches: one UPDATE for many, not a commit per delivery
        self._delivered: asyncio.Queue[tuple[Claimed, Outcome]] = asyncio.Queue()
        self._marker_idle = asyncio.Event()
        self._marker_idle.set()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._recorder_idle = asyncio.Event()
        self._recorder_idle.set()
        self._targets_cache: tuple[float, list[Target]] | None = None
        self.listening = asyncio.Event()  # set while new deliveries wake the sender (PostgreSQL's NOTIFY)
        self.looking = asyncio.Event()  # the sender is claiming (set) or waiting for a wake-up (`idle` set)
        self.idle = asyncio.Event()
        # told (delivery id, status it was marked with) after each mark commits: metrics, tests
        self.on_marked: list[Callable[[str, str], None]] = []

    # --- events in -------------------------------------------------------------------------------------------

    def attach(self, bus: EventBus) -> None:
        """Take every event of the bus; those a webhook is made of are written as deliveries."""
        bus.subscribe(None, self.on_event)

    def on_event(self, domain_event: object) -> None:
        event = webhook_event_of(domain_event)
        if event is not None:
            self._recorder_idle.clear()
            self._events.put_nowait(event)

    async def _record_loop(self) -> None:
        while True:
            first = await self._events.get()
            batch = [first]
            while len(batch) < RECORD_BATCH and not self._events.empty():
                batch.append(self._events.get_nowait())
            try:
                await self.record(batch)
            except Exception:
                log.exception("could not write %d webhook deliveries; trying again", len(batch))
                for event in batch:  # kept in order for the next try
                    self._events.put_nowait(event)
                await asyncio.sleep(0.5)
            if self._events.empty():
                self._recorder_idle.set()

    async def record(self, events: list[WebhookEvent]) -> int:
        async def write(connection: AsyncConnection) -> list[Any]:
            # autocommit: each INSERT commits as it runs (a batch of over a thousand rows takes several); a batch
            # cut in half is written again whole, and the rows already there are skipped (one per subscription and
            # event). The NOTIFY goes after them, so the senders it wakes find every row.
            written = await record_deliveries(connection=connection, events=events, retry_window=self.retry.window)
            if written and self._engine.dialect.name == "postgresql":
                await connection.execute(_NOTIFY)
            return written

        written = await self._records.run(write)
        if written:
            cached = self._targets_cache
            if cached is not None and not {r.subscription_id for r in written} <= {t.id for t in cached[1]}:
                self._targets_cache = None  # a subscription made since the last read: read them again
            self.wake.set()
        return len(written)

    # --- claiming and sending ----------------------------------------------------------------------------------

    async def _targets(self) -> list[Target]:
        now = asyncio.get_running_loop().time()
        if self._targets_cache is not None and now - self._targets_cache[0] < TARGETS_TTL_S:
            return self._targets_cache[1]
        async with self.sessions() as session:
            rows = await session.execute(
                select(
                    WebhookSubscription.id,
                    WebhookSubscription.url,
                    WebhookSubscription.secret,
                    WebhookSubscription.max_in_flight,
                ).where(WebhookSubscription.active.is_(True))
            )
            targets = [Target(*row) for row in rows]
        self._targets_cache = (now, targets)
        return targets

    async def _claim(self, subscription_id: str, limit: int) -> list[Claimed]:
        """Due rows of one subscription: pending ones whose time has come and sending ones whose lease ran out."""
        now = utcnow()
        parameters = {
            "for_subscription": subscription_id,
            "now": now,
            "limit": limit,
            "claimed_at": now,
            "lease_until": now + timedelta(seconds=self.lease_s),
        }
        # one statement: atomic in autocommit
        return [Claimed(*row) for row in await self._claims.rows(self._claim_statement, parameters)]

    async def run_once(self) -> int:
        """Claim what is due for every receiver with a free slot and start sending it; the number claimed."""
        started = 0
        for target in await self._targets():
            free = target.max_in_flight - self._in_flight[target.id]
            if free <= 0 or (target.id in self._backlogged and free < max(1, target.max_in_flight // 4)):
                continue  # behind: claim once a quarter of the slots is free, not a row per finished send
            batch = await self._claim(target.id, free)
            self.claims += 1
            self.claimed += len(batch)
            if len(batch) == free:
                self._backlogged.add(target.id)  # there may be more due: a finished send looks again
            else:
                self._backlogged.discard(target.id)
            for claimed in batch:
                self._in_flight[target.id] += 1
                task = asyncio.create_task(self._deliver(target, claimed), name=f"webhook-{claimed.id}")
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
                started += 1
        return started

    async def _deliver(self, target: Target, claimed: Claimed) -> None:
        try:
            outcome = await self.sender.send(
                url=target.url,
                secret=target.secret,
                delivery_id=claimed.id,
                event_type=claimed.event_type,
                body=claimed.body,
            )
            if outcome.delivered:
                self._marker_idle.clear()
                self._delivered.put_nowait((claimed, outcome))
                return
            # a stop may cancel the send, never the marking: a transaction cut in half leaves its connection
            # (and, on SQLite, the write lock) behind
            mark = asyncio.ensure_future(self._mark_failed(claimed, outcome))
            self._marks.add(mark)
            mark.add_done_callback(self._marks.discard)
            status = await asyncio.shield(mark)
            for listener in self.on_marked:
                listener(claimed.id, status)
        except Exception:  # the row stays `sending`; its lease runs out and it is tried again
            log.exception("webhook delivery %s failed unexpectedly", claimed.id)
        finally:
            self._in_flight[target.id] -= 1
            if target.id in self._backlogged:
                self.wake.set()  # rows wait for this slot (else new ones wake the sender, by NOTIFY or its poll)

    async def _mark_failed(self, claimed: Claimed, outcome: Outcome) -> str:
        """Record a failed attempt (2xx answers are marked in batches, by the marker): due again after the backoff,
        or dead once the retry window has closed; the status it leaves the delivery in."""
        now = utcnow()
        rows = DELIVERIES.c
        async with unit_of_work(self.sessions) as session:
            next_at = now + timedelta(seconds=self.retry.delay_s(claimed.attempts))
            dead = next_at > claimed.retry_until
            if dead:
                log.warning(
                    "webhook delivery %s is dead after %d attempts: %s", claimed.id, claimed.attempts, outcome.error
                )
            # only the claim that is still current records a failure
            await session.execute(
                update(DELIVERIES)
                .where(rows.id == claimed.id, rows.status == "sending", rows.attempts == claimed.attempts)
                .values(
                    status="dead" if dead else "pending",
                    next_attempt_at=None if dead else next_at,
                    last_status_code=outcome.status_code,
                    last_error=outcome.error,
                )
            )
        return "dead" if dead else "pending"

    async def _mark_delivered_loop(self) -> None:
        while True:
            batch = [await self._delivered.get()]
            while len(batch) < RECORD_BATCH and not self._delivered.empty():
                batch.append(self._delivered.get_nowait())
            try:
                await self._mark_delivered(batch)
            except Exception:  # the rows stay `sending`; their lease runs out and they are sent again
                log.exception("could not mark %d webhook deliveries delivered", len(batch))
            else:
                for claimed, _ in batch:
                    for listener in self.on_marked:
                        listener(claimed.id, "delivered")
            if self._delivered.empty():
                self._marker_idle.set()

    async def _mark_delivered(self, batch: list[tuple[Claimed, Outcome]]) -> None:
        """Delivered wins over anything (another worker that took over after a lease ran out included)."""
        by_code: dict[int | None, list[str]] = defaultdict(list)
        for claimed, outcome in batch:
            by_code[outcome.status_code].append(claimed.id)
        now = utcnow()
        for code, ids in by_code.items():  # each statement stands alone: a repeat changes nothing
            await self._marks_connection.rows(self._mark_delivered_statement, {"ids": ids, "at": now, "code": code})

    async def _send_loop(self) -> None:
        while not self._stopping.is_set():
            self.idle.clear()
            self.looking.set()
            self.wake.clear()
            try:
                while await self.run_once() and not self._stopping.is_set():
                    pass
            except Exception:
                log.exception("claiming webhook deliveries failed; trying again")
            self.looking.clear()
            self.idle.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.every_s)

    async def wait_until_idle(self) -> None:
        """Until the sender waits for a wake-up with none pending (for tests: what wakes it next is then known)."""
        while True:
            await self.idle.wait()
            if not self.wake.is_set():
                return
            await self.looking.wait()  # woken already: its next look begins before it is idle again

    async def _listen_loop(self) -> None:
        """PostgreSQL only: wake the sender whenever any process commits new deliveries (LISTEN/NOTIFY). Polling
        every `every_s` stays as the fallback (a lost connection, leases running out, retries coming due)."""
        bind = self._engine
        if bind.dialect.name != "postgresql":
            return
        while not self._stopping.is_set():
            try:
                async with bind.connect() as connection:
                    raw = await connection.get_raw_connection()
                    driver: Any = raw.driver_connection  # asyncpg's connection, which can LISTEN
                    lost = asyncio.Event()

                    def heard(*_: object) -> None:
                        self.wake.set()

                    driver.add_termination_listener(lambda *_, lost=lost: lost.set())
                    await driver.add_listener(NOTIFY_CHANNEL, heard)
                    self.listening.set()
                    self.wake.set()  # what was written before we listened
                    stopping = asyncio.ensure_future(self._stopping.wait())
                    dropped = asyncio.ensure_future(lost.wait())
                    try:
                        await asyncio.wait({stopping, dropped}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stopping.cancel()
                        dropped.cancel()
                    self.listening.clear()
                    if not lost.is_set():
                        await driver.remove_listener(NOTIFY_CHANNEL, heard)
            except Exception:
                log.warning("cannot listen for new webhook deliveries; polling every %.1f s", self.every_s)
            with contextlib.suppress(TimeoutError):  # then listen again
                await asyncio.wait_for(self._stopping.wait(), 5.0)

    # --- life ----------------------------------------------------------------------------------------------

    async def start(self, *, sole_worker: bool = False) -> None:
        """Start recording (and sending); the sole worker of a deployment first makes every delivery a previous run
        left `sending` due at once instead of waiting for its lease."""
        if self.sending and sole_worker:
            async with unit_of_work(self.sessions) as session:
                left = await mark_all_sending_due(session=session)
            if left:
                log.info("%d webhook deliveries were in flight when the last run stopped; sending them again", left)
        self._tasks.append(asyncio.create_task(self._record_loop(), name="webhook-recorder"))
        if self.sending:
            self._tasks.append(asyncio.create_task(self._mark_delivered_loop(), name="webhook-marker"))
            self._tasks.append(asyncio.create_task(self._send_loop(), name="webhook-sender"))
            self._tasks.append(asyncio.create_task(self._listen_loop(), name="webhook-listener"))

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until every event taken so far is written (and, sending, every send started has ended)."""
        async with asyncio.timeout(timeout_s):
            await self._recorder_idle.wait()
            while self._sends:
                await asyncio.gather(*list(self._sends), return_exceptions=True)
            await self._marker_idle.wait()

    async def stop(self, *, drain_s: float = 5.0) -> None:
        """Claim nothing more, write what was taken and let sends in flight end (for `drain_s`), then stop. Sends
        still in flight are cut off (their rows stay `sending` until their lease runs out or the next sole worker
        starts); no transaction is cut in half."""
        loops = {task.get_name(): task for task in self._tasks}
        sender_loop = loops.pop("webhook-sender", None)
        self._stopping.set()
        self.wake.set()
        if sender_loop is not None:
            await sender_loop  # it ends at its next turn, never inside a claim
        with contextlib.suppress(TimeoutError):
            await self.drain(drain_s)
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        await asyncio.gather(*self._marks, return_exceptions=True)
        marker = loops.pop("webhook-marker", None)
        if marker is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(drain_s, 1.0)):
                    await self._marker_idle.wait()  # every 2xx answer so far recorded
            marker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await marker
        recorder = loops.pop("webhook-recorder", None)
        if recorder is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(drain_s, 1.0)):
                    await self._recorder_idle.wait()  # not inside a write
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
        listener = loops.pop("webhook-listener", None)
        if listener is not None:
            with contextlib.suppress(TimeoutError):  # it ends once stopping is set, its connection given back
                async with asyncio.timeout(max(drain_s, 1.0)):
                    await asyncio.shield(listener)
            listener.cancel()  # still connecting to a database that does not answer: given up
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        await self._claims.close()
        await self._marks_connection.close()
        await self._records.close()
        self._tasks.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "queued_events": self._events.qsize(),
            "in_flight": sum(self._in_flight.values()),
            "claims": self.claims,
            "claimed": self.claimed,
        }
