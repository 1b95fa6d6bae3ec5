"""generic CTI: PBX user names mapped to CRM users, per named PBX

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-03 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pbx_user_mappings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("pbx", sa.String(length=20), nullable=False),
        sa.Column("pbx_user", sa.String(length=200), nullable=False),
        sa.Column("pbx_user_key", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_pbx_user_mappings_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pbx_user_mappings")),
        sa.UniqueConstraint("pbx", "pbx_user_key", name="uq_pbx_user_mappings_pbx_user"),
    )
    with op.batch_alter_table("pbx_user_mappings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pbx_user_mappings_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pbx_user_mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pbx_user_mappings_user_id"))
    op.drop_table("pbx_user_mappings")
