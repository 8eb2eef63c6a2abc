"""inbox: working escalations in the inbox (priority, tags, snooze, CSAT), agent roles,
internal notes and call outcomes, presence, and quick replies per locale.

Revision ID: 0011_inbox
Revises: 0010_email_viber
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.core.models

revision: str = "0011_inbox"
down_revision: str | None = "0010_email_viber"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = bot.core.models.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("escalation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.String(length=8), nullable=False, server_default="normal"))
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("snoozed_until", TS(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_agent_reply_at", TS(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("csat_score", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("csat_asked_at", TS(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("csat_at", TS(timezone=True), nullable=True))
        batch_op.create_index("ix_escalation_customer_id_created", ["customer_id", "created_at"])
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=False, server_default="agent"))
    op.create_table(
        "escalation_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=True),
        sa.Column("created_at", TS(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalation.id"]),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("escalation_note", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_escalation_note_escalation_id"), ["escalation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_escalation_note_customer_id"), ["customer_id"], unique=False)
    op.create_table(
        "inbox_presence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=100), nullable=False),
        sa.Column("seen_at", TS(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("escalation_id", "agent", name="uq_inbox_presence_escalation_agent"),
    )
    with op.batch_alter_table("inbox_presence", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_presence_escalation_id"), ["escalation_id"], unique=False)
    op.create_table(
        "quick_reply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=60), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS(timezone=True), nullable=False),
        sa.Column("updated_at", TS(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("locale", "label", name="uq_quick_reply_locale_label"),
    )
    with op.batch_alter_table("quick_reply", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quick_reply_locale"), ["locale"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quick_reply", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quick_reply_locale"))
    op.drop_table("quick_reply")
    with op.batch_alter_table("inbox_presence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_presence_escalation_id"))
    op.drop_table("inbox_presence")
    with op.batch_alter_table("escalation_note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_escalation_note_customer_id"))
        batch_op.drop_index(batch_op.f("ix_escalation_note_escalation_id"))
    op.drop_table("escalation_note")
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.drop_column("role")
    with op.batch_alter_table("escalation", schema=None) as batch_op:
        batch_op.drop_index("ix_escalation_customer_id_created")
        for column in ("csat_at", "csat_asked_at", "csat_score", "last_agent_reply_at", "snoozed_until", "tags",
                       "priority"):
            batch_op.drop_column(column)
