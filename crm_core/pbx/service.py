"""PBX users: admins map a PBX's user names (or extensions) to CRM users; call events name agents through them.

A name a PBX sends is matched, case-insensitively, first against the mappings of that PBX, then against the CRM
users' own extensions and user names (so a PBX that already sends the CRM's extensions needs no mapping at all).
Only active users with an extension can take calls, so only they are ever returned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.audit.service import record_audit
from crm_core.errors import ValidationFailed
from crm_core.pbx.errors import MappingNotFound, PbxUserTaken, UnknownPbx
from crm_core.pbx.models import PbxUserMapping
from crm_core.users.models import Role, User
from crm_core.users.service import Actor, require_role

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def pbx_user_key(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass(frozen=True, slots=True)
class MappingRow:
    id: str
    pbx: str
    pbx_user: str
    user_id: str
    username: str
    extension: str | None


async def list_mappings(*, session: AsyncSession, actor: Actor) -> list[MappingRow]:
    require_role(actor)
    rows = await session.execute(
        select(PbxUserMapping, User.username, User.extension)
        .join(User, User.id == PbxUserMapping.user_id)
        .order_by(PbxUserMapping.pbx, PbxUserMapping.pbx_user_key)
    )
    return [
        MappingRow(m.id, m.pbx, m.pbx_user, m.user_id, username, extension) for m, username, extension in rows.all()
    ]


def check_pbx_user(pbx_user: str) -> str:
    name = " ".join((pbx_user or "").split())
    if not name:
        raise ValidationFailed("Give the PBX's user name or extension.", field="pbx_user")
    if len(name) > 200:
        raise ValidationFailed("The PBX user is longer than 200 characters.", field="pbx_user")
    if _CONTROL.search(name):
        raise ValidationFailed("The PBX user contains a control character.", field="pbx_user")
    return name


async def save_mapping(
    *, session: AsyncSession, actor: Actor, pbx: str, pbx_user: str, user_id: str, known_pbxes: Iterable[str]
) -> PbxUserMapping:
    """Map `pbx_user` of PBX `pbx` to the CRM user `user_id` (admins only; audited)."""
    require_role(actor)
    if pbx not in set(known_pbxes):
        raise UnknownPbx(f"No generic PBX is named {pbx[:40]!r}.", field="pbx")
    name = check_pbx_user(pbx_user)
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise ValidationFailed("Choose an active user.", field="user_id")
    if not user.extension or user.role not in (Role.AGENT.value, Role.SUPERVISOR.value):
        raise ValidationFailed("Only agents and supervisors with an extension take calls.", field="user_id")
    key = pbx_user_key(name)
    taken = await session.scalar(
        select(PbxUserMapping.id).where(PbxUserMapping.pbx == pbx, PbxUserMapping.pbx_user_key == key)
    )
    if taken is not None:
        raise PbxUserTaken(f"{name!r} of PBX {pbx} is already mapped; remove that mapping first.", field="pbx_user")
    mapping = PbxUserMapping(pbx=pbx, pbx_user=name, pbx_user_key=key, user_id=user.id)
    session.add(mapping)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="create",
        entity_type="pbx_user_mapping",
        entity_id=mapping.id,
        after={"pbx": pbx, "pbx_user": name, "user_id": user.id},
    )
    return mapping


async def delete_mapping(*, session: AsyncSession, actor: Actor, mapping_id: str) -> None:
    require_role(actor)
    mapping = await session.get(PbxUserMapping, mapping_id)
    if mapping is None:
        raise MappingNotFound("That mapping does not exist (any more).")
    before = {"pbx": mapping.pbx, "pbx_user": mapping.pbx_user, "user_id": mapping.user_id}
    await session.delete(mapping)
    await record_audit(
        session=session,
        actor=actor.user_id,
        action="delete",
        entity_type="pbx_user_mapping",
        entity_id=mapping_id,
        before=before,
    )


async def resolve_pbx_users(*, session: AsyncSession, pbx: str, names: Iterable[str]) -> dict[str, str | None]:
    """Each PBX user name (in the order named) -> the extension of the CRM user it means, or None."""
    keys = {pbx_user_key(n): n for n in names if n.strip()}
    if not keys:
        return {}
    mapped = dict(
        (
            await session.execute(
                select(PbxUserMapping.pbx_user_key, User.extension)
                .join(User, User.id == PbxUserMapping.user_id)
                .where(
                    PbxUserMapping.pbx == pbx,
                    PbxUserMapping.pbx_user_key.in_(list(keys)),
                    User.is_active.is_(True),
                    User.extension.is_not(None),
                )
            )
        ).all()
    )
    missing = [k for k in keys if k not in mapped]
    if missing:
        rows = await session.execute(
            select(func.lower(User.username), User.extension).where(
                User.is_active.is_(True),
                User.extension.is_not(None),
                (User.extension.in_(missing)) | (func.lower(User.username).in_(missing)),
            )
        )
        own: dict[str, str] = {}
        for username, extension in rows.all():
            own[username] = extension
            own[pbx_user_key(extension)] = extension
        for key in missing:
            if key in own:
                mapped[key] = own[key]
    return {name: mapped.get(key) for key, name in keys.items()}


async def agents_named(*, session: AsyncSession, pbx: str, names: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
    """The extensions of the CRM users these PBX user names mean (in the order named, once each), and the names
    matched by nobody."""
    resolved = await resolve_pbx_users(session=session, pbx=pbx, names=names)
    extensions: list[str] = []
    for extension in resolved.values():
        if extension and extension not in extensions:
            extensions.append(extension)
    return tuple(extensions), [name for name, extension in resolved.items() if extension is None]


async def queue_agents(*, session: AsyncSession, queue: str) -> tuple[str, ...]:
    """The extensions of the active agents whose queues include `queue`."""
    rows = await session.execute(
        select(User.extension, User.queues).where(User.is_active.is_(True), User.extension.is_not(None))
    )
    return tuple(sorted(ext for ext, queues in rows.all() if ext and queue in (queues or [])))


async def homes(*, session: AsyncSession) -> dict[str, str]:
    """Agent extension -> the generic PBX their mapping puts them on (their click-to-dial goes there)."""
    rows = await session.execute(
        select(User.extension, PbxUserMapping.pbx)
        .join(User, User.id == PbxUserMapping.user_id)
        .where(User.extension.is_not(None))
        .order_by(PbxUserMapping.created_at)
    )
    return {extension: pbx for extension, pbx in rows.all() if extension}
