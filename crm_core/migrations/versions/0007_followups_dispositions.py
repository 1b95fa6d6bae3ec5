"""missed-call follow-up marks; the dispositions a fresh install wraps up with

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The codes the desktop offers out of the box; admins rename, add or switch them off later.
DEFAULT_DISPOSITIONS = (
    ("resolved", "Resolved"),
    ("follow_up", "Needs follow-up"),
    ("callback", "Call back"),
    ("sale", "Sale"),
    ("no_sale", "No sale"),
    ("complaint", "Complaint"),
    ("wrong_number", "Wrong number"),
    ("escalated", "Escalated"),
)


def upgrade() -> None:
    op.create_table(
        "missed_call_followups",
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("handled_by", sa.String(length=32), nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call_logs.id"], name=op.f("fk_missed_call_followups_call_id_call_logs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["handled_by"], ["users.id"], name=op.f("fk_missed_call_followups_handled_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_missed_call_followups")),
    )
    with op.batch_alter_table("call_logs", schema=None) as batch_op:
        batch_op.create_index("ix_call_logs_outcome_offered", ["outcome", "offered_at"], unique=False)
    dispositions = sa.table(
        "dispositions", sa.column("code", sa.String), sa.column("label", sa.String), sa.column("active", sa.Boolean)
    )
    present = {row[0] for row in op.get_bind().execute(sa.select(dispositions.c.code))}
    missing = [{"code": c, "label": label, "active": True} for c, label in DEFAULT_DISPOSITIONS if c not in present]
    if missing:
        op.bulk_insert(dispositions, missing)


def downgrade() -> None:
    with op.batch_alter_table("call_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_call_logs_outcome_offered")
    op.drop_table("missed_call_followups")
