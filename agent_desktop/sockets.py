"""Socket.IO namespaces /agent and /supervisor: connections authenticated by the session cookie (checked against the
user's standing at connect, closed when the user's sessions end), commands with an acknowledgement that is either
{"ok": true} or {"ok": false, "error": one sentence, "code": a stable code}. The default namespace "/" is closed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from quart import Quart

from agent_desktop.auth import Standing, session_from_cookie, signed_in_users
from agent_desktop.live_calls import check_on_live_call
from agent_desktop.notifier import Notifier
from agent_desktop.rooms import AGENT_NAMESPACE, SUPERVISOR_NAMESPACE, agent_room, supervisors_room, user_room
from agent_desktop.runtime import Runtime
from crm_core.calls.service import wrap_up
from crm_core.errors import CrmError, ValidationFailed
from crm_core.users.events import UserSessionsRevoked
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role
from cti_bridge.adapter import CommandError, PbxAdapter, SpyMode

log = logging.getLogger(__name__)

Ack = dict[str, Any]
AGENT_ROLES = (Role.AGENT, Role.SUPERVISOR)  # admins too (require_role lets them through)
AGENT_EVENTS = (
    "dial",
    "hangup",
    "transfer",
    "hold",
    "resume",
    "pause",
    "unpause",
    "queue_login",
    "queue_logout",
    "wrap_up",
)
SUPERVISOR_EVENTS = ("spy", "force_pause", "force_login", "force_logout", "move_agent")


def _text(data: Any, key: str, limit: int = 200) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"'{key}' is missing.", field=key)
    return value.strip()[:limit]


class Sockets:
    def __init__(
        self, sio: socketio.AsyncServer, app: Quart, runtime: Runtime, notifier: Notifier, pbx: PbxAdapter | None
    ) -> None:
        self.sio = sio
        self.app = app
        self.runtime = runtime
        self.notifier = notifier
        self.pbx = pbx
        # Nothing is sent or heard on "/": refusing every connection there leaves no door that skips the checks
        # of /agent and /supervisor (a browser of ours never opens it; the Socket.IO v4 client joins only the
        # namespaces it names).
        sio.on("connect", self.default_connect, namespace="/")
        sio.on("connect", self.agent_connect, namespace=AGENT_NAMESPACE)
        sio.on("connect", self.supervisor_connect, namespace=SUPERVISOR_NAMESPACE)
        runtime.bus.subscribe(UserSessionsRevoked, self.sessions_revoked)
        for name in AGENT_EVENTS:
            sio.on(name, self._guarded(getattr(self, f"agent_{name}"), AGENT_NAMESPACE), namespace=AGENT_NAMESPACE)
        for name in SUPERVISOR_EVENTS:
            sio.on(
                name, self._guarded(getattr(self, f"sup_{name}"), SUPERVISOR_NAMESPACE), namespace=SUPERVISOR_NAMESPACE
            )

    # --- connection -------------------------------------------------------------------------------------------

    async def _standing_of_handshake(self, environ: dict[str, Any]) -> Standing | None:
        data = session_from_cookie(self.app, environ.get("HTTP_COOKIE", ""))
        if data is None:
            return None
        standing = await signed_in_users(self.app).check(data)
        if standing is None or standing.must_change_password:
            return None
        return standing

    async def default_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        return False

    async def agent_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        standing = await self._standing_of_handshake(environ)
        if standing is None or not standing.extension or standing.role not in (Role.AGENT, Role.SUPERVISOR, Role.ADMIN):
            return False  # refused: the browser sees connect_error
        actor = standing.actor
        await self.sio.save_session(sid, {"actor": actor}, namespace=AGENT_NAMESPACE)
        await self.sio.enter_room(sid, user_room(standing.user_id), namespace=AGENT_NAMESPACE)
        await self.sio.enter_room(sid, agent_room(standing.extension), namespace=AGENT_NAMESPACE)
        await self.notifier.resend_to_agent(sid, standing.extension)
        return True

    async def supervisor_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        standing = await self._standing_of_handshake(environ)
        if standing is None or standing.role not in (Role.SUPERVISOR, Role.ADMIN):
            return False
        await self.sio.save_session(sid, {"actor": standing.actor}, namespace=SUPERVISOR_NAMESPACE)
        await self.sio.enter_room(sid, user_room(standing.user_id), namespace=SUPERVISOR_NAMESPACE)
        await self.sio.enter_room(sid, supervisors_room(), namespace=SUPERVISOR_NAMESPACE)
        await self.notifier.resend_to_supervisor(sid)
        return True

    async def sessions_revoked(self, event: UserSessionsRevoked) -> None:
        """The user signed out, was deactivated, changed password or role: close their sockets in this process
        (every process hears the event when the bus is Redis); reconnecting with the old cookie is refused."""
        for namespace in (AGENT_NAMESPACE, SUPERVISOR_NAMESPACE):
            sids = [sid for sid, _eio in self.sio.manager.get_participants(namespace, user_room(event.user_id))]
            for sid in sids:
                log.info("closing socket %s of user %s (%s)", sid, event.user_id, event.reason.value)
                await self.sio.disconnect(sid, namespace=namespace)

    def _guarded(self, handler: Callable[[Actor, Any], Awaitable[Ack | None]], namespace: str) -> Callable[..., Any]:
        async def run(sid: str, data: Any = None) -> Ack:
            session = await self.sio.get_session(sid, namespace=namespace)
            actor = session.get("actor")
            if not isinstance(actor, Actor):
                return {"ok": False, "error": "Sign in again.", "code": "not_signed_in"}
            try:
                result = await handler(actor, data if isinstance(data, dict) else {})
            except CommandError as exc:
                return {"ok": False, "error": exc.detail, "code": exc.code.value}
            except CrmError as exc:
                return {"ok": False, "error": exc.message, "code": exc.code}
            except Exception:
                log.exception("socket event failed")
                return {"ok": False, "error": "That did not work; try again.", "code": "internal"}
            return result or {"ok": True}

        return run

    def _require_pbx(self) -> PbxAdapter:
        if self.pbx is None:
            raise CrmError("No PBX is configured.")
        return self.pbx

    # --- agent events -----------------------------------------------------------------------------------------

    async def agent_dial(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, *AGENT_ROLES)
        await self._require_pbx().dial(actor.extension or "", _text(data, "number", 40))
        return {"ok": True}

    async def agent_hangup(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, *AGENT_ROLES)
        pbx, linkedid = self._require_pbx(), _text(data, "linkedid", 64)
        check_on_live_call(pbx, actor, linkedid, rung_may=True)  # a ringing agent may decline
        await pbx.hangup(linkedid, agent=actor.extension)
        return {"ok": True}

    async def agent_transfer(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, *AGENT_ROLES)
        pbx = self._require_pbx()
        linkedid, target = _text(data, "linkedid", 64), _text(data, "target", 40)
        check_on_live_call(pbx, actor, linkedid)
        if data.get("kind") == "attended":
            await pbx.attended_transfer(linkedid, actor.extension or "", target)
        else:
            await pbx.blind_transfer(linkedid, actor.extension or "", target)
        return {"ok": True}

    async def agent_hold(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, *AGENT_ROLES)
        pbx, linkedid = self._require_pbx(), _text(data, "linkedid", 64)
        check_on_live_call(pbx, actor, linkedid)
        await pbx.hold(linkedid, actor.extension or "")
        return {"ok": True}

    async def agent_resume(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, *AGENT_ROLES)
        pbx, linkedid = self._require_pbx(), _text(data, "linkedid", 64)
        check_on_live_call(pbx, actor, linkedid)
        await pbx.resume(linkedid, actor.extension or "")
        return {"ok": True}

    async def agent_pause(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, *AGENT_ROLES)
        await self._require_pbx().pause(actor.extension or "", _text(data, "reason", 80))
        return {"ok": True}

    async def agent_unpause(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, *AGENT_ROLES)
        await self._require_pbx().unpause(actor.extension or "")
        return {"ok": True}

    async def agent_queue_login(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, *AGENT_ROLES)
        await self._require_pbx().queue_login(actor.extension or "", _text(data, "queue", 40))
        return {"ok": True}

    async def agent_queue_logout(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, *AGENT_ROLES)
        await self._require_pbx().queue_logout(actor.extension or "", _text(data, "queue", 40))
        return {"ok": True}

    async def agent_wrap_up(self, actor: Actor, data: dict[str, Any]) -> Ack:
        # the call has ended: the call log's answered legs decide (wrap_up checks, in crm_core.calls.service)
        notes = data.get("notes") if isinstance(data.get("notes"), str) else None
        async with self.runtime.unit_of_work() as session:
            call = await wrap_up(
                session=session,
                actor=actor,
                linkedid=_text(data, "linkedid", 64),
                disposition_code=_text(data, "disposition", 32),
                notes=notes,
            )
            return {"ok": True, "call_id": call.id}

    # --- supervisor events ------------------------------------------------------------------------------------

    async def sup_spy(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, Role.SUPERVISOR)
        if not actor.extension:
            raise CrmError("Set your own extension to listen in (your profile has none).")
        mode = data.get("mode", "listen")
        if mode not in {m.value for m in SpyMode}:
            raise CrmError("Listen, whisper or barge.", field="mode")
        await self._require_pbx().spy(actor.extension, _text(data, "agent", 20), SpyMode(mode))
        return {"ok": True}

    async def sup_force_pause(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, Role.SUPERVISOR)
        reason = data.get("reason") if isinstance(data.get("reason"), str) else "Supervisor"
        await self._require_pbx().pause(_text(data, "agent", 20), (reason or "Supervisor")[:80])
        return {"ok": True}

    async def sup_force_login(self, actor: Actor, data: dict[str, Any]) -> Ack:
        """Log an agent (back) into a queue, e.g. after they were logged out by mistake."""
        require_role(actor, Role.SUPERVISOR)
        await self._require_pbx().queue_login(_text(data, "agent", 20), _text(data, "queue", 40))
        return {"ok": True}

    async def sup_force_logout(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, Role.SUPERVISOR)
        await self._require_pbx().queue_logout(_text(data, "agent", 20), _text(data, "queue", 40))
        return {"ok": True}

    async def sup_move_agent(self, actor: Actor, data: dict[str, Any]) -> Ack:
        require_role(actor, Role.SUPERVISOR)
        pbx = self._require_pbx()
        # every value read before the first step: a missing from_queue must not leave the agent in both queues
        agent = _text(data, "agent", 20)
        to_queue, from_queue = _text(data, "to_queue", 40), _text(data, "from_queue", 40)
        await pbx.queue_login(agent, to_queue)
        await pbx.queue_logout(agent, from_queue)
        return {"ok": True}
