"""The Quart application factory: pages, HTTP API, auth, and the Socket.IO server mounted beside them."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import socketio
from quart import Quart, Response, abort, redirect, render_template, request, session, url_for

from agent_desktop.runtime import Runtime
from crm_core.errors import CrmError
from crm_core.users.service import authenticate
from cti_bridge.adapter import PbxAdapter

CSRF_KEY = "csrf_token"


def csrf_token() -> str:
    token = session.get(CSRF_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return str(token)


def check_csrf(form_token: str | None) -> None:
    expected = session.get(CSRF_KEY)
    if not expected or not form_token or not secrets.compare_digest(str(expected), form_token):
        abort(400, "The form expired; reload the page and try again.")


def create_app(runtime: Runtime, *, pbx: PbxAdapter | None = None) -> Quart:
    app = Quart(__name__)
    app.secret_key = runtime.secret_key
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="crm_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
    )
    app.extensions["runtime"] = runtime
    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.errorhandler(CrmError)
    async def _domain_error(error: CrmError) -> tuple[dict[str, Any], int]:
        return error.to_dict(), error.http_status

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    async def index() -> Response:
        if not session.get("user_id"):
            return redirect(url_for("login"))  # type: ignore[return-value]
        return redirect(url_for("login"))  # type: ignore[return-value]

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
                session["user_id"] = user.id
                session["role"] = user.role
                session.permanent = True
                return redirect(url_for("index"))
        return await render_template("login.html", error=error), 401 if error else 200

    return app


def create_asgi(runtime: Runtime, *, pbx: PbxAdapter | None = None) -> tuple[Any, socketio.AsyncServer]:
    """The app and Socket.IO server as one ASGI application."""
    app = create_app(runtime, pbx=pbx)
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=[])
    return socketio.ASGIApp(sio, other_asgi_app=app), sio
