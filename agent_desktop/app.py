"""The Quart application factory: pages, HTTP API, auth, and the Socket.IO server mounted beside them."""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import socketio
from pydantic import ValidationError as PydanticValidationError
from quart import Quart, Response, abort, render_template, request
from werkzeug.exceptions import HTTPException

from agent_desktop.api import install_api
from agent_desktop.auth import SESSION_COOKIE, SignedInUsers, csrf_token, install_session_check
from agent_desktop.cti_edge import GenericCtiEdge
from agent_desktop.notifier import Notifier
from agent_desktop.pop import PopBuilder
from agent_desktop.routes import admin as admin_routes
from agent_desktop.routes import auth as auth_routes
from agent_desktop.routes import calls as calls_routes
from agent_desktop.routes import campaigns as campaigns_routes
from agent_desktop.routes import customers as customers_routes
from agent_desktop.routes import desktop as desktop_routes
from agent_desktop.routes import intake as intake_routes
from agent_desktop.routes import integrations as integrations_routes
from agent_desktop.routes import kb as kb_routes
from agent_desktop.routes import recordings as recordings_routes
from agent_desktop.routes import reports as reports_routes
from agent_desktop.routes import sms as sms_routes
from agent_desktop.routes import tickets as tickets_routes
from agent_desktop.routes import webhooks as webhooks_routes
from agent_desktop.routes.common import SECURITY_HEADERS, refuse_control_characters
from agent_desktop.runtime import Runtime
from agent_desktop.sockets import Sockets
from agent_desktop.voice_webhooks import voice_blueprint
from crm_core.customers.import_jobs import ImportWorker
from crm_core.customers.lookup import CallerIdLookup
from crm_core.errors import CrmError
from crm_core.inputs import first_problem
from cti_bridge.adapter import PbxAdapter
from ivr.engine import CrmContext
from ivr.flow import Flow
from recordings.store import RecordingStore, archive_from_settings

_TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict", 422: "Check what you entered"}


def _wants_page() -> bool:
    """A page load by a person (not the API, not an htmx swap, not a script asking for JSON)."""
    return (
        request.method == "GET"
        and not request.path.startswith("/api/")
        and request.headers.get("HX-Request") != "true"
        and "text/html" in request.headers.get("Accept", "")  # a browser asks for HTML; a script for anything
    )


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
        try:
            path = (folder / filename).resolve()
            if folder not in path.parents or not path.is_file():
                return None  # outside the folder (../) or missing
            return path.read_bytes()
        except (OSError, ValueError):  # a name too long for the file system, or with a NUL: no such file either
            return None


def create_app(
    runtime: Runtime,
    *,
    pbx: PbxAdapter | None = None,
    sio: socketio.AsyncServer | None = None,
    voice: tuple[dict[str, Flow], CrmContext] | None = None,
    notify: bool = True,
    import_worker: ImportWorker | None = None,
    sms_outbox: Any = None,
    webhooks: Any = None,
) -> Quart:
    app = CrmQuart(__name__)
    app.secret_key = runtime.secret_key
    app.config.update(
        SESSION_COOKIE_SECURE=runtime.settings.secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    app.extensions["runtime"] = runtime
    app.extensions["pbx"] = pbx
    app.extensions["import_worker"] = import_worker  # woken when an admin uploads a file
    signed_in = SignedInUsers(runtime.sessions)
    signed_in.attach(runtime.bus)
    install_session_check(app, signed_in)
    app.extensions["sms_outbox"] = sms_outbox  # woken when an agent replies or a HELP is answered
    app.extensions["webhooks"] = webhooks  # woken when an admin replays a dead letter
    app.jinja_env.globals["csrf_token"] = csrf_token
    settings = runtime.settings
    app.extensions["recordings"] = RecordingStore(settings.recordings_folder)
    app.extensions["recording_archive"] = archive_from_settings(settings)
    if voice is not None:
        token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
        app.register_blueprint(
            voice_blueprint(voice[0], voice[1], auth_token=token, public_base_url=settings.public_base_url)
        )

    @app.errorhandler(CrmError)
    async def _domain_error(error: CrmError) -> Any:
        if _wants_page():  # a person's browser on a page: the error page, not raw JSON
            page = SimpleNamespace(
                code=error.http_status, name=_TITLES.get(error.http_status, "Not done"), description=error.message
            )
            return await render_template("error.html", error=page), error.http_status
        return error.to_dict(), error.http_status

    @app.errorhandler(PydanticValidationError)
    async def _bad_fields(error: PydanticValidationError) -> tuple[dict[str, Any], int]:
        field, sentence = first_problem(error)  # one sentence naming the field, never the input echoed back
        return {"code": "validation_failed", "message": sentence, "details": {"field": field}}, 400

    app.before_request(refuse_control_characters)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Any:
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
            return {"code": error.name.lower().replace(" ", "_"), "message": error.description}, error.code
        return await render_template("error.html", error=error), error.code

    @app.after_request
    async def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        snapshot = pbx.snapshot() if pbx is not None else None
        return {"status": "ok", "pbx_connected": bool(snapshot and snapshot.connected)}

    for routes in (
        auth_routes,
        desktop_routes,
        customers_routes,
        calls_routes,
        tickets_routes,
        reports_routes,
        admin_routes,
        recordings_routes,
        sms_routes,
        kb_routes,
        intake_routes,
        campaigns_routes,
        integrations_routes,
        webhooks_routes,
    ):
        app.register_blueprint(routes.blueprint)
    install_api(app, runtime)  # /api/v1 for integrations, its OpenAPI document, and the admin's token screen

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
    import_worker: ImportWorker | None = None,
    sms_outbox: Any = None,
    webhooks: Any = None,
) -> tuple[Any, socketio.AsyncServer]:
    """The app and Socket.IO server as one ASGI application."""
    sio = make_socketio(runtime)
    app = create_app(
        runtime,
        pbx=pbx,
        sio=sio,
        voice=voice,
        notify=notify,
        import_worker=import_worker,
        sms_outbox=sms_outbox,
        webhooks=webhooks,
    )
    # pushed call events take the generic CTI fast path; every other request goes to the app
    return socketio.ASGIApp(sio, other_asgi_app=GenericCtiEdge(app), socketio_path="socket.io"), sio
