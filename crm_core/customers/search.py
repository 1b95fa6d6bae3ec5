"""Customer search for the top bar and the customer list: by email, phone (any written form), name (prefix of the
whole name, prefix of any word, then typo-tolerant), with company, tag and owner filters; every probe indexed.

Name matching runs in three steps and stops at the first that fills the page:
1. the whole name starts with the text: a range over the index on lower(name), already in name order;
2. every word of the text starts a word of the name: SQLite FTS5 / PostgreSQL tsvector prefix queries;
3. the name is close to the text (a typo, a missing letter): trigram similarity (SQLite FTS5 trigram table,
   PostgreSQL pg_trgm), ranked by closeness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.customers.errors import InvalidPhoneNumber
from crm_core.customers.models import Customer, CustomerEmail, CustomerPhone, Tag, customer_tags
from crm_core.customers.phones import normalize_phone
from crm_core.errors import ValidationFailed
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role

# Kept by migration 0006 outside the ORM (dialect-specific: FTS5 tables and their key on SQLite, expression and
# trigram indexes on PostgreSQL); a schema comparison with the models leaves these out.
SEARCH_SCHEMA_OBJECTS = frozenset(
    {
        "customers_name_fts",
        "customers_trigram_fts",
        "customers_trigram_vocab",
        "name_search_key",
        "ix_customers_name_search_key",
        "ix_customers_lower_name",
        "ix_customers_name_words",
        "ix_customers_name_trigrams",
        "ix_customer_emails_email_prefix",
    }
)
PAGE_SIZE = 25
MAX_PAGE = 400  # 10,000 results deep is far past what a person pages through
RARE_TRIGRAMS = 4  # a typo breaks at most three trigrams in a row: the rarest four leave one that holds
SIMILAR_CANDIDATES = 2000
MAX_ID_MATCHES = 1000  # customers sharing one phone number or one email prefix
_WORD = re.compile(r"\w+", re.UNICODE)
_EMAIL_LIKE = re.compile(r"^[^@\s]+@[^@\s]*$")
SelectT = TypeVar("SelectT", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True, slots=True)
class CustomerQuery:
    text: str = ""
    company_id: str | None = None
    tag: str | None = None
    owner_id: str | None = None
    unowned: bool = False  # the shared pool: customers nobody owns
    page: int = 1


@dataclass(frozen=True, slots=True)
class CustomerHit:
    """What a search result shows of a customer: read in the same statement as the match, with no ORM objects."""

    id: str
    name: str
    kind: str
    city: str | None
    phones: tuple[str, ...]  # E.164
    emails: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(slots=True)
class CustomerPage:
    customers: list[CustomerHit]
    page: int
    has_next: bool
    matched_by: str  # "email", "phone", "name", "word", "similar", "list" or "" (no match)
    query: CustomerQuery = field(default_factory=CustomerQuery)


def check_query(query: CustomerQuery) -> CustomerQuery:
    if len(query.text) > 200:
        raise ValidationFailed("The search text is longer than 200 characters.", field="q")
    if any(ord(ch) < 32 for ch in query.text):
        raise ValidationFailed("The search text contains control characters.", field="q")
    if not 1 <= query.page <= MAX_PAGE:
        raise ValidationFailed(f"The page must be between 1 and {MAX_PAGE}.", field="page")
    return query


def _filtered(statement: SelectT, query: CustomerQuery) -> SelectT:
    statement = statement.where(Customer.merged_into_id.is_(None))
    if query.company_id:
        statement = statement.where(Customer.parent_id == query.company_id)
    if query.owner_id:
        statement = statement.where(Customer.owner_id == query.owner_id)
    if query.unowned:
        statement = statement.where(Customer.owner_id.is_(None))
    if query.tag:
        tagged = (
            select(customer_tags.c.customer_id)
            .join(Tag, Tag.id == customer_tags.c.tag_id)
            .where(Tag.name == query.tag.strip().lower())
        )
        statement = statement.where(Customer.id.in_(tagged))
    return statement


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _lower_name(session: AsyncSession) -> Any:
    lowered = func.lower(Customer.name)
    # the PostgreSQL index is on lower(name) COLLATE "C", so that a range is a prefix whatever the locale
    return lowered.collate("C") if _is_postgres(session) else lowered


def _prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


_LIST_SEPARATOR = "\x1f"  # the unit separator: refused in every stored value, so it never splits one


def _listed(session: AsyncSession, column: Any, where: Any) -> Any:
    """One customer's values of `column`, joined into one string by a correlated subquery."""
    if _is_postgres(session):
        joined = func.string_agg(column, literal_column("chr(31)"))
    else:
        joined = func.group_concat(column, literal_column("char(31)"))
    return select(joined).where(where).scalar_subquery()


def _hits(session: AsyncSession) -> Select[Any]:
    """The columns of a result, contacts and tags included: one round trip to the database per page, where loading
    ORM objects with their collections would make three more (each a thread hop for aiosqlite)."""
    return select(
        Customer.id,
        Customer.name,
        Customer.kind,
        Customer.city,
        _listed(session, CustomerPhone.e164, CustomerPhone.customer_id == Customer.id),
        _listed(session, CustomerEmail.email, CustomerEmail.customer_id == Customer.id),
        _listed(session, Tag.name, (Tag.id == customer_tags.c.tag_id) & (customer_tags.c.customer_id == Customer.id)),
    )


def _split(joined: str | None) -> tuple[str, ...]:
    return tuple(joined.split(_LIST_SEPARATOR)) if joined else ()


def _hit(row: Any) -> CustomerHit:
    return CustomerHit(row[0], row[1], row[2], row[3], _split(row[4]), _split(row[5]), _split(row[6]))


async def _page(session: AsyncSession, statement: Select[Any], query: CustomerQuery) -> tuple[list[CustomerHit], bool]:
    offset = (query.page - 1) * PAGE_SIZE
    rows = [_hit(row) for row in await session.execute(statement.offset(offset).limit(PAGE_SIZE + 1))]
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


async def _by_ids(session: AsyncSession, ids: Select[Any]) -> Select[Any]:
    """Customers whose ids `ids` selects: the few ids first, so that no planner walks the name index instead."""
    found = list(await session.scalars(ids.limit(MAX_ID_MATCHES)))
    return _hits(session).where(Customer.id.in_(found))


async def search_customers(*, session: AsyncSession, actor: Actor, query: CustomerQuery, region: str) -> CustomerPage:
    """One page of customers matching `query`; with no text, the (filtered) list in name order."""
    require_role(actor, Role.AGENT, Role.SUPERVISOR, Role.MARKETER)
    query = check_query(query)
    words = query.text.strip()
    if not words:
        found, more = await _page(session, _filtered(_hits(session), query).order_by(Customer.name), query)
        return CustomerPage(found, query.page, more, "list", query)
    if "@" in words and _EMAIL_LIKE.match(words):
        email = words.lower()
        email_key = CustomerEmail.email.collate("C") if _is_postgres(session) else CustomerEmail.email
        emails = select(CustomerEmail.customer_id).where(email_key >= email, email_key < _prefix_end(email))
        statement = _filtered(await _by_ids(session, emails), query).order_by(Customer.name)
        found, more = await _page(session, statement, query)
        return CustomerPage(found, query.page, more, "email" if found else "", query)
    digits = re.sub(r"\D", "", words)
    if len(digits) >= 6 and len(digits) >= len(re.sub(r"[\s()+./-]", "", words)) - 1:
        try:
            e164 = normalize_phone(words, region)
        except InvalidPhoneNumber:
            e164 = None
        if e164 is not None:
            phones = select(CustomerPhone.customer_id).where(CustomerPhone.e164 == e164)
            found, more = await _page(
                session, _filtered(await _by_ids(session, phones), query).order_by(Customer.name), query
            )
            return CustomerPage(found, query.page, more, "phone" if found else "", query)
    return await _search_name(session, words, query)


async def _search_name(session: AsyncSession, words: str, query: CustomerQuery) -> CustomerPage:
    lowered = " ".join(words.lower().split())
    name_key = _lower_name(session)
    whole = _filtered(_hits(session), query).where(name_key >= lowered, name_key < _prefix_end(lowered))
    found, more = await _page(session, whole.order_by(name_key), query)
    if found or query.page > 1:
        return CustomerPage(found, query.page, more, "name" if found else "", query)
    tokens = _WORD.findall(lowered)
    if not tokens:
        return CustomerPage([], query.page, False, "", query)
    if _is_postgres(session):
        tsquery = " & ".join(f"{token}:*" for token in tokens)
        matching = literal_column("to_tsvector('simple', crm_unaccent(customers.name))").op("@@")(
            func.to_tsquery("simple", func.crm_unaccent(tsquery))
        )
        by_word = _filtered(_hits(session), query).where(matching).order_by(Customer.name)
    else:
        fts = " ".join('"' + token.replace('"', '""') + '"*' for token in tokens)
        word_ids = text("SELECT rowid FROM customers_name_fts WHERE customers_name_fts MATCH :fts").bindparams(fts=fts)
        by_word = (
            _filtered(_hits(session), query)
            .where(literal_column("customers.name_search_key").in_(word_ids))
            .order_by(Customer.name)
        )
    found, more = await _page(session, by_word, query)
    if found:
        return CustomerPage(found, query.page, more, "word", query)
    if len(lowered) < 3:
        return CustomerPage([], query.page, False, "", query)
    similar = await _similar(session, lowered, query)
    return CustomerPage(similar, 1, False, "similar" if similar else "", query)


async def _similar(session: AsyncSession, lowered: str, query: CustomerQuery) -> list[CustomerHit]:
    """Names sharing most trigrams with the text: what a typo leaves in common."""
    if _is_postgres(session):
        closeness = func.similarity(func.lower(Customer.name), lowered)
        statement = (
            _filtered(_hits(session), query)
            .where(func.lower(Customer.name).op("%")(lowered))
            .order_by(closeness.desc(), Customer.name)
            .limit(PAGE_SIZE)
        )
        return [_hit(row) for row in await session.execute(statement)]
    trigrams = sorted({lowered[i : i + 3] for i in range(len(lowered) - 2)})
    counts = await session.execute(
        text("SELECT term, doc FROM customers_trigram_vocab WHERE term IN :terms").bindparams(
            bindparam("terms", expanding=True)
        ),
        {"terms": trigrams},
    )
    rarest = [term for term, _ in sorted(counts.all(), key=lambda row: row[1])[:RARE_TRIGRAMS]]
    if not rarest:
        return []
    fts = " OR ".join('"' + gram.replace('"', '""') + '"' for gram in rarest)
    candidates = text(
        "SELECT rowid FROM customers_trigram_fts WHERE customers_trigram_fts MATCH :fts LIMIT :n"
    ).bindparams(fts=fts, n=SIMILAR_CANDIDATES)
    names = _filtered(select(Customer.id, Customer.name), query).where(
        literal_column("customers.name_search_key").in_(candidates)
    )
    pool = (await session.execute(names)).all()

    # rank the candidates by how many of the text's trigrams each name holds, then by length difference
    def score(candidate: Any) -> tuple[int, int, str]:
        name = candidate[1].lower()
        shared = sum(1 for gram in trigrams if gram in name)
        return (-shared, abs(len(name) - len(lowered)), name)

    best = [candidate[0] for candidate in sorted(pool, key=score)[:PAGE_SIZE]]
    hits = {hit.id: hit for hit in map(_hit, await session.execute(_hits(session).where(Customer.id.in_(best))))}
    return [hits[customer_id] for customer_id in best if customer_id in hits]
