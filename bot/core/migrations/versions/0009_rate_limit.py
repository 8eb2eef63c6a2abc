"""rate_limit: provider rate limits shared by every process on one database.

One row per key (a Twilio sender, Telegram bot-wide, one chat or WhatsApp
recipient, hashed): when its next slot begins. Dispatchers reserve slots with
one atomic upsert per batch (bot.delivery.ratelimits).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("next_at", sa.Float(precision=53), nullable=False),
        sa.Column("spacing", sa.Float(precision=53), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit")
