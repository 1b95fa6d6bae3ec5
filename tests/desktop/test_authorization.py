"""Who may do what: every HTTP route and every Socket.IO event, tried by every role, against one table."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from sqlalchemy import select, update

from agent_desktop.sockets import AGENT_EVENTS, SUPERVISOR_EVENTS
from crm_core.audit.models import AuditEntry
from crm_core.calls.models import CallLog
from crm_core.calls.wrapups import WrapUpDraft
from crm_core.customers.models import Customer, Note
from crm_core.customers.schemas import CustomerIn
from crm_core.customers.service import create_customer
from crm_core.recordings.models import Recording, Transcript
from crm_core.tickets.models import Ticket, TicketLink
from crm_core.users.service import SYSTEM
from tests.desktop.live import PASSWORD, LiveCenter, wait_event

ROLES = ("anonymous", "agent", "supervisor", "marketer", "admin")
USER_OF = {"agent": "agent1001", "supervisor": "boss", "marketer": "mkt", "admin": "root"}
EVERYONE = set(ROLES)
SIGNED_IN = EVERYONE - {"anonymous"}
STAFF = {"agent", "supervisor", "admin"}
SUPERVISION = {"supervisor", "admin"}
ADMIN_ONLY = {"admin"}
MARKETING = {"marketer", "admin"}

API_V1_ROUTES = (
    ("GET", "/customers"),
    ("POST", "/customers"),
    ("GET", "/customers/<customer_id>"),
    ("PUT", "/customers/<customer_id>"),
    ("POST", "/customers/<customer_id>/merge"),
    ("GET", "/calls"),
    ("GET", "/calls/<linkedid>"),
    ("GET", "/calls/<linkedid>/recording"),
    ("GET", "/tickets"),
    ("POST", "/tickets"),
    ("GET", "/tickets/<ticket_id>"),
    ("PATCH", "/tickets/<ticket_id>"),
    ("GET", "/sms"),
    ("POST", "/sms"),
    ("GET", "/users"),
    ("GET", "/users/<user_id>"),
    ("GET", "/webhooks/subscriptions"),
    ("POST", "/webhooks/subscriptions"),
    ("GET", "/webhooks/subscriptions/<subscription_id>"),
    ("PATCH", "/webhooks/subscriptions/<subscription_id>"),
    ("DELETE", "/webhooks/subscriptions/<subscription_id>"),
    ("POST", "/webhooks/subscriptions/<subscription_id>/rotate-secret"),
    ("GET", "/webhooks/subscriptions/<subscription_id>/deliveries"),
    ("POST", "/webhooks/deliveries/<delivery_id>/replay"),
)
# (method, rule) -> roles allowed. A route missing here fails the test: new routes must be decided on.
HTTP_TABLE: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/"): EVERYONE,  # a redirect to where each role belongs
    ("GET", "/login"): EVERYONE,
    ("POST", "/login"): EVERYONE,
    ("POST", "/logout"): EVERYONE,
    ("GET", "/static/<path:filename>"): EVERYONE,
    ("GET", "/password"): SIGNED_IN,
    ("POST", "/password"): SIGNED_IN,
    ("GET", "/account"): SIGNED_IN,
    ("GET", "/desktop"): STAFF,
    ("GET", "/customers/<customer_id>"): STAFF,
    ("POST", "/calls/<linkedid>/wrap-up-draft"): STAFF,
    ("GET", "/customers"): STAFF,
    ("GET", "/customers/companies"): STAFF,
    ("POST", "/customers/<customer_id>/edit"): STAFF,
    ("GET", "/customers/<customer_id>/merge-candidates"): SUPERVISION,
    ("GET", "/api/customers"): STAFF,
    ("POST", "/api/customers/<customer_id>/claim"): STAFF,
    ("POST", "/api/customers/<customer_id>/owner"): SUPERVISION,
    ("GET", "/missed-calls"): STAFF,
    ("POST", "/api/missed-calls/handled"): STAFF,
    ("POST", "/missed-calls/handled"): STAFF,
    **{
        (method, f"/admin{path}"): ADMIN_ONLY
        for method, path in (
            ("GET", ""),
            ("GET", "/dispositions"),
            ("POST", "/dispositions"),
            ("GET", "/pause-reasons"),
            ("POST", "/pause-reasons"),
            ("GET", "/audit"),
            ("GET", "/audit.csv"),
            ("GET", "/import"),
            ("POST", "/import"),
            ("GET", "/imports/<job_id>"),
            ("GET", "/imports/<job_id>/rejected.csv"),
            ("GET", "/export/customers.csv"),
            ("GET", "/users"),
            ("POST", "/users"),
            ("POST", "/users/<user_id>"),
            ("POST", "/users/<user_id>/active"),
            ("POST", "/users/<user_id>/password"),
            ("POST", "/users/<user_id>/unlock"),
            ("GET", "/queues"),
            ("GET", "/pbx"),
            ("POST", "/pbx/mappings"),
            ("POST", "/pbx/mappings/<mapping_id>/delete"),
        )
    },
    ("POST", "/api/customers"): STAFF,
    ("POST", "/api/customers/<customer_id>"): STAFF,
    ("POST", "/api/customers/<customer_id>/notes"): STAFF,
    ("POST", "/api/customers/<customer_id>/merge"): SUPERVISION,
    ("POST", "/api/calls/<linkedid>/ticket"): STAFF,
    ("GET", "/api/calls/<linkedid>/recording"): STAFF,
    ("GET", "/wallboard"): SUPERVISION,
    ("GET", "/api/wallboard/intervals"): SUPERVISION,
    ("GET", "/api/wallboard/today"): SUPERVISION,
    ("GET", "/reports"): SUPERVISION,
    ("GET", "/reports.csv"): SUPERVISION,
    ("POST", "/api/admin/users/<user_id>/unlock"): {"admin"},
    ("GET", "/tickets"): STAFF,
    ("POST", "/tickets"): STAFF,
    ("GET", "/tickets/<ticket_id>"): STAFF,
    ("POST", "/tickets/<ticket_id>"): STAFF,
    ("GET", "/tickets/<ticket_id>/clocks"): STAFF,
    ("POST", "/tickets/<ticket_id>/messages"): STAFF,
    ("POST", "/tickets/<ticket_id>/watchers"): STAFF,
    ("POST", "/tickets/<ticket_id>/tags"): STAFF,
    ("POST", "/tickets/<ticket_id>/merge"): STAFF,  # an agent merges only tickets of theirs or nobody's
    ("GET", "/tickets/at-risk"): SUPERVISION,
    ("GET", "/reports/tickets"): SUPERVISION,
    ("GET", "/reports/tickets.csv"): SUPERVISION,
    ("GET", "/tickets/sla"): SUPERVISION,
    ("POST", "/tickets/sla/policies"): SUPERVISION,
    ("POST", "/tickets/sla/policies/<policy_id>"): SUPERVISION,
    ("POST", "/tickets/sla/calendars"): SUPERVISION,
    ("POST", "/tickets/sla/calendars/<calendar_id>/holidays"): SUPERVISION,
    ("GET", "/transcripts"): STAFF,
    ("GET", "/calls/<linkedid>/transcript"): STAFF,
    ("GET", "/admin/recordings"): ADMIN_ONLY,
    ("POST", "/admin/recordings/<job_id>/retry"): ADMIN_ONLY,
    ("POST", "/calls/<linkedid>/transcript"): SUPERVISION,
    ("GET", "/keywords"): SUPERVISION,
    ("POST", "/keywords"): SUPERVISION,
    ("POST", "/keywords/<keyword_id>/delete"): SUPERVISION,
    ("GET", "/wallboard/flagged"): SUPERVISION,
    ("GET", "/admin/recordings/rules"): ADMIN_ONLY,
    ("POST", "/admin/recordings/retention"): ADMIN_ONLY,
    ("POST", "/admin/recordings/transcription"): ADMIN_ONLY,
    ("GET", "/legal-holds"): SUPERVISION,
    ("POST", "/legal-holds"): SUPERVISION,
    ("POST", "/legal-holds/<hold_id>/release"): SUPERVISION,
    ("POST", "/calls/<linkedid>/transcription"): STAFF,
    # Twilio's webhooks: no session opens them, only X-Twilio-Signature (tests/sms test the signed ones)
    ("POST", "/sms/inbound"): set(),
    ("POST", "/sms/status"): set(),
    # a generic CTI gateway's pushes: no session opens them, only the PBX's secret token (tests/cti/test_generic_cti)
    ("POST", "/api/cti/<pbx_name>/<token>"): set(),
    ("GET", "/sms"): STAFF,
    ("GET", "/sms/list"): STAFF,
    ("GET", "/sms/workspace"): STAFF,
    ("GET", "/sms/conversations/<conversation_id>"): STAFF,
    ("GET", "/sms/customers/<customer_id>"): STAFF,
    ("GET", "/sms/conversations/<conversation_id>/thread"): STAFF,
    ("POST", "/sms/conversations/<conversation_id>/reply"): STAFF,
    ("POST", "/sms/conversations/<conversation_id>/assign"): STAFF,
    ("POST", "/sms/conversations/<conversation_id>/close"): STAFF,
    ("POST", "/api/sms/campaigns"): {"marketer", "admin"},
    ("POST", "/api/sms/campaigns/<campaign_id>/<action>"): {"marketer", "admin"},
    ("GET", "/api/sms/campaigns/<campaign_id>"): {"marketer", "supervisor", "admin"},
    # the knowledge base: agents read (published), supervisors and admins write
    ("GET", "/kb"): STAFF,
    ("GET", "/kb/new"): SUPERVISION,
    ("POST", "/kb"): SUPERVISION,
    ("GET", "/kb/<solution_id>"): STAFF,
    ("GET", "/kb/<solution_id>/edit"): SUPERVISION,
    ("POST", "/kb/<solution_id>"): SUPERVISION,
    ("GET", "/tickets/<ticket_id>/kb"): STAFF,
    ("POST", "/tickets/<ticket_id>/kb/<solution_id>/link"): STAFF,
    ("POST", "/tickets/<ticket_id>/kb/<solution_id>/send"): STAFF,
    ("GET", "/tickets/<ticket_id>/csat"): STAFF,
    # the public web form: no sign-in (a signed time token, a honeypot and a per-address limit guard it)
    ("GET", "/intake"): EVERYONE,
    ("POST", "/intake"): EVERYONE,
    ("POST", "/sms/conversations/<conversation_id>/ticket"): STAFF,
    # the marketer's campaign screens
    ("GET", "/campaigns"): MARKETING,
    ("GET", "/campaigns/new"): MARKETING,
    ("POST", "/campaigns"): MARKETING,
    ("POST", "/campaigns/preview"): MARKETING,
    ("GET", "/campaigns/<campaign_id>"): MARKETING,
    ("GET", "/campaigns/<campaign_id>/progress"): MARKETING,
    ("GET", "/campaigns/<campaign_id>/preview"): MARKETING,
    ("POST", "/campaigns/<campaign_id>/<action>"): MARKETING,
    # SMS senders and automations
    ("GET", "/admin/sms/senders"): ADMIN_ONLY,
    ("POST", "/admin/sms/senders"): ADMIN_ONLY,
    ("GET", "/admin/sms/automations"): ADMIN_ONLY,
    ("POST", "/admin/sms/automations/<name>"): ADMIN_ONLY,
    ("GET", "/admin/webhooks"): ADMIN_ONLY,
    ("POST", "/admin/webhooks"): ADMIN_ONLY,
    ("GET", "/admin/webhooks/deliveries"): ADMIN_ONLY,
    ("POST", "/admin/webhooks/<subscription_id>"): ADMIN_ONLY,
    ("POST", "/admin/webhooks/<subscription_id>/secret"): ADMIN_ONLY,
    ("POST", "/admin/webhooks/<subscription_id>/delete"): ADMIN_ONLY,
    ("POST", "/admin/webhooks/deliveries/<delivery_id>/replay"): ADMIN_ONLY,
    # the integration API's description is public (it holds no data); its token screen is the admins'
    ("GET", "/api/openapi.json"): EVERYONE,
    ("GET", "/api/docs"): EVERYONE,
    ("GET", "/admin/tokens"): ADMIN_ONLY,
    ("POST", "/admin/tokens"): ADMIN_ONLY,
    ("POST", "/admin/tokens/<token_id>/revoke"): ADMIN_ONLY,
    # /api/v1 answers API tokens only: no session role reaches it (401), so a forged cross-site request carrying a
    # session cookie has nothing to ride on. Which token scope opens which route: tests/api/test_token_routes.py.
    **{(method, f"/api/v1{path}"): set() for method, path in API_V1_ROUTES},
}
# (namespace, event) -> roles allowed; "connect" is the handshake itself. Admin "root" has no extension, so no
# agent device to work from: it may supervise but not take calls.
SOCKET_TABLE: dict[tuple[str, str], set[str]] = {
    ("/agent", "connect"): {"agent", "supervisor"},
    **{("/agent", e): {"agent", "supervisor"} for e in AGENT_EVENTS},
    ("/supervisor", "connect"): SUPERVISION,
    **{("/supervisor", e): SUPERVISION for e in SUPERVISOR_EVENTS},
}


async def signed_in(center: LiveCenter, role: str) -> tuple[aiohttp.ClientSession, str]:
    return await signed_in_as(center, USER_OF.get(role))


async def signed_in_as(center: LiveCenter, username: str | None) -> tuple[aiohttp.ClientSession, str]:
    """An HTTP client signed in as `username` (None: signed out) and its CSRF token, as a browser gets them."""
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(f"{center.base_url}/login") as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert token is not None
    if username is not None:
        async with http.post(
            f"{center.base_url}/login",
            allow_redirects=False,
            data={"csrf_token": token.group(1), "username": username, "password": PASSWORD},
        ) as r:
            assert r.status == 302
        async with http.get(f"{center.base_url}/account") as page:
            text = await page.text()
            meta = re.search(r'name="csrf-token" content="([^"]+)"', text)
            if meta:
                return http, meta.group(1)
    return http, token.group(1)


def concrete(rule: str, center: LiveCenter) -> str:
    return (
        rule.replace("<path:filename>", "app.css")
        .replace("<customer_id>", center.customers["Bob Example"])
        .replace("<linkedid>", "1795462442.0")
        .replace("<job_id>", "0" * 32)
        .replace("<ticket_id>", "0" * 32)
        .replace("<policy_id>", "0" * 32)
        .replace("<calendar_id>", "0" * 32)
        .replace("<keyword_id>", "0" * 32)
        .replace("<hold_id>", "0" * 32)
        .replace("<conversation_id>", "0" * 32)
        .replace("<campaign_id>", "0" * 32)
        .replace("<action>", "start")
        .replace("<solution_id>", "0" * 32)
        .replace("<name>", "missed_call")
        .replace("<mapping_id>", "0" * 32)
        .replace("<pbx_name>", "tapi")
        .replace("<token>", "not-the-token-of-any-pbx-at-all")
        .replace("<subscription_id>", "0" * 32)
        .replace("<delivery_id>", "0" * 32)
        .replace("<token_id>", "0" * 32)
    )


async def http_outcome(http: aiohttp.ClientSession, token: str, method: str, url: str) -> str:
    kwargs: dict[str, Any] = {"allow_redirects": False, "headers": {"X-CSRF-Token": token}}
    if method == "POST":
        if url.endswith(("/login", "/logout", "/password")):
            kwargs["data"] = {"csrf_token": token}
        else:
            kwargs["json"] = {}
    async with http.request(method, url, **kwargs) as response:
        await response.read()  # the whole answer, as a browser would
        if url.endswith("/login") and response.status == 401:
            return "allowed"  # the form was used; the (empty) credentials were wrong
        if response.status in (401, 403):
            return "refused"
        if (
            response.status in (301, 302, 303)
            and "/login" in response.headers.get("Location", "")
            and not url.endswith(("/login", "/logout", "/"))
        ):
            return "refused"
        assert response.status < 500, f"{method} {url}: {response.status} {await response.text()}"
        return "allowed"


async def test_every_route_and_event_for_every_role(center: LiveCenter) -> None:
    app_rules = {
        (method, rule.rule)
        for rule in center_app(center).url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert app_rules == set(HTTP_TABLE), f"routes not in the table: {app_rules ^ set(HTTP_TABLE)}"
    got: dict[tuple[str, str, str], str] = {}
    want: dict[tuple[str, str, str], str] = {}
    for role in ROLES:
        http, token = await signed_in(center, role)
        try:
            # signing out last: every other request of this role is made while signed in
            for (method, rule), allowed in sorted(HTTP_TABLE.items(), key=lambda item: item[0][1] == "/logout"):
                got[(method, rule, role)] = await http_outcome(
                    http, token, method, f"{center.base_url}{concrete(rule, center)}"
                )
                want[(method, rule, role)] = "allowed" if role in allowed else "refused"
        finally:
            await http.close()
        cookie = await center.cookie(USER_OF[role]) if role != "anonymous" else ""
        for namespace in ("/agent", "/supervisor"):
            client = socketio.AsyncClient(reconnection=False)
            try:
                await client.connect(
                    center.base_url,
                    headers={"Cookie": cookie} if role != "anonymous" else {},
                    namespaces=[namespace],
                    transports=["websocket"],
                    wait_timeout=5,
                )
                connected = True
            except socketio.exceptions.ConnectionError:
                connected = False
            got[(namespace, "connect", role)] = "allowed" if connected else "refused"
            want[(namespace, "connect", role)] = (
                "allowed" if role in SOCKET_TABLE[(namespace, "connect")] else "refused"
            )
            for (ns, event), allowed in SOCKET_TABLE.items():
                if ns != namespace or event == "connect":
                    continue
                want[(ns, event, role)] = "allowed" if role in allowed else "refused"
                if not connected:
                    got[(ns, event, role)] = "refused"
                    continue
                # empty data: an allowed caller gets past the role check and is told what is missing
                ack = await client.call(event, {}, namespace=ns, timeout=5)
                got[(ns, event, role)] = "refused" if ack.get("code") == "permission_denied" else "allowed"
            if connected:
                await client.disconnect()
    mismatches = {key: (got[key], want[key]) for key in want if got.get(key) != want[key]}
    assert not mismatches, mismatches


def center_app(center: LiveCenter) -> Any:
    from quart import Quart

    from agent_desktop.app import create_app

    app: Quart = create_app(center.runtime)
    return app


# --- the second dimension: whose call, customer or recording it is ---------------------------------------------
#
# One call played by the demo PBX through its life: it rings agent 1002 (who never answers) and agent 1001 (who
# answers); agent 2001 is in another queue and has no leg. While it is up, the live call controls are tried by
# every party; agent 1001 hangs up last. The call log the bridge writes then (a leg answered by 1001, a leg only
# rung at 1002, the demo PBX's recording in the recordings folder) is what the HTTP routes and the wrap-up act on.

PARTIES: dict[str, str | None] = {
    "signed_out": None,
    "marketer": "mkt",
    "no_leg": "agent2001",
    "rang": "agent1002",
    "admin": "root",
    "supervisor": "boss",
    "answered": "agent1001",  # last: its hang-up ends the live call
}
CALL_OWNERS = {"answered", "supervisor", "admin"}
STAFF_PARTIES = {"answered", "rang", "no_leg", "supervisor", "admin"}
# The rule for customers (decided, not an accident): staff-wide. Any agent may open and edit any customer and add a
# note: a caller reaches whichever agent is free, and the record is needed before the call is anyone's. crm_core has
# no ownership rule for reading or editing customers (owner_id decides only who may re-assign the owner); merging is
# for supervisors. A *call* is the agents' who answered it: linking it to a customer is a call action.
OWNERSHIP_HTTP_TABLE: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/calls/<linkedid>/recording"): CALL_OWNERS,
    ("POST", "/api/calls/<linkedid>/ticket"): CALL_OWNERS,
    ("POST", "/api/customers"): CALL_OWNERS,  # with the call's linkedid: the new customer is linked to the call
    ("GET", "/customers/<customer_id>"): STAFF_PARTIES,
    ("POST", "/api/customers/<customer_id>"): STAFF_PARTIES,
    ("POST", "/api/customers/<customer_id>/notes"): STAFF_PARTIES,
    ("POST", "/api/customers/<customer_id>/merge"): {"supervisor", "admin"},
    ("GET", "/api/customers"): STAFF_PARTIES,  # the search
    ("POST", "/api/customers/<customer_id>/claim"): STAFF_PARTIES,  # from the pool (released before each row)
    ("POST", "/api/customers/<customer_id>/owner"): {"supervisor", "admin"},
    ("POST", "/calls/<linkedid>/wrap-up-draft"): CALL_OWNERS,  # what the wrap-up form keeps as the agent types
    ("POST", "/customers/<customer_id>/edit"): STAFF_PARTIES,  # the 360 page's labelled form
    ("GET", "/customers/<customer_id>/merge-candidates"): {"supervisor", "admin"},
    ("GET", "/calls/<linkedid>/transcript"): CALL_OWNERS,  # reading it is audited, as hearing the recording is
    ("POST", "/calls/<linkedid>/transcript"): {"supervisor", "admin"},  # a correction (the original kept)
    ("GET", "/sms/customers/<customer_id>"): STAFF_PARTIES,  # the 360 page's SMS section (customers are staff-wide)
    # the caller declines transcription (last: switching it off deletes the call's transcript)
    ("POST", "/calls/<linkedid>/transcription"): CALL_OWNERS,
    # /api/v1 is for tokens only: no party's session opens it, its own call or customer included. A token acts at
    # supervisor level (every call, every customer) within its scopes: tests/api/test_token_routes.py.
    **{
        (method, f"/api/v1{path}"): set()
        for method, path in API_V1_ROUTES
        if "<linkedid>" in path or "<customer_id>" in path
    },
}
# Live: the PBX's snapshot decides (the agent talking on the call); the supervisor passes the rule and the PBX then
# answers for its own extension (9001 has no channel on the call: channel_gone; hold: not_supported). Admin "root"
# has no extension, so /agent refuses it at the handshake, as it does the marketer and the signed-out browser.
ON_THE_AGENT_DESK = {"answered", "supervisor"}
OWNERSHIP_SOCKET_TABLE: dict[tuple[str, str], set[str]] = {
    ("/agent", "hold"): ON_THE_AGENT_DESK,
    ("/agent", "resume"): ON_THE_AGENT_DESK,
    ("/agent", "transfer"): ON_THE_AGENT_DESK,
    ("/agent", "hangup"): ON_THE_AGENT_DESK,  # last of the live events
    ("/agent", "wrap_up"): ON_THE_AGENT_DESK,  # the ended call, from its call log
}
CALL_ACTIONS = {"Hangup", "BlindTransfer", "Atxfer", "Redirect"}


def acts_on_a_record(rule: str) -> bool:
    return "<linkedid>" in rule or "<customer_id>" in rule or rule == "/api/customers"


def handler_takes_a_linkedid(namespace: str, event: str) -> bool:
    from agent_desktop.sockets import Sockets

    prefix = "agent_" if namespace == "/agent" else "sup_"
    return '"linkedid"' in inspect.getsource(getattr(Sockets, prefix + event))


async def ownership_state(center: LiveCenter, linkedid: str) -> dict[str, Any]:
    """Everything a refused request must leave as it was (audit entries of sign-ins aside)."""
    async with center.runtime.sessions() as db:
        call = await db.scalar(select(CallLog).where(CallLog.linkedid == linkedid))
        assert call is not None
        customers = (await db.execute(select(Customer.id, Customer.name, Customer.city, Customer.merged_into_id))).all()
        return {
            "wrap_up": (call.disposition_code, call.notes, call.wrapped_up_by),
            "call_customer": call.customer_id,
            "tickets": sorted(await db.scalars(select(Ticket.subject))),
            "call_tickets": len(list(await db.scalars(select(TicketLink.id).where(TicketLink.call_id == call.id)))),
            "customers": sorted(tuple(row) for row in customers),
            "notes": sorted(await db.scalars(select(Note.body))),
            "owners": sorted(tuple(row) for row in await db.execute(select(Customer.id, Customer.owner_id))),
            "drafts": sorted(tuple(row) for row in await db.execute(select(WrapUpDraft.call_id, WrapUpDraft.notes))),
            "transcript": tuple(
                (
                    await db.execute(
                        select(Transcript.text, Transcript.original_text).where(Transcript.call_id == call.id)
                    )
                ).first()
                or ()
            ),
            "audit": sorted(
                (entry.id, entry.action, entry.entity_type, entry.entity_id)
                for entry in await db.scalars(select(AuditEntry).where(AuditEntry.action != "login"))
            ),
        }


async def transcribed(center: LiveCenter, call_id: str | None) -> None:
    """The call's recording taken in and transcribed (once), as the recordings workers leave it."""
    async with center.runtime.unit_of_work() as db:
        if await db.scalar(select(Recording.id).where(Recording.call_id == call_id)) is not None:
            return
        recording = Recording(call_id=call_id, source_ref="demo.wav", status="stored")
        db.add(recording)
        await db.flush()
        words = [["hello", 0.0, 0.4, 1.0], ["world", 0.5, 0.9, 1.0]]
        line = {"speaker": None, "start": 0.0, "end": 0.9, "text": "hello world", "words": words}
        db.add(Transcript(recording_id=recording.id, call_id=call_id, text="hello world", lines=[line]))


def new_audit(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str]]:
    """(action, entity type) of the audit entries written between two states."""
    seen = set(before["audit"])
    return sorted((entry[1], entry[2]) for entry in after["audit"] if entry not in seen)


async def test_every_call_customer_and_recording_action_by_whose_it_is(center: LiveCenter, tmp_path: Path) -> None:
    assert {key for key in HTTP_TABLE if acts_on_a_record(key[1])} == set(OWNERSHIP_HTTP_TABLE)
    call_events = {(ns, e) for ns, e in SOCKET_TABLE if e != "connect" and handler_takes_a_linkedid(ns, e)}
    assert call_events == set(OWNERSHIP_SOCKET_TABLE), call_events ^ set(OWNERSHIP_SOCKET_TABLE)
    center.pbx.recordings_dir = tmp_path / "recordings"  # the app's recordings folder (CRM_DATA_DIR/recordings)
    got: dict[tuple[str, str, str], str] = {}
    want: dict[tuple[str, str, str], str] = {}

    sockets: dict[str, socketio.AsyncClient] = {}
    for party, username in PARTIES.items():
        try:
            sockets[party] = await center.socket(username, "/agent")
        except socketio.exceptions.ConnectionError:
            pass
    assert set(sockets) == ON_THE_AGENT_DESK | {"rang", "no_leg"}
    try:
        linkedid = await center.pbx.place_inbound_call(
            "+15551230002", "Bob Example", "support", agent="1001", answer_after_s=2, talk_s=4000
        )
        await wait_event(sockets["answered"], "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "up")
        [live] = [call for call in center.bridge.snapshot().calls if call.linkedid == linkedid]
        assert live.agent == "1001" and live.ringing_agents == ()  # 1002 was rung, and is not any more

        # live call controls, the hang-up last
        for (namespace, event), allowed in OWNERSHIP_SOCKET_TABLE.items():
            if event == "wrap_up":
                continue
            payload: dict[str, Any] = {"linkedid": linkedid}
            if event == "transfer":
                # an outside number: the demo PBX refuses a transfer it cannot play, so the call stays for the rows
                # after it (a refusal the PBX gives, past the rule, not the rule's)
                payload |= {"target": "+15559990000", "kind": "blind"}
            for party in PARTIES:
                want[(namespace, event, party)] = "allowed" if party in allowed else "refused"
                client = sockets.get(party)
                if client is None:
                    got[(namespace, event, party)] = "refused"  # the handshake already was
                    continue
                sent = len(center.pbx.actions_received)
                if party == "answered":
                    client.received.clear()  # type: ignore[attr-defined]
                ack = await client.call(event, payload, namespace=namespace, timeout=5)
                if party == "answered" and event in ("hold", "resume"):  # parked, then picked up: the call moves
                    settled = "held" if event == "hold" else "up"
                    await wait_event(
                        client, "call_state", lambda s, st=settled: s["linkedid"] == linkedid and s["state"] == st
                    )
                actions = {a.get("Action") for a in center.pbx.actions_received[sent:]} & CALL_ACTIONS
                if ack.get("code") == "permission_denied":
                    got[(namespace, event, party)] = "refused"
                    assert not actions, (event, party, actions)  # nothing reached the PBX
                    continue
                got[(namespace, event, party)] = "allowed"
                if party == "answered" and event == "hangup":
                    assert ack == {"ok": True}, (event, ack)
                    assert actions == {"Hangup"}
                elif party == "answered" and event == "transfer":
                    assert ack["code"] == "rejected" and actions == {"BlindTransfer"}, (event, ack, actions)
                elif party == "answered":  # hold parks the caller, resume picks it up again
                    assert ack == {"ok": True}, (event, ack)
                else:  # past the rule; the PBX then says what it can do for this extension
                    assert ack["code"] in ("channel_gone", "not_supported", "invalid"), (event, party, ack)
        await wait_event(
            sockets["answered"], "call_state", lambda s: s["linkedid"] == linkedid and s["state"] == "ended"
        )
        assert center.writer is not None
        await center.writer.drain()
        await center.pbx.recordings_written()
        async with center.runtime.sessions() as db:
            call = await db.scalar(select(CallLog).where(CallLog.linkedid == linkedid))
            assert call is not None and call.recording_ref and call.customer_id == center.customers["Bob Example"]
            legs = {leg.agent: leg.answered_at is not None for leg in call.legs}
            assert legs == {"1001": True, "1002": False}  # what the rule reads: 2001 has no leg at all
        recording = (tmp_path / "recordings" / call.recording_ref.rsplit("/", 1)[-1]).read_bytes()

        # the ended call's wrap-up, from its call log
        for party in PARTIES:
            want[("/agent", "wrap_up", party)] = "allowed" if party in ON_THE_AGENT_DESK else "refused"
            client = sockets.get(party)
            if client is None:
                got[("/agent", "wrap_up", party)] = "refused"
                continue
            before = await ownership_state(center, linkedid)
            code = "resolved" if party == "answered" else "callback"
            ack = await client.call(
                "wrap_up", {"linkedid": linkedid, "disposition": code, "notes": f"by {party}"}, namespace="/agent"
            )
            after = await ownership_state(center, linkedid)
            if ack.get("code") == "permission_denied":
                got[("/agent", "wrap_up", party)] = "refused"
                assert after == before, party  # the disposition of the agent who took it stays
                continue
            got[("/agent", "wrap_up", party)] = "allowed"
            assert ack["ok"] is True and after["wrap_up"][:2] == (code, f"by {party}")
            assert new_audit(before, after) == [("update", "call")]
    finally:
        for client in sockets.values():
            await client.disconnect()

    # HTTP: a client per party, each request with what the page would send
    clients = {party: await signed_in_as(center, username) for party, username in PARTIES.items()}
    bob = center.customers["Bob Example"]
    async with center.runtime.sessions() as db:
        call_id = await db.scalar(select(CallLog.id).where(CallLog.linkedid == linkedid))
    try:
        for (method, rule), allowed in OWNERSHIP_HTTP_TABLE.items():
            for number, party in enumerate(PARTIES):
                http, token = clients[party]
                want[(method, rule, party)] = "allowed" if party in allowed else "refused"
                url = center.base_url + rule.replace("<linkedid>", linkedid).replace("<customer_id>", bob)
                headers = {"X-CSRF-Token": token}
                body: dict[str, Any] | None = None
                form: dict[str, str] | None = None
                if rule.endswith("/claim"):
                    async with center.runtime.unit_of_work() as db:
                        await db.execute(update(Customer).where(Customer.id == bob).values(owner_id=None))
                if rule.endswith("/recording"):
                    headers["Range"] = "bytes=1-"  # a listen that does not start at byte 0 is a listen too
                elif rule.endswith("/ticket"):
                    body = {"subject": f"Ticket from the call by {party}", "priority": "high"}
                elif rule == "/api/customers" and method == "POST":
                    body = {"name": f"Caller of {party}", "phone": f"+1555123{9000 + number}", "linkedid": linkedid}
                elif rule.endswith("/notes"):
                    body = {"body": f"Note by {party}"}
                elif rule.endswith("/merge"):
                    async with center.runtime.unit_of_work() as db:
                        twin = await create_customer(
                            session=db, actor=SYSTEM, region="US", data=CustomerIn(name=f"Bob twin {party}")
                        )
                    body = {"merge_id": twin.id}
                elif rule.endswith("/owner"):
                    body = {"owner_id": None}
                elif rule.endswith("/wrap-up-draft"):
                    form = {"disposition": "callback", "notes": f"draft by {party}"}
                elif rule.endswith("/edit"):
                    form = {"name": "Bob Example", "city": f"Springfield {party}", "phones": "+15551230002, mobile"}
                elif rule.endswith("/merge-candidates"):
                    url += "?q=Example"
                elif rule.endswith("/transcript"):
                    await transcribed(center, call_id)
                    if method == "POST":
                        form = {"text": f"hello world corrected by {party}"}
                elif rule.endswith("/transcription"):
                    await transcribed(center, call_id)
                    form = {"transcribe": "off"}
                elif method == "POST" and not rule.endswith("/claim"):
                    body = {"city": f"Springfield {party}"}
                before = await ownership_state(center, linkedid)
                sent: dict[str, Any] = {"data": form} if form is not None else {"json": body}
                async with http.request(method, url, **sent, headers=headers, allow_redirects=False) as response:
                    content = await response.read()
                    status = response.status
                    location = response.headers.get("Location", "")
                after = await ownership_state(center, linkedid)
                if status in (401, 403) or (status == 302 and "/login" in location):
                    got[(method, rule, party)] = "refused"
                    assert after == before, (method, rule, party)  # no success audited, nothing changed
                    continue
                assert status < 300, (method, rule, party, status, content[:200])
                got[(method, rule, party)] = "allowed"
                audited = new_audit(before, after)
                if rule.endswith("/recording"):
                    assert status == 206 and content == recording[1:]
                    assert audited == [("read", "recording")]
                elif rule.endswith("/ticket"):
                    assert f"Ticket from the call by {party}" in after["tickets"]
                    assert after["call_tickets"] == before["call_tickets"] + 1 and audited == [("create", "ticket")]
                elif rule == "/api/customers" and method == "POST":
                    created = json.loads(content)["id"]
                    assert after["call_customer"] == created != before["call_customer"]
                    assert audited == [("create", "customer"), ("update", "call")]
                elif rule.endswith("/notes"):
                    assert f"Note by {party}" in after["notes"]
                elif rule.endswith("/merge"):
                    assert (body or {})["merge_id"] in {c[0] for c in after["customers"] if c[3] == bob}
                elif rule == "/api/customers" and method == "GET":
                    assert audited == []
                elif rule.startswith("/sms/customers/"):
                    assert b"No SMS yet." in content and audited == []
                elif rule.endswith("/claim"):
                    assert dict(after["owners"])[bob] is not None and audited == [("update", "customer")]
                elif rule.endswith("/owner"):
                    assert dict(after["owners"])[bob] is None and audited == [("update", "customer")]
                elif rule.endswith("/transcript") and method == "POST":
                    assert status == 204 and response.headers["HX-Redirect"] == f"/calls/{linkedid}/transcript"
                    assert audited == [("read", "transcript"), ("update", "transcript")]
                    assert after["transcript"] == (f"hello world corrected by {party}", "hello world")
                elif rule.endswith("/transcription"):
                    assert b"off (the caller declined)" in content
                    assert audited == [("update", "call_transcription")]
                    assert after["transcript"] == ()  # the declined call's transcript is gone
                elif rule.endswith("/transcript"):
                    assert b'<span class="word" data-start="0.5">' in content
                    assert audited == [("read", "transcript")]
                elif rule.endswith("/wrap-up-draft"):
                    assert status == 204 and (call_id, f"draft by {party}") in after["drafts"]
                elif method == "POST":
                    assert (bob, "Bob Example", f"Springfield {party}", None) in after["customers"]
    finally:
        for http, _ in clients.values():
            await http.close()
    mismatches = {key: (got.get(key), want[key]) for key in want if got.get(key) != want[key]}
    assert not mismatches, mismatches
