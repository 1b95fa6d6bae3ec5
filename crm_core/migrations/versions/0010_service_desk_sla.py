"""service desk: ticket team, conversation, SLA calendars, policies, clocks and escalations

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_tickets_team", ["team"], unique=False)

    open_only = sa.text("status IN ('new', 'open', 'pending', 'on_hold')")
    op.create_index(
        "ix_tickets_open_created",
        "tickets",
        ["created_at", "number"],
        postgresql_where=open_only,
        sqlite_where=open_only,
    )

    op.create_table(
        "ticket_messages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ticket_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("author_id", sa.String(length=32), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_messages_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_ticket_messages_author_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_messages")),
    )
    op.create_index("ix_ticket_messages_ticket_created", "ticket_messages", ["ticket_id", "created_at"])

    op.create_table(
        "sla_calendars",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("blocks", sa.JSON(), nullable=False),
        sa.Column("holidays", sa.JSON(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_calendars")),
        sa.UniqueConstraint("team", name=op.f("uq_sla_calendars_team")),
    )
    op.create_table(
        "sla_policies",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("vip_tier", sa.String(length=16), nullable=True),
        sa.Column("calendar_id", sa.String(length=32), nullable=True),
        sa.Column("first_response_minutes", sa.Integer(), nullable=True),
        sa.Column("next_response_minutes", sa.Integer(), nullable=True),
        sa.Column("resolution_minutes", sa.Integer(), nullable=True),
        sa.Column("warning_percent", sa.Integer(), nullable=False),
        sa.Column("paused_statuses", sa.JSON(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["sla_calendars.id"],
            name=op.f("fk_sla_policies_calendar_id_sla_calendars"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_policies")),
    )
    op.create_table(
        "sla_clocks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ticket_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("policy_id", sa.String(length=32), nullable=True),
        sa.Column("calendar_id", sa.String(length=32), nullable=True),
        sa.Column("target_minutes", sa.Float(), nullable=False),
        sa.Column("warning_percent", sa.Integer(), nullable=False),
        sa.Column("used_minutes", sa.Float(), nullable=False),
        sa.Column("running_since", TS, nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("warn_at", TS, nullable=True),
        sa.Column("due_at", TS, nullable=True),
        sa.Column("next_check_at", TS, nullable=True),
        sa.Column("warned_at", TS, nullable=True),
        sa.Column("breached_at", TS, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("margin_minutes", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_sla_clocks_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["sla_policies.id"], name=op.f("fk_sla_clocks_policy_id_sla_policies"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["sla_calendars.id"],
            name=op.f("fk_sla_clocks_calendar_id_sla_calendars"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_clocks")),
    )
    op.create_index("ix_sla_clocks_ticket_kind", "sla_clocks", ["ticket_id", "kind"])
    op.create_index("ix_sla_clocks_due_at", "sla_clocks", ["due_at"])
    op.create_index("ix_sla_clocks_next_check_at", "sla_clocks", ["next_check_at"])
    op.create_table(
        "sla_escalation_rules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("policy_id", sa.String(length=32), nullable=True),
        sa.Column("clock_kind", sa.String(length=16), nullable=True),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("target_user_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["policy_id"],
            ["sla_policies.id"],
            name=op.f("fk_sla_escalation_rules_policy_id_sla_policies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_user_id"],
            ["users.id"],
            name=op.f("fk_sla_escalation_rules_target_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_escalation_rules")),
    )
    op.create_table(
        "sla_escalations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.String(length=32), nullable=False),
        sa.Column("clock_id", sa.String(length=32), nullable=False),
        sa.Column("ticket_id", sa.String(length=32), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("acted_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["sla_escalation_rules.id"],
            name=op.f("fk_sla_escalations_rule_id_sla_escalation_rules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["clock_id"], ["sla_clocks.id"], name=op.f("fk_sla_escalations_clock_id_sla_clocks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_sla_escalations_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_escalations")),
        sa.UniqueConstraint("rule_id", "clock_id", name="uq_sla_escalations_rule_clock"),
    )
    op.create_index("ix_sla_escalations_clock_id", "sla_escalations", ["clock_id"])
    op.create_index("ix_sla_escalations_ticket_id", "sla_escalations", ["ticket_id"])


def downgrade() -> None:
    op.drop_table("sla_escalations")
    op.drop_table("sla_escalation_rules")
    op.drop_table("sla_clocks")
    op.drop_table("sla_policies")
    op.drop_table("sla_calendars")
    op.drop_table("ticket_messages")
    op.drop_index("ix_tickets_open_created", table_name="tickets")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_team")
        batch_op.drop_column("team")
