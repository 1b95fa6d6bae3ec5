"""knowledge base (solutions with full-text search, links to tickets), ticket satisfaction (CSAT) per resolution,
and the public web form's per-address throttle

Revision ID: 0016
Revises: 0011
Create Date: 2026-12-03 12:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite: an FTS5 table (title, tags, body; Porter stemming) keyed by each solution's own search key, kept by
# triggers. PostgreSQL: a GIN index on the weighted words (title A, tags and body B) — the same expression as
# crm_core.kb.service.POSTGRES_DOCUMENT, so the planner uses it.
POSTGRES_DOCUMENT = (
    "(setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(tags, '') || ' ' || coalesce(body, '')), 'B'))"
)
_SQLITE_UP = [
    "CREATE VIRTUAL TABLE kb_solutions_fts USING fts5(title, tags, body, "
    "tokenize = 'porter unicode61 remove_diacritics 2')",
    """CREATE TRIGGER kb_solutions_search_insert AFTER INSERT ON kb_solutions BEGIN
         UPDATE kb_solutions SET search_key =
           (SELECT coalesce(max(search_key), 0) + 1 FROM kb_solutions) WHERE id = new.id;
         INSERT INTO kb_solutions_fts (rowid, title, tags, body)
           SELECT search_key, new.title, new.tags, new.body FROM kb_solutions WHERE id = new.id;
       END""",
    """CREATE TRIGGER kb_solutions_search_update AFTER UPDATE OF title, tags, body ON kb_solutions BEGIN
         DELETE FROM kb_solutions_fts WHERE rowid = old.search_key;
         INSERT INTO kb_solutions_fts (rowid, title, tags, body) VALUES (new.search_key, new.title, new.tags, new.body);
       END""",
    """CREATE TRIGGER kb_solutions_search_delete AFTER DELETE ON kb_solutions BEGIN
         DELETE FROM kb_solutions_fts WHERE rowid = old.search_key;
       END""",
]
_SQLITE_DOWN = [
    "DROP TRIGGER kb_solutions_search_delete",
    "DROP TRIGGER kb_solutions_search_update",
    "DROP TRIGGER kb_solutions_search_insert",
    "DROP TABLE kb_solutions_fts",
]
_POSTGRES_UP = [f"CREATE INDEX ix_kb_solutions_words ON kb_solutions USING gin ({POSTGRES_DOCUMENT})"]
_POSTGRES_DOWN = ["DROP INDEX ix_kb_solutions_words"]


def upgrade() -> None:
    op.create_table(
        "kb_solutions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("tags", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("search_key", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_kb_solutions_created_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"], name=op.f("fk_kb_solutions_updated_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_solutions")),
        sa.UniqueConstraint("search_key", name=op.f("uq_kb_solutions_search_key")),
    )
    with op.batch_alter_table("kb_solutions", schema=None) as batch_op:
        batch_op.create_index("ix_kb_solutions_status_updated", ["status", "updated_at"], unique=False)

    op.create_table(
        "kb_ticket_solutions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ticket_id", sa.String(length=32), nullable=False),
        sa.Column("solution_id", sa.String(length=32), nullable=False),
        sa.Column("linked_by", sa.String(length=32), nullable=True),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_by", sa.String(length=32), nullable=True),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("sms_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_kb_ticket_solutions_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["solution_id"],
            ["kb_solutions.id"],
            name=op.f("fk_kb_ticket_solutions_solution_id_kb_solutions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["linked_by"], ["users.id"], name=op.f("fk_kb_ticket_solutions_linked_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["sent_by"], ["users.id"], name=op.f("fk_kb_ticket_solutions_sent_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["ticket_messages.id"],
            name=op.f("fk_kb_ticket_solutions_message_id_ticket_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sms_id"],
            ["sms_messages.id"],
            name=op.f("fk_kb_ticket_solutions_sms_id_sms_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_ticket_solutions")),
        sa.UniqueConstraint("ticket_id", "solution_id", name=op.f("uq_kb_ticket_solutions_ticket_id")),
    )
    with op.batch_alter_table("kb_ticket_solutions", schema=None) as batch_op:
        batch_op.create_index("ix_kb_ticket_solutions_ticket_id", ["ticket_id"], unique=False)
        batch_op.create_index("ix_kb_ticket_solutions_solution_id", ["solution_id"], unique=False)

    op.create_table(
        "ticket_csat",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ticket_id", sa.String(length=32), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=True),
        sa.Column("sms_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=8), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("call_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_csat_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["sms_id"], ["sms_messages.id"], name=op.f("fk_ticket_csat_sms_id_sms_messages"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call_logs.id"], name=op.f("fk_ticket_csat_call_id_call_logs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_csat")),
        sa.UniqueConstraint("ticket_id", "resolved_at", name=op.f("uq_ticket_csat_ticket_id")),
    )
    with op.batch_alter_table("ticket_csat", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_csat_ticket_id", ["ticket_id"], unique=False)
        batch_op.create_index("ix_ticket_csat_status_requested", ["status", "requested_at"], unique=False)
        batch_op.create_index("ix_ticket_csat_number_status", ["number", "status"], unique=False)

    op.create_table(
        "intake_throttles",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_intake_throttles")),
    )
    with op.batch_alter_table("intake_throttles", schema=None) as batch_op:
        batch_op.create_index("ix_intake_throttles_window_start", ["window_start"], unique=False)

    for statement in _SQLITE_UP if op.get_bind().dialect.name == "sqlite" else _POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in _SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else _POSTGRES_DOWN:
        op.execute(statement)
    with op.batch_alter_table("intake_throttles", schema=None) as batch_op:
        batch_op.drop_index("ix_intake_throttles_window_start")
    op.drop_table("intake_throttles")
    with op.batch_alter_table("ticket_csat", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_csat_number_status")
        batch_op.drop_index("ix_ticket_csat_status_requested")
        batch_op.drop_index("ix_ticket_csat_ticket_id")
    op.drop_table("ticket_csat")
    with op.batch_alter_table("kb_ticket_solutions", schema=None) as batch_op:
        batch_op.drop_index("ix_kb_ticket_solutions_solution_id")
        batch_op.drop_index("ix_kb_ticket_solutions_ticket_id")
    op.drop_table("kb_ticket_solutions")
    with op.batch_alter_table("kb_solutions", schema=None) as batch_op:
        batch_op.drop_index("ix_kb_solutions_status_updated")
    op.drop_table("kb_solutions")
