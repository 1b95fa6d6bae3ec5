"""Call logs from telephony events (idempotent, keyed by Linkedid), wrap-up with a disposition, surveys, history."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, String, Table, bindparam, case, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from crm_core.audit.models import AuditEntry
from crm_core.audit.service import record_audit
from crm_core.calls.errors import NotYourCall
from crm_core.calls.events import (
    CallAnswered,
    CallDirection,
    CallEnded,
    CallOffered,
    CallOutcome,
    CallsResynced,
    CallTransferred,
    CallWrappedUp,
)
from crm_core.calls.models import CallLeg, CallLog, Disposition
from crm_core.customers.lookup import find_customer_id_by_phone
from crm_core.customers.service import touch_interaction
from crm_core.db import new_id, record_event, utcnow
from crm_core.errors import NotFound, ValidationFailed
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

TelephonyEvent = CallOffered | CallAnswered | CallTransferred | CallEnded | CallsResynced
# The outcome of a call log that is only a survey score (a Twilio Voice call no PBX saw): no call to a queue.
SURVEY_ONLY = "survey_only"


async def _ensure_row(session: AsyncSession, linkedid: str, values: dict[str, Any]) -> CallLog:
    """The call log of `linkedid`, created with `values` if missing. Safe when two writers race (ON CONFLICT)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(CallLog).values(id=new_id(), linkedid=linkedid, **values)
    await session.execute(statement.on_conflict_do_nothing(index_elements=["linkedid"]))
    call = await session.scalar(
        select(CallLog).where(CallLog.linkedid == linkedid).execution_options(populate_existing=True)
    )
    if call is None:  # pragma: no cover - the insert above guarantees it
        raise NotFound(f"Call {linkedid} vanished.")
    return call


async def _customer_for(session: AsyncSession, number: str, region: str) -> str | None:
    if not number:
        return None
    return await find_customer_id_by_phone(session=session, number=number, region=region)


CALLS: Table = CallLog.__table__  # type: ignore[assignment]
LEGS: Table = CallLeg.__table__  # type: ignore[assignment]

# Columns an ended call writes whatever was there before (the PBX's final word on the call).
_FINAL = (
    "direction",
    "caller_number",
    "caller_name",
    "callee_number",
    "queue",
    "agent",
    "answered_at",
    "ended_at",
    "wait_seconds",
    "talk_seconds",
    "hold_seconds",
    "outcome",
    "hangup_cause",
    "closed_at_resync",
)
_LEG_UPDATES = ("seq", "agent", "queue", "rang_at", "answered_at", "ended_at")


class _CallLogStatements:
    """The call-log upserts of one dialect, built once and then only executed with parameters.

    Why: building an upsert per event makes SQLAlchemy alias the table for `excluded` every time — some 200 objects
    in reference cycles per statement, left for the garbage collector, whose pauses the screen pops beside the
    writer then wait out (bench/pop_latency.py). Built once, a call's writes leave no cyclic garbage.
    """

    def __init__(self, insert: Any) -> None:
        offered = insert(CALLS)
        # offered again (a replay) or after its end was written: what is there stays
        self.offered = offered.on_conflict_do_update(
            index_elements=["linkedid"], set_={"linkedid": offered.excluded.linkedid}
        ).returning(CALLS.c.id)
        self.answered = (
            update(CALLS)
            .where(CALLS.c.linkedid == bindparam("b_linkedid"))
            .values(
                wait_seconds=case(
                    (CALLS.c.answered_at.is_(None), bindparam("b_wait_seconds", type_=Float())),
                    else_=CALLS.c.wait_seconds,
                ),
                answered_at=func.coalesce(
                    CALLS.c.answered_at, bindparam("b_answered_at", type_=CALLS.c.answered_at.type)
                ),
                agent=case((CALLS.c.ended_at.is_(None), bindparam("b_agent", type_=String())), else_=CALLS.c.agent),
            )
        )
        self.transferred = update(CALLS).where(CALLS.c.linkedid == bindparam("b_linkedid")).values(transferred=True)
        ended = insert(CALLS)
        excluded = ended.excluded
        on_conflict: dict[str, Any] = {
            **{name: excluded[name] for name in _FINAL},
            "offered_at": case(
                (CALLS.c.offered_at < excluded.offered_at, CALLS.c.offered_at), else_=excluded.offered_at
            ),
            "transferred": or_(CALLS.c.transferred, excluded.transferred),
            "recording_ref": func.coalesce(excluded.recording_ref, CALLS.c.recording_ref),
        }
        # with IVR variables the ended call brings them; without, what the offer wrote stays
        self.ended_with_vars = ended.on_conflict_do_update(
            index_elements=["linkedid"], set_={**on_conflict, "ivr_vars": excluded.ivr_vars}
        ).returning(CALLS.c.id, CALLS.c.customer_id)
        self.ended = ended.on_conflict_do_update(index_elements=["linkedid"], set_=on_conflict).returning(
            CALLS.c.id, CALLS.c.customer_id
        )
        self.customer = (
            update(CALLS).where(CALLS.c.id == bindparam("b_call_id")).values(customer_id=bindparam("b_customer_id"))
        )
        legs = insert(LEGS)
        self.legs = legs.on_conflict_do_update(
            index_elements=["call_id", "channel"], set_={name: legs.excluded[name] for name in _LEG_UPDATES}
        )


_STATEMENTS: dict[str, _CallLogStatements] = {}


def _statements(session: AsyncSession) -> _CallLogStatements:
    dialect = session.get_bind().dialect.name
    built = _STATEMENTS.get(dialect)
    if built is None:
        built = _STATEMENTS[dialect] = _CallLogStatements(pg_insert if dialect == "postgresql" else sqlite_insert)
    return built


async def apply_call_event(*, session: AsyncSession, event: TelephonyEvent, region: str) -> str | None:
    """Bring the call log in line with one telephony event; its id. Applying the same event twice changes nothing.

    Written as single upserts (INSERT … ON CONFLICT … RETURNING) rather than ORM loads: the writer runs beside the
    CTI bridge and the screen pops, and every millisecond of its CPU is one they wait (bench/pop_latency.py).
    """
    if isinstance(event, CallsResynced):
        await close_calls_missed_while_blind(session=session, live_linkedids=event.live_linkedids, at=event.resynced_at)
        return None
    statements = _statements(session)
    connection = await session.connection()  # Core statements: the ORM's own layer has nothing to add here
    if isinstance(event, CallOffered):
        customer_number = event.callee_number if event.direction is CallDirection.OUTBOUND else event.caller_number
        row = {
            "id": new_id(),
            "linkedid": event.linkedid,
            "direction": event.direction.value,
            "caller_number": event.caller_number,
            "caller_name": event.caller_name,
            "callee_number": event.callee_number,
            "queue": event.queue,
            "offered_at": event.offered_at,
            "ivr_vars": dict(event.crm_vars),
            "customer_id": await _customer_for(session, customer_number, region),
        }
        return str((await connection.execute(statements.offered, row)).scalar_one())
    if isinstance(event, CallAnswered):
        await connection.execute(
            statements.answered,
            {
                "b_linkedid": event.linkedid,
                "b_wait_seconds": event.wait_seconds,
                "b_answered_at": event.answered_at,
                "b_agent": event.agent,
            },
        )
        return None
    if isinstance(event, CallTransferred):
        await connection.execute(statements.transferred, {"b_linkedid": event.linkedid})
        return None
    return await _apply_ended(session, connection, statements, event, region)


async def _apply_ended(
    session: AsyncSession, connection: AsyncConnection, statements: _CallLogStatements, event: CallEnded, region: str
) -> str:
    row = {
        "id": new_id(),
        "linkedid": event.linkedid,
        "offered_at": event.offered_at,
        "transferred": event.transferred,
        "recording_ref": event.recording,
        "ivr_vars": dict(event.crm_vars),
        "direction": event.direction.value,
        "caller_number": event.caller_number,
        "caller_name": event.caller_name,
        "callee_number": event.callee_number,
        "queue": event.queue,
        "agent": event.agent,
        "answered_at": event.answered_at,
        "ended_at": event.ended_at,
        "wait_seconds": event.wait_seconds,
        "talk_seconds": event.talk_seconds,
        "hold_seconds": event.hold_seconds,
        "outcome": event.outcome.value,
        "hangup_cause": event.hangup_cause,
        "closed_at_resync": event.closed_at_resync,
    }
    statement = statements.ended_with_vars if event.crm_vars else statements.ended
    call_id_value, customer_id = (await connection.execute(statement, row)).one()
    call_id = str(call_id_value)
    if customer_id is None:
        number = event.callee_number if event.direction is CallDirection.OUTBOUND else event.caller_number
        customer_id = await _customer_for(session, number, region)
        if customer_id is not None:
            await connection.execute(statements.customer, {"b_call_id": call_id, "b_customer_id": customer_id})
    if event.legs:
        await connection.execute(
            statements.legs,
            [
                {
                    "id": new_id(),
                    "call_id": call_id,
                    "seq": seq,
                    "channel": leg.channel,
                    "agent": leg.agent,
                    "queue": leg.queue,
                    "rang_at": leg.rang_at,
                    "answered_at": leg.answered_at,
                    "ended_at": leg.ended_at,
                }
                for seq, leg in enumerate(event.legs)
            ],
        )
    if customer_id is not None:
        await touch_interaction(session=session, customer_id=str(customer_id), at=event.ended_at)
    return call_id


async def close_calls_missed_while_blind(
    *, session: AsyncSession, live_linkedids: tuple[str, ...], at: datetime
) -> int:
    """Close the open call logs the PBX no longer has: they ended while the bridge was disconnected."""
    query = select(CallLog).where(CallLog.ended_at.is_(None), CallLog.offered_at <= at)
    closed = 0
    live = set(live_linkedids)
    for call in await session.scalars(query):
        if call.linkedid in live:
            continue
        call.ended_at = at
        if _only_a_survey(call):  # written before surveys outside the PBX were closed at once: not a lost caller
            call.outcome = SURVEY_ONLY
            call.closed_at_resync = True
            closed += 1
            continue
        call.outcome = (CallOutcome.ANSWERED if call.answered_at else CallOutcome.ABANDONED).value
        if call.answered_at is not None:
            call.talk_seconds = max(0.0, (at - call.answered_at).total_seconds() - call.hold_seconds)
        call.closed_at_resync = True
        closed += 1
    return closed


# --- what agents do with a call --------------------------------------------------------------------------------

# A listen to a recording is one audit entry however many byte ranges the player asks for: a request from someone
# with no audited listen of that recording in this window opens a new listen (and is audited before it is served).
LISTEN_WINDOW = timedelta(minutes=10)
_LISTEN_LOCK = 0x6C697374  # 'list': with the user and call, the PostgreSQL advisory lock of one listener's check


async def agents_who_answered(*, session: AsyncSession, call: CallLog) -> set[str]:
    """Extensions that answered a leg of the call. A leg only rung has no `answered_at`; `call.agent` is the
    extension that took the call, written when it is answered (before its legs, written when it ends)."""
    answered = await session.scalars(
        select(CallLeg.agent).where(CallLeg.call_id == call.id, CallLeg.answered_at.is_not(None))
    )
    return {*answered, *([call.agent] if call.agent else [])}


def check_agent_on_call(*, actor: Actor, linkedid: str, agents: Collection[str]) -> None:
    """The one rule of who may act on a call: supervisors and admins, and the agents in `agents` (those who
    answered it; for a live call, those on it now). Everyone else is refused with NotYourCall."""
    require_role(actor, Role.AGENT, Role.SUPERVISOR)
    if actor.role is not Role.AGENT:
        return
    if not actor.extension or actor.extension not in agents:
        raise NotYourCall(
            "This call is not yours: only the agents who answered it, or a supervisor, may.", linkedid=linkedid
        )


async def check_call_access(*, session: AsyncSession, actor: Actor, call: CallLog) -> None:
    """May `actor` act on this (logged) call — hear its recording, wrap it up, link it, open a ticket from it?"""
    require_role(actor, Role.AGENT, Role.SUPERVISOR)
    agents = await agents_who_answered(session=session, call=call) if actor.role is Role.AGENT else set()
    check_agent_on_call(actor=actor, linkedid=call.linkedid, agents=agents)


async def get_call(*, session: AsyncSession, actor: Actor, linkedid: str) -> CallLog:
    """The call log of `linkedid`, if `actor` may act on it (check_call_access)."""
    require_role(actor, Role.AGENT, Role.SUPERVISOR)
    call = await session.scalar(select(CallLog).where(CallLog.linkedid == linkedid))
    if call is None:
        raise NotFound("No such call.", linkedid=linkedid)
    await check_call_access(session=session, actor=actor, call=call)
    return call


async def open_recording(*, session: AsyncSession, actor: Actor, linkedid: str) -> CallLog:
    """The call whose recording `actor` is about to hear (check_call_access). Each listen is audited once, whatever
    the byte ranges it takes: a request from someone with no audited listen of this recording in the last
    LISTEN_WINDOW is a new listen, audited here, in the transaction that lets it be served."""
    call = await get_call(session=session, actor=actor, linkedid=linkedid)
    if not call.recording_ref:
        raise NotFound("This call has no recording.", linkedid=linkedid)
    if session.get_bind().dialect.name == "postgresql":
        # two ranges of one listen arriving together: the second waits, then finds the first's entry
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key, hashtext(:listener))"),
            {"key": _LISTEN_LOCK, "listener": f"{actor.user_id}:{call.id}"},
        )
    listening = await session.scalar(
        select(AuditEntry.id)
        .where(
            AuditEntry.entity_type == "recording",
            AuditEntry.entity_id == call.id,
            AuditEntry.action == "read",
            AuditEntry.actor_id == actor.user_id,
            AuditEntry.at >= utcnow() - LISTEN_WINDOW,
        )
        .limit(1)
    )
    if listening is None:
        await record_audit(
            session=session,
            actor=actor.user_id,
            action="read",
            entity_type="recording",
            entity_id=call.id,
            after={"linkedid": linkedid, "recording": call.recording_ref},
        )
        await session.flush()  # the next range of this listen, in its own transaction, finds it
    return call


async def check_disposition(*, session: AsyncSession, code: str) -> Disposition:
    disposition = await session.get(Disposition, code)
    if disposition is None or not disposition.active:
        raise ValidationFailed(f"{code!r} is not a disposition code in use.", field="disposition")
    return disposition


async def wrap_up(
    *, session: AsyncSession, actor: Actor, linkedid: str, disposition_code: str, notes: str | None = None
) -> CallLog:
    """Save the disposition and notes of a call. Only an agent who answered it, or a supervisor, may."""
    call = await get_call(session=session, actor=actor, linkedid=linkedid)
    await check_disposition(session=session, code=disposition_code)
    if notes is not None and len(notes) > 10_000:
        raise ValidationFailed("Notes are limited to 10,000 characters.", field="notes")
    before = {"disposition_code": call.disposition_code, "notes": call.notes}
    call.disposition_code = disposition_code
    call.notes = notes.strip() if notes else call.notes
    call.wrapped_up_by = actor.extension or actor.user_id
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="call",
        entity_id=call.id,
        before=before,
        after={"disposition_code": call.disposition_code, "notes": call.notes},
    )
    record_event(
        session,
        CallWrappedUp(
            linkedid=linkedid, agent=actor.extension, disposition_code=disposition_code, wrapped_up_at=utcnow()
        ),
    )
    return call


async def record_survey(
    *, session: AsyncSession, linkedid: str, score: int, outside_pbx: bool = False, at: datetime | None = None
) -> CallLog:
    """The caller's post-call satisfaction score, 1 (bad) to 5 (good), on the call log of `linkedid`.

    Over AGI the call is the PBX's: a survey heard before the PBX's events arrive makes the row they then fill.
    Over Twilio Voice (`outside_pbx`, `linkedid` a CallSid) no PBX will ever report the call, so its row is written
    closed, as `survey_only`: a resync must not take it for a call abandoned while the bridge was blind, and the
    reports do not count it as a call offered to a queue."""
    if not 1 <= score <= 5:
        raise ValidationFailed("A survey score is 1 to 5.", field="score")
    call = await session.scalar(select(CallLog).where(CallLog.linkedid == linkedid))
    if call is None:
        values: dict[str, Any] = {"direction": CallDirection.INBOUND.value}
        if outside_pbx:
            when = at or utcnow()
            values.update(offered_at=when, ended_at=when, outcome=SURVEY_ONLY)
        call = await _ensure_row(session, linkedid, values)
    call.survey_score = score
    return call


def _only_a_survey(call: CallLog) -> bool:
    """A row that holds nothing but a survey score: no caller, queue, agent or leg ever reached it from a PBX."""
    return (
        call.survey_score is not None
        and call.answered_at is None
        and not call.caller_number
        and call.queue is None
        and call.agent is None
        and not call.legs
    )


async def last_calls_of(*, session: AsyncSession, customer_id: str, limit: int = 5) -> list[CallLog]:
    query = select(CallLog).where(CallLog.customer_id == customer_id).order_by(CallLog.offered_at.desc()).limit(limit)
    return list(await session.scalars(query))


async def link_customer(*, session: AsyncSession, actor: Actor, linkedid: str, customer_id: str) -> CallLog:
    """Attach a call to the customer the agent just created or found (an unknown caller): only a call the agent
    answered (check_call_access). The change is audited."""
    call = await get_call(session=session, actor=actor, linkedid=linkedid)
    before = call.customer_id
    call.customer_id = customer_id
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="update",
        entity_type="call",
        entity_id=call.id,
        before={"customer_id": before},
        after={"customer_id": customer_id},
    )
    return call
