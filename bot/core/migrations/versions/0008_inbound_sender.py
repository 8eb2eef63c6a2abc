"""message.sender: who sent an inbound message that is acknowledged but not identified yet.

The webhooks' acknowledgement stores the message alone (one INSERT … ON CONFLICT
DO NOTHING, group-committed); finding or creating the customer and conversation
moves to processing, which reads the sender from this column and then clears it.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("sender")
