"""The same IVR flows for Twilio Voice: each webhook request renders TwiML up to the next input or the end.

Twilio calls our webhook, we answer with TwiML (twilio's VoiceResponse); a <Gather> sends the caller's keys back
to the webhook with the node and attempt in the query string, so no state is kept between requests. The CRM steps
are those of the AGI engine: caller lookup by `From`, VIP routing, open ticket offer, ticket status, callback,
survey (stored on the call log under the CallSid, Twilio's call id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from twilio.twiml.voice_response import Gather, VoiceResponse

from crm_core.calls.callbacks import request_callback
from crm_core.db import unit_of_work
from crm_core.errors import CrmError
from crm_core.tickets.csat import record_survey_on_tickets
from ivr.engine import CrmContext
from ivr.flow import Flow, Node, hours_target

INPUT_TYPES = {"menu", "language", "read_digits", "offer_ticket", "ticket_status", "callback", "survey"}
STATUS_WORDS = {"open": "open", "pending": "waiting for you", "resolved": "resolved", "closed": "closed"}


def spoken(node: Node, key: str = "prompt") -> str:
    """What <Say> reads: the node's `say` text, or its prompt's name made readable."""
    if node.get("say"):
        return str(node.get("say"))
    prompt = node.get(key)
    return str(prompt).rsplit("/", 1)[-1].replace("-", " ").replace("_", " ") if prompt else ""


@dataclass
class WebhookState:
    node: str
    attempt: int = 0
    path: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    language: str = "en"


class TwimlFlow:
    def __init__(self, flow: Flow, crm: CrmContext, action_url: str) -> None:
        self.flow = flow
        self.crm = crm
        self.action_url = action_url  # the webhook's own URL, e.g. https://crm.example.org/voice/sample

    def _url(self, state: WebhookState, node: str, attempt: int = 0) -> str:
        query = {
            "node": node,
            "try": str(attempt),
            "path": ">".join(state.path),
            "choices": ",".join(state.choices),
            "lang": state.language,
        }
        return f"{self.action_url}?{urlencode(query)}"

    async def respond(self, query: dict[str, str], form: dict[str, str]) -> str:
        """TwiML for one webhook request (`query`: our state; `form`: Twilio's POST parameters)."""
        response = VoiceResponse()
        node_name = query.get("node") or self.flow.start
        if node_name not in self.flow.nodes:
            response.say("Sorry, something went wrong.")
            response.hangup()
            return str(response)
        state = WebhookState(
            node=node_name,
            attempt=int(query.get("try", "0") or 0),
            path=[p for p in query.get("path", "").split(">") if p],
            choices=[c for c in query.get("choices", "").split(",") if c],
            language=query.get("lang", "en") or "en",
        )
        caller = form.get("From", "")
        call_sid = form.get("CallSid", "")
        name: str | None = node_name
        if "node" in query and self.flow.node(node_name).type in INPUT_TYPES:
            digits = form.get("Digits", "")
            name = await self._answer(self.flow.node(node_name), digits, state, response, caller, call_sid)
        steps = 0
        while name is not None and steps < 50:
            steps += 1
            node = self.flow.node(name)
            if node.type in INPUT_TYPES:
                state.path.append(name)
                await self._gather(node, state, response, caller)
                return str(response)
            state.path.append(name)
            name = await self._step(node, state, response, caller)
        return str(response)

    # --- nodes without input ----------------------------------------------------------------------------------

    async def _step(self, node: Node, state: WebhookState, response: VoiceResponse, caller: str) -> str | None:
        if node.type == "play":
            response.say(spoken(node), language=state.language)
            return node.target("next")
        if node.type == "set":
            return node.target("next")
        if node.type == "hours":
            return hours_target(node, self.crm.clock())
        if node.type == "lookup":
            profile = await self.crm.lookup.caller_profile(caller) if caller else None
            if profile is None:
                return node.target("unknown")
            if profile.vip_tier and node.target("vip"):
                return node.target("vip")
            if profile.open_ticket_number is not None and node.target("open_ticket"):
                return node.target("open_ticket")
            return node.target("known")
        if node.type == "queue":
            response.enqueue(str(node.get("queue")))
            return None
        if node.type == "voicemail":
            if node.get("prompt"):
                response.say(spoken(node), language=state.language)
            response.record(max_length=120, play_beep=True)
            response.hangup()
            return None
        if node.type == "hangup":
            if node.get("prompt") or node.get("say"):
                response.say(spoken(node), language=state.language)
            response.hangup()
            return None
        raise ValueError(f"node type {node.type} needs input")

    # --- nodes with input -------------------------------------------------------------------------------------

    async def _gather(self, node: Node, state: WebhookState, response: VoiceResponse, caller: str) -> None:
        digits = {"read_digits": int(node.get("max_digits", 10)), "ticket_status": int(node.get("max_digits", 8))}
        gather = Gather(
            input="dtmf",
            num_digits=digits.get(node.type, 1),
            timeout=int(node.get("timeout", 5)),
            action=self._url(state, node.name, state.attempt),
            method="POST",
        )
        text = spoken(node)
        if node.type == "offer_ticket":
            profile = await self.crm.lookup.caller_profile(caller) if caller else None
            if profile is not None and profile.open_ticket_number is not None:
                status = profile.open_ticket_status or "open"
                text = (
                    f"Your ticket {profile.open_ticket_number} is {STATUS_WORDS.get(status, status)}. "
                    "Press 1 to talk about it."
                )
        elif node.type == "ticket_status" and not node.get("say"):
            text = "Please enter your ticket number, then wait."
        elif node.type == "callback" and not node.get("say"):
            text = "Press 1 to be called back at the number you are calling from."
        elif node.type == "survey" and not node.get("say"):
            text = "How satisfied were you, from 1, not at all, to 5, very? Press a key."
        gather.say(text, language=state.language)
        response.append(gather)
        # no key pressed: the same node again, counted as an attempt without input
        response.redirect(self._url(state, node.name, state.attempt + 1), method="POST")

    async def _answer(
        self, node: Node, digits: str, state: WebhookState, response: VoiceResponse, caller: str, call_sid: str
    ) -> str | None:
        retries = int(node.get("retries", 2))
        if node.type == "menu":
            options: dict[str, str] = node.get("options")
            if digits in options:
                state.choices.append(f"{node.get('name', node.name)}={digits}")
                return options[digits]
            if state.attempt < retries:
                response.say("That is not one of the choices." if digits else "Please choose.", language=state.language)
                state.attempt += 1 if digits else 0
                return node.name
            return node.target("invalid") or node.target("no_input")
        state.attempt = 0
        if node.type == "language":
            state.language = node.get("options").get(digits, state.language)
            return node.target("next")
        if node.type == "read_digits":
            return node.target("next")
        if node.type == "offer_ticket":
            return node.target("accept" if digits == "1" else "decline")
        if node.type == "ticket_status":
            status = await self.crm.lookup.ticket_status(int(digits)) if digits.isdigit() and len(digits) < 10 else None
            if status is None:
                response.say("There is no ticket with that number.", language=state.language)
            else:
                words = STATUS_WORDS.get(status, status)
                response.say(f"Ticket {int(digits)} is {words}.", language=state.language)
            return node.target("next")
        if node.type == "callback":
            if digits != "1":
                return node.target("next")
            try:
                async with unit_of_work(self.crm.sessions) as session:
                    await request_callback(
                        session=session,
                        number=caller,
                        queue=str(node.get("queue")),
                        region=self.crm.region,
                        customer_id=await self.crm.lookup.customer_id(caller),
                        origin_linkedid=call_sid or None,
                    )
            except CrmError:
                response.say("We cannot call this number back.", language=state.language)
                return node.target("next")
            response.say("Thank you. We will call you back.", language=state.language)
            response.hangup()
            return None
        if node.type == "survey":
            if digits in {"1", "2", "3", "4", "5"} and call_sid:
                async with unit_of_work(self.crm.sessions) as session:
                    # a Twilio call: no PBX will report it, so its log is closed with the survey
                    await record_survey_on_tickets(
                        session=session, linkedid=call_sid, score=int(digits), outside_pbx=True
                    )
                response.say("Thank you.", language=state.language)
            return node.target("next")
        return node.target("next")
