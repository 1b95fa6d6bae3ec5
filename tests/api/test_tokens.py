"""API tokens in the database (SQLite and PostgreSQL): issued by admins only, stored as a hash with a short
prefix, scopes checked, names unique, revocation holds; and the token buckets, in process and in real Redis."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_desktop.api.ratelimit import InProcessBuckets, RedisBuckets, retry_after_header
from crm_core.audit.models import AuditEntry
from crm_core.errors import Conflict, PermissionDenied, ValidationFailed
from crm_core.tokens.errors import InvalidScopes, InvalidToken, MissingScope
from crm_core.tokens.models import ApiToken
from crm_core.tokens.service import (
    TOKEN_PREFIX,
    authenticate_token,
    create_token,
    hash_secret,
    list_tokens,
    record_token_use,
    revoke_token,
)
from crm_core.users.models import Role
from crm_core.users.service import SYSTEM, Actor
from tests.conftest import REDIS_URL


async def test_issue_authenticate_revoke(session: AsyncSession) -> None:
    token, secret = await create_token(
        session=session, actor=SYSTEM, name="Billing sync", scopes=["customers:read", " calls:read", "customers:read"]
    )
    assert secret.startswith(TOKEN_PREFIX) and len(secret) >= 40
    assert token.secret_hash == hash_secret(secret) and token.prefix == secret[:12]
    assert token.scopes == ["calls:read", "customers:read"] and token.rate_per_minute == 600
    stored = (await session.execute(select(ApiToken.__table__))).one()
    assert secret not in repr(tuple(stored))  # only the hash and the short prefix are kept

    principal = await authenticate_token(session=session, secret=secret)
    assert (principal.token_id, principal.name) == (token.id, "Billing sync")
    assert principal.actor.role is Role.SUPERVISOR and principal.actor.user_id is None
    principal.require("calls:read")
    with pytest.raises(MissingScope):
        principal.require("sms:write")
    for wrong in (None, "", secret[:-1] + ("A" if secret[-1] != "A" else "B"), "Bearer " + secret, "x" * 500):
        with pytest.raises(InvalidToken):
            await authenticate_token(session=session, secret=wrong)

    await record_token_use(session=session, principal=principal, method="GET", path="/api/v1/calls", status=200)
    await revoke_token(session=session, actor=SYSTEM, token_id=token.id)
    await revoke_token(session=session, actor=SYSTEM, token_id=token.id)  # twice is once
    with pytest.raises(InvalidToken):
        await authenticate_token(session=session, secret=secret)
    trail = [
        (e.action, (e.after or {}).get("token") or (e.after or {}).get("name"))
        for e in await session.scalars(
            select(AuditEntry).where(AuditEntry.entity_id == token.id).order_by(AuditEntry.at)
        )
    ]
    assert trail == [("create", "Billing sync"), ("read", "Billing sync"), ("update", "Billing sync")]
    assert [t.name for t in await list_tokens(session=session, actor=SYSTEM)] == ["Billing sync"]


async def test_only_admins_and_only_good_input(session: AsyncSession) -> None:
    supervisor = Actor(user_id=None, role=Role.SUPERVISOR)
    with pytest.raises(PermissionDenied):
        await create_token(session=session, actor=supervisor, name="x", scopes=["users:read"])
    with pytest.raises(PermissionDenied):
        await list_tokens(session=session, actor=supervisor)
    for name, scopes, rate, error in (
        ("ok", ["customers:delete"], 10, InvalidScopes),
        ("ok", [], 10, InvalidScopes),
        ("", ["users:read"], 10, ValidationFailed),
        ("bad\nname", ["users:read"], 10, ValidationFailed),
        ("ok", ["users:read"], 0, ValidationFailed),
    ):
        with pytest.raises(error):
            await create_token(session=session, actor=SYSTEM, name=name, scopes=scopes, rate_per_minute=rate)
    await create_token(session=session, actor=SYSTEM, name="Twice", scopes=["users:read"])
    with pytest.raises(Conflict):
        await create_token(session=session, actor=SYSTEM, name="Twice", scopes=["users:read"])
    assert await session.scalar(select(ApiToken.name).where(ApiToken.name == "ok")) is None


async def test_in_process_bucket_refills_with_time() -> None:
    now = [100.0]
    buckets = InProcessBuckets(clock=lambda: now[0])
    assert [(await buckets.take("a", 6)).allowed for _ in range(7)] == [True] * 6 + [False]
    refused = await buckets.take("a", 6)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(10.0)  # 6 a minute: one per 10 s
    assert retry_after_header(refused) == "10"
    assert (await buckets.take("b", 6)).allowed  # another token, another bucket
    now[0] += 10.0
    assert (await buckets.take("a", 6)).allowed
    assert not (await buckets.take("a", 6)).allowed


@pytest.mark.redis
async def test_redis_buckets_are_shared_by_every_worker() -> None:
    prefix = f"crm-test:{uuid.uuid4().hex}:"
    first, second = RedisBuckets(REDIS_URL, prefix=prefix), RedisBuckets(REDIS_URL, prefix=prefix)
    try:
        taken = [(await worker.take("token-1", 3)).allowed for worker in (first, second, first)]
        assert taken == [True, True, True]
        refused = await second.take("token-1", 3)
        assert not refused.allowed and 0 < refused.retry_after_s <= 20.0
        assert (await first.take("token-2", 3)).allowed
    finally:
        await first.close()
        await second.close()
