"""integrations: a commit-ordered feed cursor for logistics events, and Chatwoot links.

`logistics_event.feed_cursor` is assigned after commit, under one lock, so a
consumer paging with `GET /api/events?after=` can never skip an event that a
slower transaction committed later with a smaller `seq`.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.core.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("logistics_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("feed_cursor", sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f("ix_logistics_event_feed_cursor"), ["feed_cursor"], unique=True)
    op.create_table(
        "chatwoot_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("chatwoot_contact_id", sa.BigInteger(), nullable=True),
        sa.Column("chatwoot_conversation_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", bot.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", bot.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalation.id"]),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversation.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("chatwoot_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chatwoot_link_escalation_id"), ["escalation_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_chatwoot_link_chatwoot_conversation_id"), ["chatwoot_conversation_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("chatwoot_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chatwoot_link_chatwoot_conversation_id"))
        batch_op.drop_index(batch_op.f("ix_chatwoot_link_escalation_id"))
    op.drop_table("chatwoot_link")
    with op.batch_alter_table("logistics_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_logistics_event_feed_cursor"))
        batch_op.drop_column("feed_cursor")
