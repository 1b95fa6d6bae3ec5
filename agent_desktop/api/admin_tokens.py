"""Admin → API tokens: issue a scoped token (its secret shown once), see when each was last used, revoke one."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template, request

from agent_desktop.auth import roles_allowed
from agent_desktop.routes.common import actor, runtime
from crm_core.errors import ValidationFailed
from crm_core.tokens.service import DEFAULT_RATE_PER_MINUTE, SCOPES, create_token, list_tokens, revoke_token

blueprint = Blueprint("admin_tokens", __name__, url_prefix="/admin")


async def _tokens_table(*, secret: str = "", created: str = "") -> Any:
    async with runtime().sessions() as db:
        tokens = await list_tokens(session=db, actor=actor())
    return await render_template("admin/tokens_table.html", tokens=tokens, secret=secret, created=created)


@blueprint.get("/tokens")
@roles_allowed()
async def tokens() -> Any:
    async with runtime().sessions() as db:
        rows = await list_tokens(session=db, actor=actor())
    return await render_template(
        "admin/tokens.html",
        tokens=rows,
        scopes=SCOPES,
        secret="",
        created="",
        default_rate=DEFAULT_RATE_PER_MINUTE,
    )


@blueprint.post("/tokens")
@roles_allowed(api=True)
async def create_token_row() -> Any:
    """Issue a token; its secret is in this one answer and never again (only its hash is kept)."""
    form = await request.form
    rate_text = (form.get("rate_per_minute") or str(DEFAULT_RATE_PER_MINUTE)).strip()
    if not rate_text.isdigit() or len(rate_text) > 6:
        raise ValidationFailed("The rate is a whole number of requests a minute.", field="rate_per_minute")
    async with runtime().unit_of_work() as db:  # a refusal answers one sentence, shown by the form; nothing kept
        token, secret = await create_token(
            session=db,
            actor=actor(),
            name=form.get("name", ""),
            scopes=form.getlist("scopes"),
            rate_per_minute=int(rate_text),
        )
        name = token.name
    return await _tokens_table(secret=secret, created=name)


@blueprint.post("/tokens/<token_id>/revoke")
@roles_allowed(api=True)
async def revoke_token_row(token_id: str) -> Any:
    async with runtime().unit_of_work() as db:
        await revoke_token(session=db, actor=actor(), token_id=token_id)
    return await _tokens_table()
