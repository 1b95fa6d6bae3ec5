"""Screen-pop contents: who is calling, built when the call is offered, so the ring itself needs no database work.

CallOffered arrives while the caller waits in the queue (seconds before any agent rings): the pop is built then
and kept per Linkedid. AgentRinging only stamps it with the agent's details and hands it to the notifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.calls.events import AgentRinging, CallDirection, CallOffered, CallStarted
from crm_core.calls.models import CallLog
from crm_core.customers.lookup import CallerIdLookup
from crm_core.customers.models import Customer, Note
from crm_core.sms.models import SmsMessage
from crm_core.tickets.service import open_tickets_of

log = logging.getLogger(__name__)

IVR_LABELS = {
    "CRM_CUSTOMER_ID": "Customer id (IVR)",
    "CRM_CONTACT_ID": "Contact id (IVR)",
    "CRM_PATH": "IVR path",
    "CRM_LANGUAGE": "Language",
    "CRM_CHOICES": "Menu choices",
    "CRM_TICKET": "Ticket asked about",
    "CRM_QUEUE": "Queue chosen",
    "CRM_VIP": "VIP tier",
    "CRM_CALLBACK": "Callback requested",
}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def customer_context(session: AsyncSession, customer_id: str) -> dict[str, Any] | None:
    """Everything an agent wants to see about a caller: profile, open tickets, last calls and SMS, notes."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        return None
    tickets = await open_tickets_of(session=session, customer_id=customer_id, limit=10)
    calls = await session.scalars(
        select(CallLog).where(CallLog.customer_id == customer_id).order_by(CallLog.offered_at.desc()).limit(5)
    )
    sms = await session.scalars(
        select(SmsMessage).where(SmsMessage.customer_id == customer_id).order_by(SmsMessage.created_at.desc()).limit(3)
    )
    notes = await session.scalars(
        select(Note).where(Note.customer_id == customer_id).order_by(Note.created_at.desc()).limit(3)
    )
    return {
        "id": customer.id,
        "name": customer.name,
        "kind": customer.kind,
        "vip_tier": customer.vip_tier,
        "language": customer.language,
        "tags": sorted(tag.name for tag in customer.tags),
        "phones": [p.e164 for p in customer.phones],
        "emails": [e.email for e in customer.emails],
        "open_tickets": [
            {"id": t.id, "number": t.number, "subject": t.subject, "status": t.status, "priority": t.priority}
            for t in tickets
        ],
        "last_calls": [
            {
                "linkedid": c.linkedid,
                "at": _iso(c.offered_at),
                "direction": c.direction,
                "outcome": c.outcome or "in progress",
                "agent": c.agent,
                "disposition": c.disposition_code,
            }
            for c in calls
        ],
        "last_sms": [{"at": _iso(m.created_at), "direction": m.direction, "body": m.body} for m in sms],
        "notes": [{"at": _iso(n.created_at), "body": n.body} for n in notes],
    }


class PopBuilder:
    """Keeps the pop of each live call, built on CallStarted or CallOffered (or late, on the ring, if both were
    missed), from the fast read path: no ORM and no connection pool shared with the call-log writer."""

    def __init__(self, lookup: CallerIdLookup, *, keep: int = 5000) -> None:
        self._lookup = lookup
        self._pops: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._building: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._keep = keep
        # closed with the web app, while the PBX may still start calls until telephony stops: from then on a pop
        # shows the number only, without asking the (closed) lookup
        self._closed = False

    def started(self, event: CallStarted) -> None:
        """The caller is known and still in the IVR: prepare the pop now, the ring will find it ready."""
        if self._closed or event.linkedid in self._pops or event.linkedid in self._building:
            return
        task = asyncio.create_task(self._build(event.linkedid, event.number, event.name, None, ()))
        self._building[event.linkedid] = task

    def offered(self, event: CallOffered) -> None:
        pop = self._pops.get(event.linkedid)
        if pop is not None:
            # what the IVR learned and the queue are known by now
            pop["queue"] = event.queue
            pop["caller_name"] = pop["caller_name"] or event.caller_name
            pop["ivr"] = [{"name": k, "label": IVR_LABELS.get(k, k), "value": v} for k, v in event.crm_vars]
            return
        if self._closed or event.linkedid in self._building:
            return
        number = event.callee_number if event.direction is CallDirection.OUTBOUND else event.caller_number
        task = asyncio.create_task(self._build(event.linkedid, number, event.caller_name, event.queue, event.crm_vars))
        self._building[event.linkedid] = task

    async def _build(
        self, linkedid: str, number: str, name: str, queue: str | None, crm_vars: tuple[tuple[str, str], ...]
    ) -> dict[str, Any]:
        try:
            customer_id = await self._lookup.customer_id(number) if number and not self._closed else None
            # the fast read path: a pop is built for every call, beside the bridge (bench/pop_latency.py)
            customer = await self._lookup.customer_card(customer_id) if customer_id is not None else None
        except Exception:
            log.exception("could not build the pop of call %s; showing the number only", linkedid)
            customer = None
        pop = {
            "linkedid": linkedid,
            "number": number,
            "caller_name": name,
            "queue": queue,
            "customer": customer,
            "ivr": [{"name": k, "label": IVR_LABELS.get(k, k), "value": v} for k, v in crm_vars],
        }
        self._pops[linkedid] = pop
        self._building.pop(linkedid, None)
        while len(self._pops) > self._keep:
            self._pops.popitem(last=False)
        return pop

    async def prepare(self, linkedid: str, number: str, *, name: str = "", queue: str | None = None) -> None:
        """Build the pop now, in the caller's turn (no task in between), when the call's start and ring arrive
        together (a generic CTI newCall): its ring then finds the pop ready, as an Asterisk call's ring does."""
        if linkedid in self._pops:
            return
        task = self._building.get(linkedid)
        if task is not None:
            await task
            return
        await self._build(linkedid, number, name, queue, ())

    def ready(self, event: AgentRinging) -> dict[str, Any] | None:
        """The pop for this ring if it is built already (the usual case): no I/O, no waiting."""
        pop = self._pops.get(event.linkedid)
        return self._for_agent(pop, event) if pop is not None else None

    async def for_ringing(self, event: AgentRinging) -> dict[str, Any]:
        """The pop for this ring: cached, or awaited from its build, or built now."""
        pop = self._pops.get(event.linkedid)
        if pop is None:
            task = self._building.get(event.linkedid)
            if task is not None:
                pop = await task
            else:
                pop = await self._build(
                    event.linkedid, event.caller_number, event.caller_name, event.queue, event.crm_vars
                )
        return self._for_agent(pop, event)

    @staticmethod
    def _for_agent(pop: dict[str, Any], event: AgentRinging) -> dict[str, Any]:
        known_vars = {item["name"] for item in pop["ivr"]}
        extra = [
            {"name": k, "label": IVR_LABELS.get(k, k), "value": v} for k, v in event.crm_vars if k not in known_vars
        ]
        return {
            **pop,
            "ivr": pop["ivr"] + extra,
            "agent": event.agent,
            "queue": event.queue or pop["queue"],
            "waited_seconds": round(event.waited_seconds, 1),
            "rang_at": event.rang_at.isoformat(),
            "direction": event.direction.value,
        }

    def cached(self, linkedid: str) -> dict[str, Any] | None:
        return self._pops.get(linkedid)

    async def current(self, linkedid: str) -> dict[str, Any] | None:
        """The pop of a live call, waiting for its build if one is under way (a browser reconnecting)."""
        task = self._building.get(linkedid)
        if task is not None:
            try:
                return await task
            except Exception:
                return None
        return self._pops.get(linkedid)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._building.values()):
            task.cancel()
        for task in list(self._building.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):  # shutting down: an unfinished pop is moot
                await task
        self._building.clear()

    def forget(self, linkedid: str) -> None:
        self._pops.pop(linkedid, None)

    async def refresh(self, linkedid: str) -> None:
        """Rebuild after the agent created or linked the caller's customer record."""
        pop = self._pops.pop(linkedid, None)
        if pop is not None:
            await self._build(linkedid, pop["number"], pop["caller_name"], pop["queue"], ())
