"""journeys: the journey_timer table (COD reminders/escalations, NPS surveys).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.core.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journey_timer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("order_pk", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_at", bot.core.models.UTCDateTime(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.Column("fired_at", bot.core.models.UTCDateTime(), nullable=True),
        sa.Column("created_at", bot.core.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.ForeignKeyConstraint(["order_pk"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index("ix_journey_timer_due", "journey_timer", ["status", "due_at"])
    op.create_index(op.f("ix_journey_timer_order_pk"), "journey_timer", ["order_pk"])
    op.create_index(op.f("ix_journey_timer_customer_id"), "journey_timer", ["customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_journey_timer_customer_id"), table_name="journey_timer")
    op.drop_index(op.f("ix_journey_timer_order_pk"), table_name="journey_timer")
    op.drop_index("ix_journey_timer_due", table_name="journey_timer")
    op.drop_table("journey_timer")
