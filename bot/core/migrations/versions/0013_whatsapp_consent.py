"""whatsapp_consent: the consent ledger, synced WhatsApp Content templates, the send plan of a message.

Revision ID: 0013_whatsapp_consent
Revises: 0012_holdout
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import UTCDateTime

revision: str = "0013_whatsapp_consent"
down_revision: str | None = "0012_holdout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("consent", sa.String(length=3), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consent_event_customer_id", "consent_event", ["customer_id"])
    op.create_index("ix_consent_event_at", "consent_event", ["at"])
    op.create_table(
        "whatsapp_content",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("content_sid", sa.String(length=34), nullable=False),
        sa.Column("definition_hash", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("requested_category", sa.String(length=32), nullable=True),
        sa.Column("approval_status", sa.String(length=32), nullable=False),
        sa.Column("rejection_reason", sa.String(length=500), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.add_column("message", sa.Column("plan", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.drop_column("message", "plan")
    op.drop_table("whatsapp_content")
    op.drop_index("ix_consent_event_at", table_name="consent_event")
    op.drop_index("ix_consent_event_customer_id", table_name="consent_event")
    op.drop_table("consent_event")
