"""Runs an IVR flow for one caller over a `CallerLine` (FastAGI, local AGI): prompts, menus, CRM steps.

The engine never writes half a thing: its database writes (a callback request, a survey score) each happen in
one transaction after the caller confirmed, and a caller who hangs up before that leaves nothing behind.
Everything the caller did goes on the channel as CRM_* variables before the call reaches a queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.bus import EventBus
from crm_core.calls.callbacks import request_callback
from crm_core.calls.events import IvrVariablesSet
from crm_core.customers.lookup import CallerIdLookup
from crm_core.db import unit_of_work
from crm_core.errors import CrmError
from crm_core.tickets.csat import record_survey_on_tickets
from ivr.flow import Flow, Node, hours_target

log = logging.getLogger(__name__)

MAX_STEPS = 200  # a flow that loops forever (menu -> menu on every timeout) ends here, with a hang-up


class CallerHungUp(Exception):
    """The caller hung up (AGI `HANGUP`, `200 result=-1`, or the connection closed)."""


class CallerLine(Protocol):
    """What the engine needs of the phone line. Every method raises CallerHungUp if the caller is gone."""

    caller_number: str
    uniqueid: str

    async def play(self, prompt: str) -> None: ...
    async def get_digits(self, prompt: str, timeout_s: int, max_digits: int) -> str: ...
    async def say_number(self, number: int) -> None: ...
    async def set_variable(self, name: str, value: str) -> None: ...
    async def get_variable(self, name: str) -> str | None: ...
    async def exec_app(self, application: str, arguments: str) -> None: ...
    async def record(self, seconds: int) -> str | None: ...
    async def hangup(self) -> None: ...


class SpeechRecogniser(Protocol):
    async def recognise(self, audio_path: str, words: list[str]) -> str | None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CrmContext:
    sessions: async_sessionmaker[AsyncSession]
    lookup: CallerIdLookup
    region: str
    speech: SpeechRecogniser | None = None
    clock: Callable[[], datetime] = _utc_now  # business hours are judged by it
    bus: EventBus | None = None  # where what the caller did is told too (for a bridge that reads no VarSet)


@dataclass
class CallerState:
    path: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    customer_id: str | None = None
    vip_tier: str | None = None
    open_ticket: tuple[int, str] | None = None  # number, status
    language: str = "en"
    outcome: str = "running"  # queued | hung_up | voicemail | callback | survey | ended


TICKET_STATUS_PROMPTS = {
    "open": "ticket-status-open",
    "pending": "ticket-status-pending",
    "resolved": "ticket-status-resolved",
    "closed": "ticket-status-closed",
}


class FlowRunner:
    def __init__(self, flow: Flow, crm: CrmContext) -> None:
        self.flow = flow
        self.crm = crm

    async def run(self, line: CallerLine, *, start: str | None = None) -> CallerState:
        state = CallerState()
        name: str | None = start or self.flow.start
        steps = 0
        try:
            while name is not None:
                steps += 1
                if steps > MAX_STEPS:
                    log.warning("flow %s looped for %d steps; hanging up", self.flow.name, steps)
                    await line.hangup()
                    state.outcome = "ended"
                    break
                node = self.flow.node(name)
                state.path.append(name)
                name = await getattr(self, f"_{node.type}")(node, line, state)
        except CallerHungUp:
            state.outcome = "hung_up"
        return state

    # --- helpers ----------------------------------------------------------------------------------------------

    async def _publish(self, line: CallerLine, state: CallerState) -> None:
        """Put what the caller did on the channel, for the screen pop."""
        values = {
            "CRM_PATH": ">".join(state.path),
            "CRM_CHOICES": ",".join(state.choices),
            "CRM_LANGUAGE": state.language,
            **({"CRM_CUSTOMER_ID": state.customer_id} if state.customer_id else {}),
            **({"CRM_VIP": state.vip_tier} if state.vip_tier else {}),
            **state.variables,
        }
        for variable, value in values.items():
            await line.set_variable(variable, value)
        if self.crm.bus is not None and line.uniqueid:
            variables = tuple(sorted(values.items()))
            await self.crm.bus.publish(IvrVariablesSet(uniqueid=line.uniqueid, variables=variables, set_at=_utc_now()))

    async def _ask(self, line: CallerLine, prompt: str, wait_s: int, digits: int = 1) -> str:
        return await line.get_digits(prompt, wait_s, digits)

    # --- node types -------------------------------------------------------------------------------------------

    async def _play(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        await line.play(node.get("prompt"))
        return node.target("next")

    async def _menu(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        options: dict[str, str] = node.get("options")
        retries = int(node.get("retries", 2))
        timeout = int(node.get("timeout", 5))
        for attempt in range(retries + 1):
            digit = await self._ask(line, node.get("prompt"), timeout)
            if not digit and node.get("speech") and self.crm.speech is not None:
                digit = await self._listen(node, line)
            if digit in options:
                state.choices.append(f"{node.get('name', node.name)}={digit}")
                return options[digit]
            if attempt < retries:
                await line.play(node.get("invalid_prompt", "option-is-invalid") if digit else "please-try-again")
        fallback = node.target("invalid") if node.target("invalid") else node.target("no_input")
        if fallback is None:
            await line.play("goodbye")
            await line.hangup()
            state.outcome = "ended"
        return fallback

    async def _listen(self, node: Node, line: CallerLine) -> str:
        """Speech instead of a key: record the answer, recognise it against the menu's words only."""
        speech: dict[str, str] = node.get("speech")
        audio = await line.record(3)
        if not audio or self.crm.speech is None:
            return ""
        try:
            word = await self.crm.speech.recognise(audio, sorted(speech))
        except Exception:  # corrupt audio, a missing model: the menu goes on with keys
            log.exception("speech recognition failed; falling back to DTMF")
            return ""
        finally:
            await asyncio.to_thread(Path(audio).unlink, missing_ok=True)  # a caller's voice is not kept
        return speech.get(word or "", "")

    async def _read_digits(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        digits = await self._ask(line, node.get("prompt"), int(node.get("timeout", 6)), int(node.get("max_digits", 10)))
        state.variables[node.get("variable")] = digits
        return node.target("next")

    async def _hours(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        return hours_target(node, self.crm.clock())

    async def _language(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        options: dict[str, str] = node.get("options")
        digit = await self._ask(line, node.get("prompt"), int(node.get("timeout", 5)))
        if digit in options:
            state.language = options[digit]
            state.choices.append(f"language={digit}")
            await line.set_variable("CHANNEL(language)", state.language)
        return node.target("next")

    async def _set(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        state.variables[node.get("variable")] = str(node.get("value"))
        return node.target("next")

    async def _lookup(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        # the read-only fast path (one index probe each): the caller waits on every millisecond here
        profile = await self.crm.lookup.caller_profile(line.caller_number) if line.caller_number else None
        if profile is None:
            return node.target("unknown")
        state.customer_id = profile.customer_id
        state.vip_tier = profile.vip_tier
        if profile.open_ticket_number is not None:
            state.open_ticket = (profile.open_ticket_number, profile.open_ticket_status or "open")
        if state.vip_tier and node.target("vip"):
            return node.target("vip")
        if state.open_ticket is not None and node.target("open_ticket"):
            return node.target("open_ticket")
        return node.target("known")

    async def _offer_ticket(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        if state.open_ticket is None:
            return node.target("decline")
        number, status = state.open_ticket
        await line.play("your-ticket-number")
        await line.say_number(number)
        await line.play(TICKET_STATUS_PROMPTS.get(status, "ticket-status-open"))
        digit = await self._ask(line, node.get("prompt", "press-1-about-this-ticket"), int(node.get("timeout", 5)))
        if digit == "1":
            state.variables["CRM_TICKET"] = str(number)
            state.choices.append("ticket=1")
            return node.target("accept")
        return node.target("decline")

    async def _ticket_status(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        retries = int(node.get("retries", 2))
        for attempt in range(retries + 1):
            digits = await self._ask(
                line,
                node.get("prompt", "enter-ticket-number"),
                int(node.get("timeout", 6)),
                int(node.get("max_digits", 8)),
            )
            status = await self.crm.lookup.ticket_status(int(digits)) if digits.isdigit() and len(digits) < 10 else None
            if status is not None:
                state.variables["CRM_TICKET"] = digits.lstrip("0") or "0"
                await line.say_number(int(digits))
                await line.play(TICKET_STATUS_PROMPTS.get(status, "ticket-status-open"))
                return node.target("next")
            if attempt < retries:
                await line.play("ticket-not-found")
        return node.target("next")

    async def _queue(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        queue = str(node.get("queue"))
        state.variables["CRM_QUEUE"] = queue
        await self._publish(line, state)
        await line.set_variable("TARGET_QUEUE", queue)
        if node.get("priority") is not None:
            await line.set_variable("QUEUE_PRIO", str(node.get("priority")))
        state.outcome = "queued"
        return None  # the dialplan goes on to Queue(${TARGET_QUEUE})

    async def _callback(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        digit = await self._ask(line, node.get("prompt", "press-1-for-callback"), int(node.get("timeout", 5)))
        if digit != "1":
            return node.target("next")
        try:
            async with unit_of_work(self.crm.sessions) as session:
                await request_callback(
                    session=session,
                    number=line.caller_number,
                    queue=str(node.get("queue")),
                    region=self.crm.region,
                    customer_id=state.customer_id,
                    origin_linkedid=await self._linkedid(line),
                )
        except CrmError as exc:  # a withheld or foreign number we cannot call back
            log.info("callback refused: %s", exc)
            await line.play("callback-not-possible")
            return node.target("next")
        state.variables["CRM_CALLBACK"] = "requested"
        state.outcome = "callback"
        await self._publish(line, state)
        await line.play("callback-confirmed")
        await line.hangup()
        return None

    async def _linkedid(self, line: CallerLine) -> str:
        return await line.get_variable("CHANNEL(linkedid)") or line.uniqueid

    async def _survey(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        retries = int(node.get("retries", 1))
        for attempt in range(retries + 1):
            digit = await self._ask(line, node.get("prompt", "survey-rate-1-to-5"), int(node.get("timeout", 6)))
            if digit in {"1", "2", "3", "4", "5"}:
                linkedid = await self._linkedid(line)
                async with unit_of_work(self.crm.sessions) as session:
                    await record_survey_on_tickets(session=session, linkedid=linkedid, score=int(digit))
                state.choices.append(f"survey={digit}")
                state.outcome = "survey"
                await line.play("thank-you")
                return node.target("next")
            if attempt < retries:
                await line.play("please-try-again")
        return node.target("next")

    async def _voicemail(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        if node.get("prompt"):
            await line.play(node.get("prompt"))
        await self._publish(line, state)
        await line.exec_app("VoiceMail", f"{node.get('mailbox')},u")
        state.outcome = "voicemail"
        await line.hangup()
        return None

    async def _hangup(self, node: Node, line: CallerLine, state: CallerState) -> str | None:
        if node.get("prompt"):
            await line.play(node.get("prompt"))
        await line.hangup()
        state.outcome = "ended"
        return None
