"""Signing in: growing delays and a lock per account and per address, the admin's unlock, the audit of every
outcome, and the session version that every sign-out, password, role or standing change moves on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.models import AuditEntry
from crm_core.db import PENDING_EVENTS_KEY
from crm_core.errors import PermissionDenied
from crm_core.users.errors import ExtensionTaken, InvalidCredentials, SignInThrottled, WeakPassword
from crm_core.users.events import RevokeReason, UserSessionsRevoked
from crm_core.users.logins import (
    ACCOUNT_POLICY,
    ADDRESS_POLICY,
    ThrottlePolicy,
    begin_sign_in,
    finish_sign_in,
    unlock_address,
    unlock_user,
)
from crm_core.users.models import Role, User
from crm_core.users.service import (
    SYSTEM,
    Actor,
    activate_user,
    change_role,
    create_user,
    deactivate_user,
    set_password,
    sign_out,
)

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
SECRET = "the right password"
WRONG = "a wrong password 123"
ADMIN = Actor(user_id="admin-id", role=Role.ADMIN)


async def attempt(
    session: AsyncSession,
    password: str,
    at: datetime,
    username: str = "ann",
    address: str = "10.0.0.1",
    policy: ThrottlePolicy = ADDRESS_POLICY,
) -> str | int:
    """One sign-in as the login page makes it: 'ok', 'wrong', or the seconds to wait when refused."""
    try:
        await begin_sign_in(session=session, username=username, address=address, now=at)
    except SignInThrottled as refused:
        unit = "second" if refused.retry_after == 1 else "seconds"
        assert refused.message == f"Too many failed sign-ins; try again in {refused.retry_after} {unit}."
        assert refused.http_status == 429
        return refused.retry_after
    user = await finish_sign_in(
        session=session, username=username, password=password, address=address, now=at, address_policy=policy
    )
    return "ok" if user is not None else "wrong"


@pytest.fixture
async def ann(session: AsyncSession) -> User:
    return await create_user(
        session=session, actor=SYSTEM, username="ann", password=SECRET, role=Role.AGENT, extension="1001"
    )


async def test_growing_delays_then_a_lock_that_an_admin_lifts(session: AsyncSession, ann: User) -> None:
    now = T0
    assert [await attempt(session, WRONG, now) for _ in range(5)] == ["wrong"] * 5
    waits = []
    for _ in range(5):  # failures 5..9: each makes the next attempt wait twice as long
        wait = await attempt(session, SECRET, now)  # even the right password is refused while waiting
        assert isinstance(wait, int)
        waits.append(wait)
        assert await attempt(session, WRONG, now + timedelta(seconds=wait, milliseconds=-1)) == 1  # not a moment early
        now += timedelta(seconds=wait)
        assert await attempt(session, WRONG, now) == "wrong"
    assert waits == [1, 2, 4, 8, 16]
    # the tenth failure locks the account for 15 minutes, whatever password comes
    assert await attempt(session, SECRET, now) == 15 * 60
    assert await attempt(session, SECRET, now + timedelta(minutes=14, seconds=59)) == 1
    # another address does not help: the account is locked
    assert await attempt(session, SECRET, now + timedelta(minutes=1), address="10.9.9.9") == 14 * 60
    with pytest.raises(PermissionDenied):
        await unlock_user(session=session, actor=Actor(user_id="x", role=Role.SUPERVISOR), user_id=ann.id)
    assert await unlock_user(session=session, actor=ADMIN, user_id=ann.id) is True
    assert await attempt(session, SECRET, now + timedelta(minutes=1)) == "ok"
    assert await unlock_user(session=session, actor=ADMIN, user_id=ann.id) is False  # nothing left to lift


async def test_the_lock_ends_by_itself_and_the_count_starts_over(session: AsyncSession, ann: User) -> None:
    # an attempt is counted as a failure when it starts (a crashed or abandoned one stays counted)
    now = T0
    for _ in range(10):
        await begin_sign_in(session=session, username="ann", address="10.0.0.1", now=now)
        now += ACCOUNT_POLICY.delay_after(10) or timedelta(0)  # 32 s: past any delay before the lock
    now -= timedelta(seconds=32)
    assert await attempt(session, SECRET, now) == 900
    now += timedelta(minutes=15)
    for _ in range(4):  # the count started over: four free attempts, a fifth that costs a delay
        await begin_sign_in(session=session, username="ann", address="10.0.0.1", now=now)
    assert await attempt(session, WRONG, now) == "wrong"
    assert await attempt(session, SECRET, now) == 1


async def test_a_right_password_forgets_the_failures(session: AsyncSession, ann: User) -> None:
    for _ in range(4):
        assert await attempt(session, WRONG, T0) == "wrong"
    assert await attempt(session, SECRET, T0) == "ok"
    for _ in range(4):
        assert await attempt(session, WRONG, T0) == "wrong"
    await begin_sign_in(session=session, username="ann", address="10.0.0.1", now=T0)  # the fifth: free
    with pytest.raises(SignInThrottled):
        await begin_sign_in(session=session, username="ann", address="10.0.0.1", now=T0)


async def test_old_failures_are_forgotten(session: AsyncSession, ann: User) -> None:
    for _ in range(4):
        assert await attempt(session, WRONG, T0) == "wrong"
    later = T0 + ACCOUNT_POLICY.window
    assert [await attempt(session, WRONG, later) for _ in range(2)] == ["wrong", "wrong"]
    assert await attempt(session, SECRET, later) == "ok"  # six failures, but not six within the window


async def test_attempts_in_flight_count_before_their_password_is_checked(session: AsyncSession, ann: User) -> None:
    # Five guesses sent at once all pass the gate and are counted at once; a sixth has to wait,
    # even though none of the five has been checked yet.
    for _ in range(5):
        await begin_sign_in(session=session, username="ann", address="10.0.0.1", now=T0)
    with pytest.raises(SignInThrottled) as refused:
        await begin_sign_in(session=session, username="ann", address="10.0.0.1", now=T0)
    assert refused.value.retry_after == 1


async def test_unknown_usernames_are_throttled_alike(session: AsyncSession, ann: User) -> None:
    assert [await attempt(session, WRONG, T0, username="Ghost ") for _ in range(5)] == ["wrong"] * 5
    assert await attempt(session, WRONG, T0, username="ghost") == 1
    assert await attempt(session, SECRET, T0) == "ok"  # someone else's failures cost ann nothing


async def test_one_address_trying_many_accounts(session: AsyncSession, ann: User) -> None:
    # the product's policy for addresses, scaled down (each failure costs a real password check)
    policy = ThrottlePolicy(free_failures=4, lock_after=8, lock_for=timedelta(minutes=15), window=timedelta(minutes=15))
    here, elsewhere = "203.0.113.7", "198.51.100.1"
    for i in range(4):  # four accounts, one guess each: no account is throttled, the address is
        assert await attempt(session, WRONG, T0, username=f"user{i}", address=here, policy=policy) == "wrong"
    assert await attempt(session, SECRET, T0, address=here) == 1
    assert await attempt(session, SECRET, T0, address=elsewhere) == "ok"  # another address is not slowed
    now, waits = T0, []
    while not waits or waits[-1] < 60:
        now += timedelta(seconds=1 if not waits else waits[-1])
        assert await attempt(session, WRONG, now, username=f"x{len(waits)}", address=here, policy=policy) == "wrong"
        wait = await attempt(session, SECRET, now, address=here)
        assert isinstance(wait, int)
        waits.append(wait)
    assert waits == [2, 4, 8, 900]  # the eighth failure of the address locks it
    assert await unlock_address(session=session, actor=ADMIN, address=here) is True
    assert await attempt(session, SECRET, now, address=here) == "ok"


def test_the_products_policies() -> None:
    assert [ACCOUNT_POLICY.delay_after(n) for n in range(4, 11)] == [None] + [
        timedelta(seconds=s) for s in (1, 2, 4, 8, 16, 32)
    ]
    assert (ACCOUNT_POLICY.lock_after, ACCOUNT_POLICY.lock_for) == (10, timedelta(minutes=15))
    # many agents sign in from one address: it takes many more failures to slow it, and it is never slowed much
    assert ADDRESS_POLICY.delay_after(19) is None and ADDRESS_POLICY.delay_after(20) == timedelta(seconds=1)
    assert ADDRESS_POLICY.delay_after(99) == timedelta(seconds=30) and ADDRESS_POLICY.lock_after == 100


async def test_every_sign_in_is_audited_without_the_password(session: AsyncSession, ann: User) -> None:
    await create_user(session=session, actor=SYSTEM, username="gone", password=SECRET, role=Role.AGENT)
    gone = await session.scalar(select(User).where(User.username == "gone"))
    assert gone is not None
    await deactivate_user(session=session, actor=ADMIN, user_id=gone.id)
    assert await attempt(session, WRONG, T0) == "wrong"
    assert await attempt(session, SECRET, T0, username="nobody", address="192.0.2.1") == "wrong"
    assert await attempt(session, SECRET, T0, username="gone") == "wrong"
    assert await attempt(session, SECRET, T0, username=" ANN", address="192.0.2.2") == "ok"
    entries = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "login")))
    seen = [
        (e.entity_type, e.entity_id, e.actor_id, (e.after or {}).get("outcome"), (e.after or {}).get("reason"))
        for e in entries
    ]
    assert len(seen) == 4
    assert set(seen) == {
        ("user", ann.id, None, "failed", "wrong_password"),
        ("username", "nobody", None, "failed", "unknown_user"),
        ("user", gone.id, None, "failed", "deactivated"),
        ("user", ann.id, ann.id, "succeeded", None),
    }
    addresses = {(e.after or {})["address"] for e in entries}
    assert addresses == {"10.0.0.1", "192.0.2.1", "192.0.2.2"}
    for entry in entries:
        assert SECRET not in str(entry.after) and WRONG not in str(entry.after)
        assert "password" not in (entry.after or {})


def revoked(session: AsyncSession) -> list[tuple[str, RevokeReason]]:
    return [
        (e.user_id, e.reason) for e in session.info.get(PENDING_EVENTS_KEY, []) if isinstance(e, UserSessionsRevoked)
    ]


async def test_what_ends_every_session(session: AsyncSession, ann: User) -> None:
    me = Actor.of(ann)
    assert ann.session_version == 1
    await sign_out(session=session, actor=me, user_id=ann.id)
    assert ann.session_version == 2
    with pytest.raises(InvalidCredentials):  # one's own password needs the current one
        await set_password(session=session, actor=me, user_id=ann.id, password="a brand new password")
    with pytest.raises(InvalidCredentials):
        await set_password(
            session=session, actor=me, user_id=ann.id, password="a brand new password", current_password=WRONG
        )
    with pytest.raises(WeakPassword):
        await set_password(session=session, actor=me, user_id=ann.id, password=SECRET, current_password=SECRET)
    await set_password(
        session=session, actor=me, user_id=ann.id, password="a brand new password", current_password=SECRET
    )
    assert (ann.session_version, ann.must_change_password) == (3, False)
    await set_password(session=session, actor=ADMIN, user_id=ann.id, password="one-time password")  # a reset
    assert (ann.session_version, ann.must_change_password) == (4, True)
    with pytest.raises(PermissionDenied):  # nobody but an admin touches someone else's account
        await sign_out(session=session, actor=Actor(user_id="other", role=Role.SUPERVISOR), user_id=ann.id)
    with pytest.raises(PermissionDenied):
        await change_role(
            session=session,
            actor=Actor(user_id="x", role=Role.SUPERVISOR),
            user_id=ann.id,
            role=Role.ADMIN,
            extension=None,
        )
    await change_role(session=session, actor=ADMIN, user_id=ann.id, role=Role.AGENT, extension="1001")
    assert ann.session_version == 4  # nothing changed, nothing ends
    await change_role(session=session, actor=ADMIN, user_id=ann.id, role=Role.SUPERVISOR, extension="9001")
    assert (ann.role, ann.extension, ann.session_version) == ("supervisor", "9001", 5)
    await change_role(
        session=session, actor=ADMIN, user_id=ann.id, role=Role.SUPERVISOR, extension="9001", queues=["sales"]
    )
    assert ann.session_version == 6
    await create_user(session=session, actor=SYSTEM, username="bo", password=SECRET, role=Role.AGENT, extension="1002")
    with pytest.raises(ExtensionTaken):
        await change_role(session=session, actor=ADMIN, user_id=ann.id, role=Role.AGENT, extension="1002")
    with pytest.raises(PermissionDenied):
        await deactivate_user(session=session, actor=me, user_id=ann.id)
    await deactivate_user(session=session, actor=ADMIN, user_id=ann.id)
    await deactivate_user(session=session, actor=ADMIN, user_id=ann.id)  # twice: one change
    assert (ann.is_active, ann.session_version) == (False, 7)
    await activate_user(session=session, actor=ADMIN, user_id=ann.id)
    assert (ann.is_active, ann.session_version) == (True, 7)
    assert revoked(session) == [
        (ann.id, RevokeReason.SIGNED_OUT),
        (ann.id, RevokeReason.PASSWORD_CHANGED),
        (ann.id, RevokeReason.PASSWORD_CHANGED),
        (ann.id, RevokeReason.ROLE_CHANGED),
        (ann.id, RevokeReason.ROLE_CHANGED),
        (ann.id, RevokeReason.DEACTIVATED),
    ]
    audit = list(await session.scalars(select(AuditEntry).where(AuditEntry.entity_id == ann.id)))
    assert sorted(a.action for a in audit).count("logout") == 1
    assert all("password" not in str(a.before) for a in audit)
