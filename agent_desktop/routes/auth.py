"""Signing in and out, the one-time password change, the account page, and the landing redirect per role."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, redirect, render_template, request, session, url_for

from agent_desktop.auth import CSRF_KEY, check_csrf, current_actor, roles_allowed
from agent_desktop.routes.common import actor, runtime
from crm_core.errors import CrmError
from crm_core.users.models import Role, User
from crm_core.users.service import authenticate, set_password

blueprint = Blueprint("auth", __name__)

HOME = {
    Role.AGENT: "desktop.desktop",
    Role.SUPERVISOR: "reports.wallboard",
    Role.ADMIN: "reports.wallboard",
    Role.MARKETER: "auth.account",
}


@blueprint.get("/")
async def index() -> Any:
    signed_in = current_actor()
    if signed_in is None:
        return redirect(url_for("auth.login"))
    return redirect(url_for(HOME[signed_in.role]))


@blueprint.route("/login", methods=["GET", "POST"])
async def login() -> Any:
    error = None
    if request.method == "POST":
        form = await request.form
        check_csrf(form.get(CSRF_KEY))
        try:
            async with runtime().unit_of_work() as db:
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
                return redirect(url_for("auth.password"))
            return redirect(url_for(HOME[Role(user.role)]))
    return await render_template("login.html", error=error), 401 if error else 200


@blueprint.post("/logout")
async def logout() -> Any:
    form = await request.form
    check_csrf(form.get(CSRF_KEY))
    session.clear()
    return redirect(url_for("auth.login"))


@blueprint.route("/password", methods=["GET", "POST"])
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
                async with runtime().unit_of_work() as db:
                    me = actor()
                    await set_password(
                        session=db, actor=me, user_id=me.user_id or "", password=form.get("password", "")
                    )
                    user = await db.get(User, me.user_id)
                    if user is not None:
                        user.must_change_password = False
            except CrmError as exc:
                error = exc.message
            else:
                session["must_change_password"] = False
                return redirect(url_for("auth.index"))
    return await render_template("password.html", error=error), 400 if error else 200


@blueprint.get("/account")
@roles_allowed(Role.AGENT, Role.SUPERVISOR, Role.MARKETER)
async def account() -> Any:
    return await render_template("account.html", me=dict(session))
