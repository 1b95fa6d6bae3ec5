"""Customer imports started from the admin screen: a job row per uploaded file, claimed by one worker loop, its
progress written as it goes so any web worker can show it live, its row-by-row report kept on the job."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Integer, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.customers.importer import ImportFileError, import_customers_csv
from crm_core.db import Base, new_id, utcnow
from crm_core.errors import CrmError, NotFound
from crm_core.tasks import cancel_and_wait, wait_for_wake
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

log = logging.getLogger(__name__)
MAX_REPORTED_REJECTS = 5000


class ImportJob(Base):
    __tablename__ = "import_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    requested_by: Mapped[str | None] = mapped_column(String(32), default=None)
    requested_role: Mapped[str] = mapped_column(String(16), default=Role.ADMIN.value)
    file_name: Mapped[str] = mapped_column(String(255))
    stored_path: Mapped[str] = mapped_column(String(1024))
    # queued | running | done | failed
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


async def queue_import(*, session: AsyncSession, actor: Actor, file_name: str, stored_path: Path) -> ImportJob:
    require_role(actor, Role.SUPERVISOR)
    job = ImportJob(
        requested_by=actor.user_id,
        requested_role=actor.role.value,
        file_name=file_name[:255],
        stored_path=str(stored_path),
    )
    session.add(job)
    await session.flush()
    return job


async def get_import(*, session: AsyncSession, actor: Actor, job_id: str) -> ImportJob:
    require_role(actor, Role.SUPERVISOR)
    job = await session.get(ImportJob, job_id)
    if job is None or (actor.role is not Role.ADMIN and job.requested_by != actor.user_id):
        raise NotFound("No such import.", job_id=job_id)
    return job


class ImportWorker:
    """Claims queued imports one at a time (row lock with SKIP LOCKED on PostgreSQL), runs them, records progress."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, region: str, every_s: float = 1.0) -> None:
        self.sessions = sessions
        self.region = region
        self.every_s = every_s
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _claim(self) -> ImportJob | None:
        async with self.sessions() as session, session.begin():
            query = select(ImportJob).where(ImportJob.status == "queued").order_by(ImportJob.created_at).limit(1)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            job = await session.scalar(query)
            if job is None:
                return None
            job.status = "running"
            return job

    async def _progress(self, job_id: str, done: int, total: int) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(update(ImportJob).where(ImportJob.id == job_id).values(done=done, total=total))

    async def run_once(self) -> ImportJob | None:
        job = await self._claim()
        if job is None:
            return None
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()

        def progress(done: int, total: int) -> None:  # called between batches, on this loop
            task = loop.create_task(self._progress(job.id, done, total))
            pending.add(task)
            task.add_done_callback(pending.discard)

        actor = Actor(user_id=job.requested_by, role=Role(job.requested_role))
        values: dict[str, Any]
        try:
            report = await import_customers_csv(
                Path(job.stored_path), sessions=self.sessions, actor=actor, region=self.region, progress=progress
            )
        except (ImportFileError, CrmError) as exc:
            values = {"status": "failed", "error": exc.message[:500]}
        except Exception:
            log.exception("customer import %s failed", job.id)
            values = {"status": "failed", "error": "The import stopped on an unexpected error; see the server log."}
        else:
            rejected = [{"row": r.row, "reason": r.reason, "name": r.name} for r in report.rejected]
            values = {
                "status": "done",
                "total": report.total,
                "done": report.total,
                "imported": report.imported,
                "rejected": rejected[:MAX_REPORTED_REJECTS],
            }
        if pending:
            await asyncio.gather(*pending)
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(ImportJob).where(ImportJob.id == job.id).values(finished_at=utcnow(), **values)
            )
        await asyncio.to_thread(Path(job.stored_path).unlink, missing_ok=True)
        return job

    async def recover(self) -> None:
        """Imports that were running when the process died: each batch committed whole, the rest never ran."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(ImportJob)
                .where(ImportJob.status == "running")
                .values(status="failed", error="The server stopped during the import; the rows before it are in.")
            )

    async def _loop(self) -> None:
        while True:
            try:
                while await self.run_once() is not None:
                    pass
            except Exception:
                log.exception("the import worker failed; trying again")
            await wait_for_wake(self.wake, self.every_s)

    async def start(self) -> None:
        await self.recover()
        self._task = asyncio.create_task(self._loop(), name="import-worker")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
