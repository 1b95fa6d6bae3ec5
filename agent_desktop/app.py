"""The Quart application factory: pages, HTTP API, auth, and the Socket.IO server mounted beside them."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import mimetypes
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import socketio
from pydantic import ValidationError as PydanticValidationError
from quart import Quart, Response, abort, redirect, render_template, request, send_file, session, url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from agent_desktop.auth import (
    CSRF_KEY,
    SESSION_COOKIE,
    check_csrf,
    csrf_token,
    current_actor,
    roles_allowed,
)
from agent_desktop.notifier import Notifier
from agent_desktop.pop import PopBuilder, customer_context
from agent_desktop.runtime import Runtime
from agent_desktop.sockets import Sockets
from agent_desktop.voice_webhooks import voice_blueprint
from crm_core.calls.models import CallLog, Disposition
from crm_core.calls.reports import CSV_COLUMNS, call_report, calls_per_interval
from crm_core.calls.service import link_customer, open_recording
from crm_core.customers.errors import DuplicateCustomer
from crm_core.customers.lookup import CallerIdLookup
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import add_note, create_customer, get_customer, merge_customers, update_customer
from crm_core.errors import CrmError, NotFound, ValidationFailed
from crm_core.tickets.service import create_ticket
from crm_core.timeline import customer_timeline
from crm_core.users.models import Role, User
from crm_core.users.service import Actor, authenticate, set_password
from cti_bridge.adapter import PbxAdapter
from ivr.engine import CrmContext
from ivr.flow import Flow
from recordings.store import RecordingStore

HOME = {Role.AGENT: "desktop", Role.SUPERVISOR: "wallboard", Role.ADMIN: "wallboard", Role.MARKETER: "account"}
STAFF = (Role.AGENT, Role.SUPERVISOR)


def _actor() -> Actor:
    actor = current_actor()
    if actor is None:  # roles_allowed already refused anonymous callers
        abort(401)
    return actor


async def _json() -> dict[str, Any]:
    data = await request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationFailed("Send a JSON object.")
    return data


def _day(value: str | None, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{value!r} is not a date (YYYY-MM-DD).") from None


class CrmQuart(Quart):
    """Quart with static files answered from memory: they are small, and a file response that a browser
    abandons half way (a page reload) would otherwise leave its file open."""

    async def send_static_file(self, filename: str) -> Response:
        body = await asyncio.to_thread(self._static_bytes, filename)
        if body is None:
            abort(404)
        response = Response(body, mimetype=mimetypes.guess_type(filename)[0] or "application/octet-stream")
        response.cache_control.max_age = 3600
        return response

    def _static_bytes(self, filename: str) -> bytes | None:
        folder = Path(self.static_folder or "").resolve()
        path = (folder / filename).resolve()
        if folder not in path.parents or not path.is_file():
            return None  # outside the folder (../) or missing
        return path.read_bytes()


def create_app(
    runtime: Runtime,
    *,
    pbx: PbxAdapter | None = None,
    sio: socketio.AsyncServer | None = None,
    voice: tuple[dict[str, Flow], CrmContext] | None = None,
    notify: bool = True,
) -> Quart:
    app = CrmQuart(__name__)
    app.secret_key = runtime.secret_key
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    app.extensions["runtime"] = runtime
    app.jinja_env.globals["csrf_token"] = csrf_token
    settings = runtime.settings
    recordings = RecordingStore(settings.recordings_folder)
    if voice is not None:
        token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
        app.register_blueprint(
            voice_blueprint(voice[0], voice[1], auth_token=token, public_base_url=settings.public_base_url)
        )

    @app.errorhandler(CrmError)
    async def _domain_error(error: CrmError) -> tuple[dict[str, Any], int]:
        return error.to_dict(), error.http_status

    @app.errorhandler(PydanticValidationError)
    async def _bad_fields(error: PydanticValidationError) -> tuple[dict[str, Any], int]:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in error.errors()]
        return {"code": "validation_failed", "message": "; ".join(problems)}, 400

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Any:
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
            return {"code": error.name.lower().replace(" ", "_"), "message": error.description}, error.code
        return await render_template("error.html", error=error), error.code

    @app.after_request
    async def _headers(response: Response) -> Response:
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        snapshot = pbx.snapshot() if pbx is not None else None
        return {"status": "ok", "pbx_connected": bool(snapshot and snapshot.connected)}

    @app.get("/")
    async def index() -> Any:
        actor = current_actor()
        if actor is None:
            return redirect(url_for("login"))
        return redirect(url_for(HOME[actor.role]))

    @app.route("/login", methods=["GET", "POST"])
    async def login() -> Any:
        error = None
        if request.method == "POST":
            form = await request.form
            check_csrf(form.get(CSRF_KEY))
            try:
                async with runtime.unit_of_work() as db:
                    user = await authenticate(
                        session=db, username=form.get("username", ""), password=form.get("password", "")
                    )
            except CrmError as exc:
                error = exc.message
            else:
                session.clear()
                session.update(
                    user_id=user.id,
                    role=user.role,
                    extension=user.extension,
                    name=user.display_name,
                    queues=list(user.queues or []),
                    must_change_password=user.must_change_password,
                )
                session.permanent = True
                if user.must_change_password:
                    return redirect(url_for("password"))
                return redirect(url_for(HOME[Role(user.role)]))
        return await render_template("login.html", error=error), 401 if error else 200

    @app.post("/logout")
    async def logout() -> Any:
        form = await request.form
        check_csrf(form.get(CSRF_KEY))
        session.clear()
        return redirect(url_for("login"))

    @app.route("/password", methods=["GET", "POST"])
    @roles_allowed(Role.AGENT, Role.SUPERVISOR, Role.MARKETER)
    async def password() -> Any:
        error = None
        if request.method == "POST":
            form = await request.form
            check_csrf(form.get(CSRF_KEY))
            if form.get("password") != form.get("again"):
                error = "The two passwords differ."
            else:
                try:
                    async with runtime.unit_of_work() as db:
                        actor = _actor()
                        await set_password(
                            session=db, actor=actor, user_id=actor.user_id or "", password=form.get("password", "")
                        )
                        user = await db.get(User, actor.user_id)
                        if user is not None:
                            user.must_change_password = False
                except CrmError as exc:
                    error = exc.message
                else:
                    session["must_change_password"] = False
                    return redirect(url_for("index"))
        return await render_template("password.html", error=error), 400 if error else 200

    @app.get("/account")
    @roles_allowed(Role.AGENT, Role.SUPERVISOR, Role.MARKETER)
    async def account() -> Any:
        return await render_template("account.html", me=dict(session))

    # --- agent desktop ------------------------------------------------------------------------------------------

    @app.get("/desktop")
    @roles_allowed(*STAFF)
    async def desktop() -> Any:
        async with runtime.sessions() as db:
            dispositions = list(await db.scalars(select(Disposition).where(Disposition.active.is_(True))))
        return await render_template(
            "desktop.html",
            me=dict(session),
            dispositions=dispositions,
            wrapup_seconds=settings.wrapup_seconds,
            pause_reasons=["Break", "Lunch", "Training", "Meeting", "After-call work"],
        )

    @app.get("/customers/<customer_id>")
    @roles_allowed(*STAFF)
    async def customer_page(customer_id: str) -> Any:
        actor = _actor()
        async with runtime.sessions() as db:
            customer = await get_customer(session=db, actor=actor, customer_id=customer_id)
            context = await customer_context(db, customer.id)
            timeline = await customer_timeline(session=db, actor=actor, customer_id=customer.id, limit=100)
        return await render_template("customer.html", customer=customer, context=context, timeline=timeline)

    @app.post("/api/customers")
    @roles_allowed(*STAFF, api=True)
    async def api_create_customer() -> Any:
        data = await _json()
        phone = str(data.get("phone", "")).strip()
        customer_in = CustomerIn(
            name=str(data.get("name", "")).strip(),
            phones=[PhoneIn(number=phone)] if phone else [],
            emails=[str(data["email"]).strip()] if data.get("email") else [],
        )
        try:
            async with runtime.unit_of_work() as db:
                customer = await create_customer(
                    session=db,
                    actor=_actor(),
                    data=customer_in,
                    region=settings.default_region,
                    allow_duplicate=bool(data.get("allow_duplicate")),
                )
                linkedid = data.get("linkedid")
                if isinstance(linkedid, str) and linkedid:
                    await link_customer(session=db, actor=_actor(), linkedid=linkedid, customer_id=customer.id)
        except DuplicateCustomer as exc:
            return exc.to_dict(), 409
        if isinstance(data.get("linkedid"), str):
            await pops.refresh(data["linkedid"])
        return {"id": customer.id, "name": customer.name, "url": url_for("customer_page", customer_id=customer.id)}, 201

    @app.post("/api/customers/<customer_id>")
    @roles_allowed(*STAFF, api=True)
    async def api_update_customer(customer_id: str) -> Any:
        data = await _json()
        editable = ("name", "title", "street", "city", "postal_code", "country", "timezone", "language", "vip_tier")
        async with runtime.unit_of_work() as db:
            actor = _actor()
            current = await get_customer(session=db, actor=actor, customer_id=customer_id)
            fields: dict[str, Any] = {
                "name": current.name,
                "kind": current.kind,
                "parent_id": current.parent_id,
                "phones": [PhoneIn(number=p.e164, label=p.label) for p in current.phones],
                "emails": [e.email for e in current.emails],
                "tags": [t.name for t in current.tags],
                "owner_id": current.owner_id,
                "custom_fields": dict(current.custom_fields or {}),
                **{k: getattr(current, k) for k in editable if k != "name"},
            }
            fields.update(
                {k: (str(v).strip() or None) if k != "name" else str(v) for k, v in data.items() if k in editable}
            )
            if isinstance(data.get("phones"), list):
                fields["phones"] = [PhoneIn(number=str(n)) for n in data["phones"] if str(n).strip()]
            customer = await update_customer(
                session=db,
                actor=actor,
                customer_id=customer_id,
                data=CustomerIn(**fields),
                region=settings.default_region,
            )
        return {"id": customer.id, "name": customer.name}

    @app.post("/api/customers/<customer_id>/notes")
    @roles_allowed(*STAFF, api=True)
    async def api_add_note(customer_id: str) -> Any:
        data = await _json()
        async with runtime.unit_of_work() as db:
            note = await add_note(session=db, actor=_actor(), customer_id=customer_id, body=str(data.get("body", "")))
        return {"id": note.id}, 201

    @app.post("/api/customers/<customer_id>/merge")
    @roles_allowed(Role.SUPERVISOR, api=True)
    async def api_merge(customer_id: str) -> Any:
        data = await _json()
        async with runtime.unit_of_work() as db:
            kept = await merge_customers(
                session=db, actor=_actor(), keep_id=customer_id, merge_id=str(data.get("merge_id", ""))
            )
        return {"id": kept.id}

    @app.post("/api/calls/<linkedid>/ticket")
    @roles_allowed(*STAFF, api=True)
    async def api_ticket_from_call(linkedid: str) -> Any:
        data = await _json()
        async with runtime.unit_of_work() as db:
            call = await db.scalar(select(CallLog).where(CallLog.linkedid == linkedid))
            ticket = await create_ticket(
                session=db,
                actor=_actor(),
                subject=str(data.get("subject", "")).strip(),
                description=str(data.get("description", "")),
                customer_id=(call.customer_id if call else None) or data.get("customer_id") or None,
                priority=str(data.get("priority", "normal")),
                call_id=call.id if call else None,
            )
        return {"id": ticket.id, "number": ticket.number}, 201

    @app.get("/api/calls/<linkedid>/recording")
    @roles_allowed(*STAFF, api=True)
    async def api_call_recording(linkedid: str) -> Any:
        """The call's recording, for the player on the customer page; each listen is audited (not each byte range
        the player asks for as it seeks)."""
        first_request = request.range is None or all(start == 0 for start, _ in request.range.ranges)
        async with runtime.unit_of_work() as db:
            call = await open_recording(session=db, actor=_actor(), linkedid=linkedid, audit=first_request)
            path = recordings.path_of(call.recording_ref or "")
            if path is None:  # raised inside the transaction: no file to hear, no listen audited
                raise NotFound("The recording has not reached the recordings store yet.", linkedid=linkedid)
        # read off the event loop and served from memory (a recording is ~1 MB a minute): Quart's file body can
        # leave its file open when a player drops a range request half-way
        audio = await asyncio.to_thread(path.read_bytes)
        response = await send_file(io.BytesIO(audio), mimetype=recordings.media_type(path), conditional=True)
        response.headers["Cache-Control"] = "private, no-store"
        return response

    # --- supervisor ---------------------------------------------------------------------------------------------

    @app.get("/wallboard")
    @roles_allowed(Role.SUPERVISOR)
    async def wallboard() -> Any:
        return await render_template(
            "wallboard.html", me=dict(session), service_level_seconds=settings.service_level_seconds
        )

    @app.get("/api/wallboard/intervals")
    @roles_allowed(Role.SUPERVISOR, api=True)
    async def api_intervals() -> Any:
        now = datetime.now(UTC)
        since = datetime.combine(now.date(), time(), UTC)
        async with runtime.sessions() as db:
            rows = await calls_per_interval(session=db, actor=_actor(), since=since, until=now, minutes=30)
        return {"intervals": rows}

    async def _report() -> Any:
        today = datetime.now(UTC).date()
        start = _day(request.args.get("start"), today - timedelta(days=6))
        end = _day(request.args.get("end"), today)
        async with runtime.sessions() as db:
            return await call_report(
                session=db,
                actor=_actor(),
                start=datetime.combine(start, time(), UTC),
                end=datetime.combine(end + timedelta(days=1), time(), UTC),
                queue=request.args.get("queue") or None,
                agent=request.args.get("agent") or None,
                service_level_seconds=settings.service_level_seconds,
            )

    @app.get("/reports")
    @roles_allowed(Role.SUPERVISOR)
    async def reports() -> Any:
        report = await _report()
        last_day = (report.end - timedelta(days=1)).date()
        return await render_template("reports.html", report=report, args=request.args, last_day=last_day)

    @app.get("/reports.csv")
    @roles_allowed(Role.SUPERVISOR)
    async def reports_csv() -> Any:
        report = await _report()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in report.csv_rows():
            # a cell starting with = + - @ would be a formula in a spreadsheet
            writer.writerow({k: ("'" + v if v[:1] in "=+-@" and k == "key" else v) for k, v in row.items()})
        name = f"calls-{report.start.date()}-{(report.end - timedelta(days=1)).date()}.csv"
        return Response(
            out.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # --- realtime -----------------------------------------------------------------------------------------------

    lookup = CallerIdLookup(runtime.engine, settings.default_region)
    pops = PopBuilder(lookup)
    app.extensions["pops"] = pops
    if sio is not None:
        notifier = Notifier(sio, pops, pbx=pbx, wrapup_seconds=settings.wrapup_seconds)
        if notify:  # a web-only worker leaves the telephony events to the CTI process, which emits via Redis
            notifier.attach(runtime.bus)
        app.extensions["notifier"] = notifier
        app.extensions["sockets"] = Sockets(sio, app, runtime, notifier, pbx)

    @app.after_serving
    async def _close_lookup() -> None:
        await pops.close()
        if "notifier" in app.extensions:
            await app.extensions["notifier"].flush()
        await lookup.close()
        if sio is not None and runtime.settings.redis_url:
            await close_manager(sio.manager)

    return app


def make_socketio(runtime: Runtime) -> socketio.AsyncServer:
    """The Socket.IO server: same-origin only; with Redis set, rooms span every web worker and the CTI process."""
    settings = runtime.settings
    manager = (
        socketio.AsyncRedisManager(settings.redis_url, channel=settings.socketio_channel)
        if settings.redis_url
        else None
    )
    return socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=None, client_manager=manager)


async def close_manager(manager: Any) -> None:
    """Stop a Redis Socket.IO manager's listener and close its connections (python-socketio has no close)."""
    listener = getattr(manager, "thread", None)
    if isinstance(listener, asyncio.Task) and not listener.done():
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener
    for resource in (getattr(manager, "pubsub", None), getattr(manager, "redis", None)):
        if resource is not None:
            with contextlib.suppress(Exception):
                await resource.aclose()


def remote_emitter(runtime: Runtime) -> socketio.AsyncRedisManager:
    """For a process without browsers (`crm cti`): emits into the web workers' rooms through Redis."""
    settings = runtime.settings
    if not settings.redis_url:
        raise ValueError("a remote emitter needs CRM_REDIS_URL")
    return socketio.AsyncRedisManager(settings.redis_url, channel=settings.socketio_channel, write_only=True)


def create_asgi(
    runtime: Runtime,
    *,
    pbx: PbxAdapter | None = None,
    voice: tuple[dict[str, Flow], CrmContext] | None = None,
    notify: bool = True,
) -> tuple[Any, socketio.AsyncServer]:
    """The app and Socket.IO server as one ASGI application."""
    sio = make_socketio(runtime)
    app = create_app(runtime, pbx=pbx, sio=sio, voice=voice, notify=notify)
    return socketio.ASGIApp(sio, other_asgi_app=app, socketio_path="socket.io"), sio
