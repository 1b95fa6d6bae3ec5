"""PBX users: admins map a PBX's user names (or extensions) to CRM users; call events name agents through them.

A name a PBX sends is matched, case-insensitively, first against the mappings of that PBX, then against the CRM
users' own extensions and user names (so a PBX that already sends the CRM's extensions needs no mapping at all).
Only active users with an extension can take calls, so only they are ever returned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
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


async def homes(*, session: AsyncSession) -> dict[str, str]:
    """Agent extension -> the generic PBX their mapping puts them on (their click-to-dial goes there)."""
    rows = await session.execute(
        select(User.extension, PbxUserMapping.pbx)
        .join(User, User.id == PbxUserMapping.user_id)
        .where(User.extension.is_not(None))
        .order_by(PbxUserMapping.created_at)
    )
    return {extension: pbx for extension, pbx in rows.all() if extension}


@dataclass(frozen=True, slots=True)
class PbxDirectory:
    """Everything the CTI path asks of the database, read at once: who each PBX user name means (mapped names of
    this PBX, then users' own extensions and user names; keys as `pbx_user_key` makes them) and each queue's agents."""

    names: dict[str, str]
    queues: dict[str, tuple[str, ...]]


DIRECTORY_PARTITION = 200


async def pbx_directory(*, session: AsyncSession, pbx: str) -> PbxDirectory:
    """Read in partitions of DIRECTORY_PARTITION rows, each its own turn of the event loop: a thousand agents read
    in one go held the CTI process's loop for 7–10 ms, every pop due meanwhile waiting."""
    names: dict[str, str] = {}
    queues: dict[str, list[str]] = {}
    extensions: list[str] = []
    users = await session.stream(
        select(User.username, User.extension, User.queues).where(User.is_active.is_(True), User.extension.is_not(None))
    )
    async for partition in users.partitions(DIRECTORY_PARTITION):
        for username, extension, user_queues in partition:
            if not extension:
                continue
            extensions.append(extension)
            names.setdefault(pbx_user_key(username), extension)
            for queue in user_queues or []:
                queues.setdefault(str(queue), []).append(extension)
    for extension in extensions:
        names[pbx_user_key(extension)] = extension  # an extension outranks another user's user name
    mapped = await session.stream(
        select(PbxUserMapping.pbx_user_key, User.extension)
        .join(User, User.id == PbxUserMapping.user_id)
        .where(PbxUserMapping.pbx == pbx, User.is_active.is_(True), User.extension.is_not(None))
    )
    async for partition in mapped.partitions(DIRECTORY_PARTITION):
        for key, extension in partition:
            if extension:
                names[key] = extension  # the admin's mapping outranks both
    return PbxDirectory(names=names, queues={q: tuple(sorted(members)) for q, members in queues.items()})
