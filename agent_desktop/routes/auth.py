"""Signing in (throttled) and out, changing one's password, the account page, the landing redirect per role, and the
admin's unlock of an account that failed sign-ins locked."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, make_response, redirect, render_template, request, session, url_for

from agent_desktop.auth import (
    CSRF_KEY,
    VERSION_KEY,
    check_csrf,
    current_actor,
    current_standing,
    roles_allowed,
    signed_in_users,
)
from agent_desktop.routes.common import actor, runtime
from crm_core.db import utcnow
from crm_core.errors import CrmError
from crm_core.users.errors import SignInThrottled
from crm_core.users.logins import begin_sign_in, finish_sign_in, forget_failures, unlock_user
from crm_core.users.models import Role
from crm_core.users.service import check_password_strength, get_user, set_password, sign_out

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
    error, status = None, 200
    if request.method == "POST":
        form = await request.form
        check_csrf(form.get(CSRF_KEY))
        username, password = form.get("username", ""), form.get("password", "")
        if not username.strip() or not password:
            return await render_template("login.html", error="Enter your username and password."), 400
        now, address = utcnow(), request.remote_addr
        try:
            async with runtime().unit_of_work() as db:  # committed before the (slow) password check
                await begin_sign_in(session=db, username=username, address=address, now=now)
        except SignInThrottled as refused:
            response = await make_response(await render_template("login.html", error=refused.message), 429)
            response.headers["Retry-After"] = str(refused.retry_after)
            return response
        async with runtime().unit_of_work() as db:
            user = await finish_sign_in(session=db, username=username, password=password, address=address, now=now)
        if user is None:
            error, status = "Wrong username or password.", 401
        else:
            session.clear()
            session.update(
                {
                    "user_id": user.id,
                    VERSION_KEY: user.session_version,
                    "role": user.role,
                    "extension": user.extension,
                    "name": user.display_name,
                    "queues": list(user.queues or []),
                }
            )
            session.permanent = True
            if user.must_change_password:
                return redirect(url_for("auth.password"))
            return redirect(url_for(HOME[Role(user.role)]))
    return await render_template("login.html", error=error), status


@blueprint.post("/logout")
async def logout() -> Any:
    """Signing out ends every session of the user (all their browsers and sockets), not only this cookie."""
    form = await request.form
    check_csrf(form.get(CSRF_KEY))
    me = current_actor()
    if me is not None and me.user_id:
        async with runtime().unit_of_work() as db:
            await sign_out(session=db, actor=me, user_id=me.user_id)
    session.clear()
    return redirect(url_for("auth.login"))


@blueprint.route("/password", methods=["GET", "POST"])
@roles_allowed(Role.AGENT, Role.SUPERVISOR, Role.MARKETER)
async def password() -> Any:
    standing = current_standing()
    forced = bool(standing and standing.must_change_password)
    error = None
    if request.method == "POST":
        form = await request.form
        check_csrf(form.get(CSRF_KEY))
        if form.get("password") != form.get("again"):
            error = "The two new passwords differ."
        else:
            me = actor()
            try:
                check_password_strength(form.get("password", ""))  # before counting an attempt
                # the current password is guessed no faster here than on the sign-in page
                async with runtime().unit_of_work() as db:
                    username = (await get_user(session=db, user_id=me.user_id or "")).username
                    await begin_sign_in(session=db, username=username, address=request.remote_addr, now=utcnow())
                async with runtime().unit_of_work() as db:
                    user = await set_password(
                        session=db,
                        actor=me,
                        user_id=me.user_id or "",
                        password=form.get("password", ""),
                        current_password=form.get("current", ""),
                    )
                    await forget_failures(session=db, username=username)
                    version = user.session_version
            except SignInThrottled as refused:
                response = await make_response(
                    await render_template("password.html", error=refused.message, forced=forced), 429
                )
                response.headers["Retry-After"] = str(refused.retry_after)
                return response
            except CrmError as exc:
                error = exc.message
            else:
                session[VERSION_KEY] = version  # this browser stays signed in; every other session has ended
                # the revocation event reaches the cache after this answer may have been read: forget now, so the
                # next request (the redirect) reads the new version instead of refusing this very browser
                signed_in_users().forget(me.user_id or "")
                return redirect(url_for("auth.index"))
    return await render_template("password.html", error=error, forced=forced), 400 if error else 200


@blueprint.post("/api/admin/users/<user_id>/unlock")
@roles_allowed(api=True)
async def unlock(user_id: str) -> Any:
    """An admin lifts the delays and lock that failed sign-ins put on an account."""
    async with runtime().unit_of_work() as db:
        lifted = await unlock_user(session=db, actor=actor(), user_id=user_id)
    return {"ok": True, "user_id": user_id, "lifted": lifted}


@blueprint.get("/account")
@roles_allowed(Role.AGENT, Role.SUPERVISOR, Role.MARKETER)
async def account() -> Any:
    return await render_template("account.html", me=dict(session))
