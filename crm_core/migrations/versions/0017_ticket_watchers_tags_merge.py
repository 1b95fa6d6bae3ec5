"""service desk: ticket watchers, tags, merged duplicates; indexes for the filtered list, the tickets at risk and
a partial index of the clocks the scheduler still looks at (the unused index of clocks' due times goes)

Revision ID: 0017
Revises: 0011
Create Date: 2026-12-03 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
OPEN_ONLY = "status IN ('new', 'open', 'pending', 'on_hold')"
AT_RISK = "stopped_at IS NULL AND warned_at IS NOT NULL"
TO_CHECK = "next_check_at IS NOT NULL"


def upgrade() -> None:
    # a plain column (no foreign key): SQLite could add the key only by copying `tickets`, and dropping the old
    # table with foreign keys on would cascade to every ticket's messages, clocks and links; the service checks it
    op.add_column("tickets", sa.Column("merged_into_id", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_tickets_merged_into_id"), "tickets", ["merged_into_id"])
    op.create_index(
        "ix_tickets_open_priority_created",
        "tickets",
        ["priority", "created_at", "number"],
        postgresql_where=sa.text(OPEN_ONLY),
        sqlite_where=sa.text(OPEN_ONLY),
    )
    op.create_index(
        "ix_sla_clocks_at_risk",
        "sla_clocks",
        ["due_at"],
        postgresql_where=sa.text(AT_RISK),
        sqlite_where=sa.text(AT_RISK),
    )
    # every index of sla_clocks is written on each clock the scheduler marks: keep only the ones read
    op.drop_index("ix_sla_clocks_due_at", table_name="sla_clocks")
    op.drop_index("ix_sla_clocks_next_check_at", table_name="sla_clocks")
    op.create_index(
        "ix_sla_clocks_next_check_at",
        "sla_clocks",
        ["next_check_at"],
        postgresql_where=sa.text(TO_CHECK),
        sqlite_where=sa.text(TO_CHECK),
    )
    op.create_table(
        "ticket_watchers",
        sa.Column("ticket_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("added_by", sa.String(length=32), nullable=True),
        sa.Column("added_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_watchers_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_ticket_watchers_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("ticket_id", "user_id", name=op.f("pk_ticket_watchers")),
    )
    op.create_index(op.f("ix_ticket_watchers_user_id"), "ticket_watchers", ["user_id"])
    op.create_table(
        "ticket_tags",
        sa.Column("ticket_id", sa.String(length=32), nullable=False),
        sa.Column("tag", sa.String(length=48), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_tags_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("ticket_id", "tag", name=op.f("pk_ticket_tags")),
    )
    op.create_index("ix_ticket_tags_tag", "ticket_tags", ["tag", "ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_ticket_tags_tag", table_name="ticket_tags")
    op.drop_table("ticket_tags")
    op.drop_index(op.f("ix_ticket_watchers_user_id"), table_name="ticket_watchers")
    op.drop_table("ticket_watchers")
    op.drop_index("ix_sla_clocks_at_risk", table_name="sla_clocks")
    op.drop_index("ix_sla_clocks_next_check_at", table_name="sla_clocks")
    op.create_index("ix_sla_clocks_next_check_at", "sla_clocks", ["next_check_at"])
    op.create_index("ix_sla_clocks_due_at", "sla_clocks", ["due_at"])
    op.drop_index("ix_tickets_open_priority_created", table_name="tickets")
    op.drop_index(op.f("ix_tickets_merged_into_id"), table_name="tickets")
    op.drop_column("tickets", "merged_into_id")  # SQLite 3.35+ drops a plain column in place
