"""outbox.first_due_at: the due time a row was queued with, one recipient's sending order.

Retries and rate-limit deferrals move `due_at`; `first_due_at` never moves, so
the dispatcher can hold a customer's later messages behind an earlier one that
is waiting for its next try. Existing rows take their current `due_at`.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.core.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_due_at", bot.core.models.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE outbox SET first_due_at = due_at")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_customer_order", ["customer_id", "status", "first_due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_customer_order")
        batch_op.drop_column("first_due_at")
