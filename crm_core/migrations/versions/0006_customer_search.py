"""customer search: indexed name prefix, word prefix and typo-tolerant (trigram) name search

Revision ID: 0006
Revises: 0002_user_sessions
Create Date: 2026-12-03 10:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0002_user_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite: two FTS5 tables (words, trigrams) kept by triggers. They are keyed by a search key of our own, not by
# the rowid of customers, which VACUUM may renumber on a table without an INTEGER PRIMARY KEY.
_SQLITE_UP = [
    "ALTER TABLE customers ADD COLUMN name_search_key INTEGER",
    "CREATE UNIQUE INDEX ix_customers_name_search_key ON customers (name_search_key)",
    "CREATE INDEX ix_customers_lower_name ON customers (lower(name))",
    "CREATE VIRTUAL TABLE customers_name_fts USING fts5(name, tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE customers_trigram_fts USING fts5(name, tokenize = 'trigram')",
    # how many names hold each trigram: a typo search probes the rarest trigrams of the text only
    "CREATE VIRTUAL TABLE customers_trigram_vocab USING fts5vocab(customers_trigram_fts, row)",
    """CREATE TRIGGER customers_search_insert AFTER INSERT ON customers BEGIN
         UPDATE customers SET name_search_key =
           (SELECT coalesce(max(name_search_key), 0) + 1 FROM customers) WHERE id = new.id;
         INSERT INTO customers_name_fts (rowid, name)
           SELECT name_search_key, new.name FROM customers WHERE id = new.id;
         INSERT INTO customers_trigram_fts (rowid, name)
           SELECT name_search_key, lower(new.name) FROM customers WHERE id = new.id;
       END""",
    """CREATE TRIGGER customers_search_rename AFTER UPDATE OF name ON customers BEGIN
         DELETE FROM customers_name_fts WHERE rowid = old.name_search_key;
         DELETE FROM customers_trigram_fts WHERE rowid = old.name_search_key;
         INSERT INTO customers_name_fts (rowid, name) VALUES (new.name_search_key, new.name);
         INSERT INTO customers_trigram_fts (rowid, name) VALUES (new.name_search_key, lower(new.name));
       END""",
    """CREATE TRIGGER customers_search_delete AFTER DELETE ON customers BEGIN
         DELETE FROM customers_name_fts WHERE rowid = old.name_search_key;
         DELETE FROM customers_trigram_fts WHERE rowid = old.name_search_key;
       END""",
    # customers created before this migration
    "UPDATE customers SET name_search_key = rowid",
    "INSERT INTO customers_name_fts (rowid, name) SELECT name_search_key, name FROM customers",
    "INSERT INTO customers_trigram_fts (rowid, name) SELECT name_search_key, lower(name) FROM customers",
]
_SQLITE_DOWN = [
    "DROP TRIGGER customers_search_delete",
    "DROP TRIGGER customers_search_rename",
    "DROP TRIGGER customers_search_insert",
    "DROP TABLE customers_trigram_vocab",
    "DROP TABLE customers_trigram_fts",
    "DROP TABLE customers_name_fts",
    "DROP INDEX ix_customers_lower_name",
    "DROP INDEX ix_customers_name_search_key",
    "ALTER TABLE customers DROP COLUMN name_search_key",
]
# PostgreSQL: pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it.
_POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    # unaccent() is only STABLE (its dictionary could change); pinned to one dictionary it may be indexed
    """CREATE FUNCTION crm_unaccent(text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
       AS $$ SELECT unaccent('unaccent'::regdictionary, $1) $$""",
    'CREATE INDEX ix_customers_lower_name ON customers ((lower(name) COLLATE "C"))',
    "CREATE INDEX ix_customers_name_words ON customers USING gin (to_tsvector('simple', crm_unaccent(name)))",
    "CREATE INDEX ix_customers_name_trigrams ON customers USING gin (lower(name) gin_trgm_ops)",
    'CREATE INDEX ix_customer_emails_email_prefix ON customer_emails ((email COLLATE "C"))',
]
_POSTGRES_DOWN = [
    "DROP INDEX ix_customer_emails_email_prefix",
    "DROP INDEX ix_customers_name_trigrams",
    "DROP INDEX ix_customers_name_words",
    "DROP INDEX ix_customers_lower_name",
    "DROP FUNCTION crm_unaccent(text)",
]


def upgrade() -> None:
    for statement in _SQLITE_UP if op.get_bind().dialect.name == "sqlite" else _POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in _SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else _POSTGRES_DOWN:
        op.execute(statement)
