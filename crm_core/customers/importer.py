"""CSV import and export of customers: every rejected row reported with its row number, the rest imported."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.audit.models import AuditEntry
from crm_core.csv_safety import safe_row
from crm_core.customers.models import Customer, CustomerEmail, CustomerPhone, Tag, customer_tags
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import check_customer
from crm_core.db import new_id, unit_of_work, utcnow
from crm_core.errors import CrmError, ValidationFailed
from crm_core.users.models import Role, User
from crm_core.users.service import Actor, require_role

COLUMNS = (
    "name",
    "kind",
    "company",
    "title",
    "phones",
    "emails",
    "street",
    "city",
    "postal_code",
    "country",
    "timezone",
    "language",
    "tags",
    "owner",
    "vip_tier",
)
CUSTOM_PREFIX = "custom."
BATCH = 2000


class ImportFileError(ValidationFailed):
    """The file as a whole cannot be imported (unreadable, no header, unknown columns); nothing was written."""

    code = "import_file_error"


@dataclass(frozen=True, slots=True)
class RejectedRow:
    row: int  # the spreadsheet row: the header is row 1, the first customer row 2
    reason: str
    name: str = ""


@dataclass
class ImportReport:
    total: int = 0
    imported: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)


ProgressCallback = Callable[[int, int], None]


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(";") if part.strip()]


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}"
    if isinstance(exc, CrmError):
        return exc.message
    return str(exc)


def _open_rows(path: Path) -> tuple[TextIO, csv.DictReader[str]]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ImportFileError(f"Cannot read {path}: {exc.strerror}.") from None
    reader = csv.DictReader(handle)
    try:
        header = reader.fieldnames
    except (UnicodeDecodeError, csv.Error) as exc:
        handle.close()
        raise ImportFileError(f"{path} is not a UTF-8 CSV file: {exc}.") from None
    if not header or "name" not in [h.strip().lower() for h in header]:
        handle.close()
        raise ImportFileError(f"{path} has no 'name' column; the header must name the columns ({', '.join(COLUMNS)}).")
    unknown = [h for h in header if h.strip().lower() not in COLUMNS and not h.startswith(CUSTOM_PREFIX)]
    if unknown:
        handle.close()
        raise ImportFileError(
            f"Unknown column(s) {', '.join(unknown)}; use {', '.join(COLUMNS)} or custom.<field> for custom fields."
        )
    return handle, reader


def count_rows(path: Path) -> int:
    handle, reader = _open_rows(path)
    with handle:
        try:
            return sum(1 for _ in reader)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ImportFileError(f"{path} is not a readable CSV file: {exc}.") from None


@dataclass
class _Candidate:
    row: int
    data: CustomerIn
    company: str
    owner: str
    phones: list[tuple[str, str, bool]]
    emails: list[str]


class _Batch:
    """Checks a batch of parsed rows against the database and the rows before them, then inserts the good ones."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.seen_phones: set[str] = set()
        self.seen_emails: set[str] = set()
        self.company_ids: dict[str, str] = {}
        self.owner_ids: dict[str, str | None] = {}
        self.tag_ids: dict[str, str] = {}

    async def _owner(self, session: AsyncSession, username: str) -> str | None:
        key = username.strip().lower()
        if key not in self.owner_ids:
            self.owner_ids[key] = await session.scalar(
                select(User.id).where(User.username == key, User.role == Role.AGENT.value)
            )
        return self.owner_ids[key]

    async def _company(self, session: AsyncSession, name: str, actor: Actor) -> str:
        key = " ".join(name.lower().split())
        if key not in self.company_ids:
            existing = await session.scalar(
                select(Customer.id).where(
                    Customer.kind == "company", Customer.name == name.strip(), Customer.merged_into_id.is_(None)
                )
            )
            if existing is None:
                existing = new_id()
                await session.execute(
                    insert(Customer), [_customer_row(existing, CustomerIn(name=name, kind="company"))]
                )
                session.add(_audit(actor, existing, name.strip()))
            self.company_ids[key] = existing
        return self.company_ids[key]

    async def _tag_ids(self, session: AsyncSession, names: list[str]) -> list[str]:
        wanted = [n.strip().lower() for n in names if n.strip()]
        missing = [n for n in wanted if n not in self.tag_ids]
        if missing:
            for tag_id, tag_name in await session.execute(select(Tag.id, Tag.name).where(Tag.name.in_(missing))):
                self.tag_ids[tag_name] = tag_id
            for name in dict.fromkeys(missing):
                if name not in self.tag_ids:
                    self.tag_ids[name] = new_id()
                    await session.execute(insert(Tag), [{"id": self.tag_ids[name], "name": name}])
        return list(dict.fromkeys(self.tag_ids[n] for n in wanted))

    async def write(
        self, session: AsyncSession, actor: Actor, candidates: list[_Candidate], report: ImportReport
    ) -> None:
        phones = {p for c in candidates for p, _, _ in c.phones}
        emails = {e for c in candidates for e in c.emails}
        taken_phones = (
            set(await session.scalars(select(CustomerPhone.e164).where(CustomerPhone.e164.in_(phones))))
            if phones
            else set()
        )
        taken_emails = (
            set(await session.scalars(select(CustomerEmail.email).where(CustomerEmail.email.in_(emails))))
            if emails
            else set()
        )
        customers: list[dict[str, Any]] = []
        phone_rows: list[dict[str, Any]] = []
        email_rows: list[dict[str, Any]] = []
        tag_rows: list[dict[str, Any]] = []
        for candidate in candidates:
            clash = next((p for p, _, _ in candidate.phones if p in taken_phones or p in self.seen_phones), None)
            if clash:
                report.rejected.append(
                    RejectedRow(candidate.row, f"duplicate: phone {clash} exists", candidate.data.name)
                )
                continue
            mail = next((e for e in candidate.emails if e in taken_emails or e in self.seen_emails), None)
            if mail:
                report.rejected.append(
                    RejectedRow(candidate.row, f"duplicate: email {mail} exists", candidate.data.name)
                )
                continue
            owner_id = None
            if candidate.owner:
                owner_id = await self._owner(session, candidate.owner)
                if owner_id is None:
                    report.rejected.append(
                        RejectedRow(candidate.row, f"owner {candidate.owner!r} is not an agent", candidate.data.name)
                    )
                    continue
            parent_id = await self._company(session, candidate.company, actor) if candidate.company else None
            customer_id = new_id()
            customers.append(_customer_row(customer_id, candidate.data, parent_id=parent_id, owner_id=owner_id))
            phone_rows += [
                {"id": new_id(), "customer_id": customer_id, "e164": e164, "label": label, "is_primary": primary}
                for e164, label, primary in candidate.phones
            ]
            email_rows += [
                {"id": new_id(), "customer_id": customer_id, "email": e, "label": "work"} for e in candidate.emails
            ]
            tag_rows += [
                {"customer_id": customer_id, "tag_id": t} for t in await self._tag_ids(session, candidate.data.tags)
            ]
            self.seen_phones.update(p for p, _, _ in candidate.phones)
            self.seen_emails.update(candidate.emails)
        if not customers:
            return
        await session.execute(insert(Customer), customers)
        if phone_rows:
            await session.execute(insert(CustomerPhone), phone_rows)
        if email_rows:
            await session.execute(insert(CustomerEmail), email_rows)
        if tag_rows:
            await session.execute(insert(customer_tags), tag_rows)
        now = utcnow()
        await session.execute(
            insert(AuditEntry),
            [
                {
                    "id": new_id(),
                    "actor_id": actor.user_id,
                    "action": "create",
                    "entity_type": "customer",
                    "entity_id": c["id"],
                    "before": None,
                    "after": {"name": c["name"], "source": "csv import"},
                    "at": now,
                }
                for c in customers
            ],
        )
        report.imported += len(customers)


def _customer_row(
    customer_id: str, data: CustomerIn, *, parent_id: str | None = None, owner_id: str | None = None
) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": customer_id,
        "kind": data.kind,
        "name": data.name,
        "parent_id": parent_id,
        "title": data.title,
        "street": data.street,
        "city": data.city,
        "postal_code": data.postal_code,
        "country": data.country.upper() if data.country else None,
        "timezone": data.timezone,
        "language": data.language,
        "owner_id": owner_id,
        "owner_assigned_at": now if owner_id else None,
        "last_interaction_at": None,
        "custom_fields": data.custom_fields,
        "vip_tier": data.vip_tier,
        "sms_opt_out": False,
        "merged_into_id": None,
        "created_at": now,
        "updated_at": now,
    }


def _audit(actor: Actor, entity_id: str, name: str) -> AuditEntry:
    return AuditEntry(
        actor_id=actor.user_id,
        action="create",
        entity_type="customer",
        entity_id=entity_id,
        after={"name": name, "source": "csv import"},
    )


def parse_row(
    raw: dict[str, str | None], region: str
) -> tuple[CustomerIn, str, str, list[tuple[str, str, bool]], list[str]]:
    """One CSV row to a validated customer; raises on the first problem, with a reason a person can act on."""
    values = {
        (k or "").strip().lower() if not (k or "").startswith(CUSTOM_PREFIX) else k: (v or "").strip()
        for k, v in raw.items()
        if k is not None
    }
    if None in raw:
        raise ValidationFailed("the row has more fields than the header")
    if not values.get("name"):
        raise ValidationFailed("name is empty")
    data = CustomerIn(
        name=values["name"],
        kind=values.get("kind") or "person",  # type: ignore[arg-type]
        title=values.get("title") or None,
        phones=[PhoneIn(number=n) for n in _split(values.get("phones"))],
        emails=_split(values.get("emails")),
        street=values.get("street") or None,
        city=values.get("city") or None,
        postal_code=values.get("postal_code") or None,
        country=values.get("country") or None,
        timezone=values.get("timezone") or None,
        language=values.get("language") or None,
        tags=_split(values.get("tags")),
        vip_tier=values.get("vip_tier") or None,
        custom_fields={k[len(CUSTOM_PREFIX) :]: v for k, v in values.items() if k.startswith(CUSTOM_PREFIX) and v},
    )
    phones, emails = check_customer(data, region)
    return data, values.get("company", ""), values.get("owner", ""), phones, emails


async def import_customers_csv(
    path: Path,
    *,
    sessions: async_sessionmaker[AsyncSession],
    actor: Actor,
    region: str,
    progress: ProgressCallback | None = None,
    batch_size: int = BATCH,
) -> ImportReport:
    """Import `path`; each batch is one transaction, so a crash leaves only whole customers behind."""
    require_role(actor, Role.SUPERVISOR)
    total = count_rows(path)
    report = ImportReport(total=total)
    batch = _Batch(region)
    handle, reader = _open_rows(path)
    done = 0
    with handle:
        pending: list[_Candidate] = []
        rows = iter(reader)
        while True:
            try:
                raw = next(rows)
            except StopIteration:
                break
            except (UnicodeDecodeError, csv.Error) as exc:
                raise ImportFileError(f"{path} stops being readable after row {done + 1}: {exc}.") from None
            done += 1
            row_number = reader.line_num if reader.line_num else done + 1
            try:
                data, company, owner, phones, emails = parse_row(raw, region)
            except (ValidationError, CrmError) as exc:
                report.rejected.append(RejectedRow(row_number, _reason(exc), (raw.get("name") or "").strip()))
            else:
                pending.append(_Candidate(row_number, data, company, owner, phones, emails))
            if len(pending) >= batch_size:
                async with unit_of_work(sessions) as session:
                    await batch.write(session, actor, pending, report)
                pending = []
                if progress:
                    progress(done, total)
        if pending:
            async with unit_of_work(sessions) as session:
                await batch.write(session, actor, pending, report)
    if progress:
        progress(done, total)
    report.rejected.sort(key=lambda r: r.row)
    return report


async def iter_customer_rows(session: AsyncSession, *, chunk: int = 1000) -> AsyncIterator[dict[str, str]]:
    """Every live customer as a CSV row (same columns as the import), in chunks so memory stays flat."""
    last_id = ""
    owners = {uid: name for uid, name in await session.execute(select(User.id, User.username))}
    companies: dict[str, str] = {}
    while True:
        customers = list(
            await session.scalars(
                select(Customer)
                .where(Customer.id > last_id, Customer.merged_into_id.is_(None))
                .order_by(Customer.id)
                .limit(chunk)
            )
        )
        if not customers:
            return
        parent_ids = {c.parent_id for c in customers if c.parent_id and c.parent_id not in companies}
        if parent_ids:
            for cid, cname in await session.execute(
                select(Customer.id, Customer.name).where(Customer.id.in_(parent_ids))
            ):
                companies[cid] = cname
        for c in customers:
            row = {
                "name": c.name,
                "kind": c.kind,
                "company": companies.get(c.parent_id or "", ""),
                "title": c.title or "",
                "phones": ";".join(p.e164 for p in c.phones),
                "emails": ";".join(e.email for e in c.emails),
                "street": c.street or "",
                "city": c.city or "",
                "postal_code": c.postal_code or "",
                "country": c.country or "",
                "timezone": c.timezone or "",
                "language": c.language or "",
                "tags": ";".join(sorted(t.name for t in c.tags)),
                "owner": owners.get(c.owner_id or "", ""),
                "vip_tier": c.vip_tier or "",
            }
            for key, value in (c.custom_fields or {}).items():
                row[f"{CUSTOM_PREFIX}{key}"] = str(value)
            yield row
        last_id = customers[-1].id


async def export_customers_csv(
    out: TextIO, *, session: AsyncSession, actor: Actor, progress: Callable[[int], None] | None = None
) -> int:
    require_role(actor, Role.SUPERVISOR)
    rows: list[dict[str, str]] = []
    custom: set[str] = set()
    async for row in iter_customer_rows(session):
        rows.append(row)
        custom.update(k for k in row if k.startswith(CUSTOM_PREFIX))
    writer = csv.DictWriter(out, fieldnames=[*COLUMNS, *sorted(custom)], restval="")
    writer.writeheader()
    for count, row in enumerate(rows, 1):
        writer.writerow(safe_row(row))  # a name like =HYPERLINK(…) must stay text in a spreadsheet
        if progress and count % 1000 == 0:
            progress(count)
    if progress:
        progress(len(rows))
    return len(rows)


def rows_to_csv(rows: Iterable[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(safe_row(row) for row in rows)
    return buffer.getvalue()
