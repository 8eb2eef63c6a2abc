"""holdout: each order's holdout groups, fixed when it is created (bot.core.holdout).

`holdout_group` is the global group (NULL: no experiment ran when the order was created, so
the report leaves it out); `holdout_journeys` each measured journey's arm, e.g. ",shipped=h,".

Revision ID: 0012_holdout
Revises: 0011_inbox
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_holdout"
down_revision: str | None = "0011_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("holdout_group", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("holdout_journeys", sa.String(length=600), nullable=False, server_default=""))
        batch.create_index("ix_orders_holdout_group", ["holdout_group"])


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_index("ix_orders_holdout_group")
        batch.drop_column("holdout_journeys")
        batch.drop_column("holdout_group")
