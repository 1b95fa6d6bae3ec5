"""transcription switched off for one call or one queue

Revision ID: 0019
Revises: 0011
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transcription_optouts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("set_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call_logs.id"], name=op.f("fk_transcription_optouts_call_id_call_logs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcription_optouts")),
        sa.UniqueConstraint("call_id", name=op.f("uq_transcription_optouts_call_id")),
        sa.UniqueConstraint("queue", name=op.f("uq_transcription_optouts_queue")),
    )


def downgrade() -> None:
    op.drop_table("transcription_optouts")
