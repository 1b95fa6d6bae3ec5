"""Integrations: the generic CTI endpoint a TAPI-style PBX gateway pushes call events to (Zammad's push API, so its
connectors work unchanged), and the admin screen that maps each PBX's user names to CRM users."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from quart import Blueprint, Response, current_app, render_template, request
from sqlalchemy import select

from agent_desktop.auth import roles_allowed
from agent_desktop.notifier import Notifier
from agent_desktop.pop import PopBuilder
from agent_desktop.routes.common import actor, json_body, runtime
from agent_desktop.runtime import Runtime
from crm_core.errors import ValidationFailed
from crm_core.pbx.service import (
    PbxDirectory,
    delete_mapping,
    homes,
    list_mappings,
    pbx_directory,
    pbx_user_key,
    save_mapping,
)
from crm_core.users.models import Role, User
from cti_bridge.generic import (
    CtiErrorCode,
    CtiEvent,
    CtiEventKind,
    GenericCtiAdapter,
    GenericCtiError,
    linkedid_for,
    parse_event,
)

log = logging.getLogger(__name__)
blueprint = Blueprint("integrations", __name__)
# compared against when the PBX name is unknown, so that a wrong name costs the same time as a wrong token
_NO_TOKEN = b"\x00" * 48
DIRECTORY_TTL_S = 10.0  # a user's extension or queues changed by an admin reach the CTI path within this


@dataclass(frozen=True, slots=True)
class GenericEndpoint:
    name: str
    token: bytes
    adapter: GenericCtiAdapter | None  # None in a web-only worker: it does not run the PBX bridges


def endpoints() -> dict[str, GenericEndpoint]:
    """The generic PBXes of the settings, with their adapters where this process runs them."""
    known: dict[str, GenericEndpoint] | None = current_app.extensions.get("generic_cti")
    if known is None:
        pbx = current_app.extensions.get("pbx")
        adapters: dict[str, GenericCtiAdapter] = getattr(pbx, "generic", None) or {}
        known = {
            setting.name: GenericEndpoint(
                setting.name, setting.token.get_secret_value().encode(), adapters.get(setting.name)
            )
            for setting in runtime().settings.generic_pbxes
        }
        current_app.extensions["generic_cti"] = known
    return known


def _forbidden() -> Response:
    # the same answer for an unknown PBX and a wrong token: nothing to learn from it
    response = current_app.response_class('{"code": "forbidden"}', status=403, mimetype="application/json")
    return response


async def _fields() -> dict[str, Any]:
    """The event's fields: a JSON object, or form data (each field as the list of its values, for `user[]`)."""
    if request.mimetype == "application/json":
        try:
            return await json_body()
        except ValidationFailed as exc:
            raise GenericCtiError(CtiErrorCode.INVALID, exc.message, field="body") from None
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if request.mimetype == "application/x-www-form-urlencoded":
            try:  # Quart's parser would read bytes that are not UTF-8 as no fields at all
                (await request.get_data(cache=True)).decode()
            except UnicodeDecodeError:
                raise GenericCtiError(CtiErrorCode.INVALID, "The form data is not UTF-8 text.", field="body") from None
        form = await request.form
        return {name: form.getlist(name) for name in form}
    raise GenericCtiError(
        CtiErrorCode.INVALID, "Send the event as form data or as a JSON object (Content-Type).", field="body"
    )


class _Directories:
    """Each PBX's directory (names -> extensions, queues -> agents), read whole when the app starts serving and kept
    DIRECTORY_TTL_S; once stale it is still used while one task reads it again, so no pushed event waits for the
    database (a mapping an admin changes is read again at once, by the next event)."""

    def __init__(self, crm: Runtime) -> None:
        self._runtime = crm
        self.known: dict[str, tuple[float, PbxDirectory]] = {}
        self.reading: dict[str, asyncio.Task[PbxDirectory]] = {}
        self.generation = 0  # one more at each forget(): a read begun before it keeps nothing

    async def get(self, pbx: str) -> PbxDirectory:
        now = time.monotonic()
        known = self.known.get(pbx)
        if known is not None and known[0] > now:
            return known[1]
        task = self.reading.get(pbx)
        if task is None:
            task = asyncio.create_task(self._read(pbx, self.generation), name=f"pbx-directory-{pbx}")
            self.reading[pbx] = task
            task.add_done_callback(lambda done: self.reading.pop(pbx, None) if self.reading.get(pbx) is done else None)
        if known is not None:
            return known[1]  # stale, while the task reads the new one
        return await asyncio.shield(task)

    async def _read(self, pbx: str, generation: int) -> PbxDirectory:
        async with self._runtime.sessions() as session:
            directory = await pbx_directory(session=session, pbx=pbx)
        if generation == self.generation:  # not forgotten meanwhile (an admin's change): keep it
            self.known[pbx] = (time.monotonic() + DIRECTORY_TTL_S, directory)
        return directory

    def forget(self) -> None:
        self.generation += 1
        self.known.clear()
        self.reading.clear()  # a read under way may predate the change: the next event reads again


def _directories() -> _Directories:
    found: _Directories | None = current_app.extensions.get("cti_directories")
    if found is None:
        found = _Directories(runtime())
        current_app.extensions["cti_directories"] = found
    return found


async def _agents(pbx: str, event: CtiEvent) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """The agents the event names (its users, the answering number), else its queue's agents; and the queue's
    agents for the wallboard's figures."""
    names = list(event.users)
    if event.kind is CtiEventKind.ANSWER and event.answering_number:
        names.insert(0, event.answering_number)
    if not names and not event.queue:
        return (), None  # a hangup: nothing to look up
    directory = await _directories().get(pbx)
    members = directory.queues.get(event.queue, ()) if event.queue else None
    agents: list[str] = []
    unknown: list[str] = []
    for name in names:
        extension = directory.names.get(pbx_user_key(name))
        if extension is None:
            unknown.append(name)
        elif extension not in agents:
            agents.append(extension)
    if unknown:
        log.warning("PBX %s named users the CRM does not know (map them in Admin → PBXes): %s", pbx, unknown[:5])
    if not agents and not event.users and event.kind is CtiEventKind.NEW_CALL and members:
        return members, members  # nobody named: the queue's agents are rung, never everyone
    return tuple(agents), members


def _forget_names() -> None:
    _directories().forget()


async def _prepare_pop(adapter: GenericCtiAdapter, event: CtiEvent) -> None:
    """A newCall's screen pop, built before the event is applied: the agents it rings get it in the same turn of the
    event loop as their ring, as on the Asterisk path (whose pops are built on CallStarted, seconds before the ring).
    Left to itself, the pop would be built in a task after this request's handler ends, and sent one more turn later."""
    pops: PopBuilder | None = current_app.extensions.get("pops")
    if pops is None or "notifier" not in current_app.extensions:
        return  # nobody here sends pops
    number = adapter.pop_number(event)
    if number is not None:
        await pops.prepare(linkedid_for(adapter.name, event.call_id), number, queue=event.queue)


def authenticated(pbx_name: str, token: str) -> GenericEndpoint | None:
    """The generic PBX this token is for, or None: the token is compared in constant time, and an unknown PBX
    costs the same comparison."""
    endpoint = endpoints().get(pbx_name)
    expected = endpoint.token if endpoint is not None else _NO_TOKEN
    if not hmac.compare_digest(token.encode(), expected) or endpoint is None:
        return None
    return endpoint


async def apply_event(adapter: GenericCtiAdapter, fields: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """One pushed event, given its fields: checked, its agents found, their pop built and the event applied. The
    answer for the PBX and its HTTP status. Both doors of the endpoint come here: the route below and, for a
    well-formed event, the fast path in front of Quart (agent_desktop/cti_edge.py)."""
    try:
        event = parse_event(fields)
        agents, members = await _agents(adapter.name, event)
        if agents:  # somebody rings: their pop, built now
            await _prepare_pop(adapter, event)
        applying = adapter.push(event, agents, queue_members=members)
        notifier: Notifier | None = current_app.extensions.get("notifier")
        # the PBX's answer goes once the browsers' connections have taken the pops (and the calls' updates)
        answer = await (notifier.delivered(applying) if notifier is not None else applying)
    except GenericCtiError as exc:
        return exc.to_dict(), exc.http_status
    return answer.body, 200


@blueprint.post("/api/cti/<pbx_name>/<token>")
async def generic_cti(pbx_name: str, token: str) -> Any:
    endpoint = authenticated(pbx_name, token)
    if endpoint is None:
        log.warning(
            "refused a generic CTI event for %r from %s: unknown PBX or wrong token", pbx_name[:20], request.remote_addr
        )
        return _forbidden()
    if endpoint.adapter is None:
        return {
            "code": "pbx_not_served",
            "message": "This worker does not run the generic CTI PBXes (it is --web-only); post to `crm serve`.",
        }, 503
    try:
        fields = await _fields()
    except GenericCtiError as exc:
        return exc.to_dict(), exc.http_status
    body, status = await apply_event(endpoint.adapter, fields)
    # a Response, not a dict: quart-schema would build a pydantic TypeAdapter to convert a dict, for every event
    return current_app.response_class(json.dumps(body), status=status, mimetype="application/json")


# --- admin: PBXes and their users ------------------------------------------------------------------------------


async def _admin_page(status: int = 200, message: str | None = None) -> Any:
    async with runtime().sessions() as session:
        mappings = await list_mappings(session=session, actor=actor())
        staff = (
            await session.execute(
                select(User.id, User.username, User.extension)
                .where(User.is_active.is_(True), User.extension.is_not(None))
                .where(User.role.in_([Role.AGENT.value, Role.SUPERVISOR.value]))
                .order_by(User.username)
            )
        ).all()
    settings = runtime().settings
    pbxes = [
        {
            "name": s.name,
            "region": s.region or settings.default_region,
            "dials": s.dial_url is not None,
            "endpoint": f"{settings.public_base_url.rstrip('/')}/api/cti/{s.name}/…",
            "served": (e := endpoints().get(s.name)) is not None and e.adapter is not None,
            "events": e.adapter.events_received if e is not None and e.adapter is not None else 0,
        }
        for s in settings.generic_pbxes
    ]
    template = "admin/pbx_table.html" if request.headers.get("HX-Request") == "true" else "admin/pbx.html"
    return (
        await render_template(template, pbxes=pbxes, mappings=mappings, staff=staff, message=message),
        status,
    )


async def _refresh_homes() -> None:
    _forget_names()
    pbx = current_app.extensions.get("pbx")
    if pbx is not None and hasattr(pbx, "homes"):
        async with runtime().sessions() as session:
            pbx.homes = await homes(session=session)


@blueprint.before_app_serving
async def _load_homes() -> None:
    await _refresh_homes()
    for endpoint in endpoints().values():  # read before the first call: its pops must not wait for the database
        if endpoint.adapter is not None:
            await _directories().get(endpoint.name)


@blueprint.get("/admin/pbx")
@roles_allowed()
async def pbx_admin() -> Any:
    return await _admin_page()


@blueprint.post("/admin/pbx/mappings")
@roles_allowed(api=True)
async def pbx_map_user() -> Any:
    form = await request.form
    async with runtime().unit_of_work() as session:
        await save_mapping(
            session=session,
            actor=actor(),
            pbx=form.get("pbx", ""),
            pbx_user=form.get("pbx_user", ""),
            user_id=form.get("user_id", ""),
            known_pbxes=[s.name for s in runtime().settings.generic_pbxes],
        )
    await _refresh_homes()
    return await _admin_page(message="Mapped.")


@blueprint.post("/admin/pbx/mappings/<mapping_id>/delete")
@roles_allowed(api=True)
async def pbx_unmap_user(mapping_id: str) -> Any:
    async with runtime().unit_of_work() as session:
        await delete_mapping(session=session, actor=actor(), mapping_id=mapping_id)
    await _refresh_homes()
    return await _admin_page(message="Removed.")
