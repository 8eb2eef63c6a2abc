"""handoff: agents who log in to the inbox, and escalation timestamps for ownership and SLA.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.core.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", bot.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", bot.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", bot.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_name"), ["name"], unique=True)
        batch_op.create_index(batch_op.f("ix_agent_token_sha256"), ["token_sha256"], unique=True)
    with op.batch_alter_table("escalation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assigned_at", bot.core.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("first_response_at", bot.core.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("resolved_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("ack_sent_at", bot.core.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_customer_message_at", bot.core.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("escalation", schema=None) as batch_op:
        for column in ("last_customer_message_at", "ack_sent_at", "resolved_by", "first_response_at", "assigned_at"):
            batch_op.drop_column(column)
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_token_sha256"))
        batch_op.drop_index(batch_op.f("ix_agent_name"))
    op.drop_table("agent")
