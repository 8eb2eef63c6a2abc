"""customer.email, email_status, viber_user_id: the email and Viber channels (issue 18).

`email` is where order records and replies by email go (not unique: a household may share one);
`email_status` is None while mail can go there, else unsubscribed / bounced / complained;
`viber_user_id` is the Viber user linked to the customer (deep link with the customer's link token).

Revision ID: 0010_email_viber
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_email_viber"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("email_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("viber_user_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_customer_email", ["email"], unique=False)
        batch_op.create_index("ix_customer_viber_user_id", ["viber_user_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_viber_user_id")
        batch_op.drop_index("ix_customer_email")
        batch_op.drop_column("viber_user_id")
        batch_op.drop_column("email_status")
        batch_op.drop_column("email")
