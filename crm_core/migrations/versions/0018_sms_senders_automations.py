"""SMS: senders as a table (rate, price, country default, A2P 10DLC), campaign pools and schedules, CSV merge
values, and switchable automations with their sends

Revision ID: 0018
Revises: 0011
Create Date: 2026-12-03 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sms_senders",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("mps", sa.Float(), nullable=False),
        sa.Column("price_per_segment", sa.Float(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("a2p_10dlc_registered", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_senders")),
        sa.UniqueConstraint("address", name=op.f("uq_sms_senders_address")),
    )
    op.create_table(
        "sms_automations",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("delay_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sms_automations")),
    )
    op.create_table(
        "sms_automation_sends",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("automation", sa.String(length=32), nullable=False),
        sa.Column("occasion", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=True),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_sms_automation_sends_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_automation_sends")),
        sa.UniqueConstraint("automation", "occasion", name=op.f("uq_sms_automation_sends_automation")),
    )
    with op.batch_alter_table("sms_automation_sends", schema=None) as batch_op:
        batch_op.create_index("ix_sms_automation_sends_customer_id", ["customer_id"], unique=False)
    with op.batch_alter_table("sms_campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender_pool", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("audience", sa.String(length=200), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("audience_report", sa.JSON(), nullable=True))
    with op.batch_alter_table("sms_campaigns", schema=None) as batch_op:
        batch_op.alter_column("sender_pool", server_default=None)
        batch_op.alter_column("audience", server_default=None)
    with op.batch_alter_table("sms_campaign_recipients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merge_values", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sms_campaign_recipients", schema=None) as batch_op:
        batch_op.drop_column("merge_values")
    with op.batch_alter_table("sms_campaigns", schema=None) as batch_op:
        batch_op.drop_column("audience_report")
        batch_op.drop_column("audience")
        batch_op.drop_column("scheduled_at")
        batch_op.drop_column("sender_pool")
    with op.batch_alter_table("sms_automation_sends", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_automation_sends_customer_id")
    op.drop_table("sms_automation_sends")
    op.drop_table("sms_automations")
    op.drop_table("sms_senders")
