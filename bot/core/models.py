"""Database tables (SQLModel). Schema changes go through alembic (bot/core/migrations).

Timestamps are stored and returned as timezone-aware UTC on SQLite and
PostgreSQL alike (`UTCDateTime`). Personal data lives only in customer,
order address/name and message text columns, so erasure knows where to look.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic_core import PydanticUndefined
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Relationship, SQLModel

T = TypeVar("T", bound=SQLModel)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops tzinfo)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


def _created() -> Any:
    """Stamped at flush from the session's clock (`bot.core.db`), never from the wall clock."""
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=False))


def _json(default: Any) -> Any:
    factory = (lambda: list(default)) if isinstance(default, list) else (lambda: dict(default))
    return Field(default_factory=factory, sa_column=sa.Column(sa.JSON(), nullable=False))


class Customer(SQLModel, table=True):
    __tablename__ = "customer"

    id: int | None = Field(default=None, primary_key=True)
    phone: str | None = Field(default=None, max_length=20, unique=True, index=True)  # E.164
    phone_hash: str | None = Field(default=None, max_length=64, index=True)  # salted, survives erasure
    name: str = Field(default="", max_length=200)
    telegram_chat_id: str | None = Field(default=None, max_length=32, unique=True, index=True)
    telegram_link_token: str | None = Field(default=None, max_length=64, unique=True, index=True)
    locale: str = Field(default="en", max_length=16)
    channel: str = Field(default="sms", max_length=16)  # preferred channel
    timezone: str | None = Field(default=None, max_length=64)
    opted_out_channels: list[str] = _json([])
    erased_at: datetime | None = _ts()
    created_at: datetime = _created()
    updated_at: datetime = _created()
    # 0010 (channels): email records and replies, Viber. `email_status`: None (deliverable), unsubscribed
    # (records stop; replies to the customer's own emails still go), bounced or complained (nothing goes).
    email: str | None = Field(default=None, max_length=254, index=True)
    email_status: str | None = Field(default=None, max_length=16)
    viber_user_id: str | None = Field(default=None, max_length=64, unique=True, index=True)


class Order(SQLModel, table=True):
    __tablename__ = "orders"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(max_length=64, unique=True, index=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    items: list[dict[str, Any]] = _json([])
    currency: str = Field(default="INR", max_length=3)
    total: Decimal = Field(default=Decimal("0"), sa_column=sa.Column(sa.Numeric(12, 2), nullable=False))
    payment_method: str = Field(default="prepaid", max_length=16)
    shipping_address: dict[str, Any] = _json({})
    promised_date: date | None = None
    carrier: str = Field(default="", max_length=100)
    tracking_number: str = Field(default="", max_length=100, index=True)
    tracking_url: str = Field(default="", max_length=500)
    status: str = Field(default="placed", max_length=32, index=True)
    delivery_date: date | None = None
    delivery_window: str | None = Field(default=None, max_length=16)
    cod_status: str | None = Field(default=None, max_length=16)
    address_status: str = Field(default="ok", max_length=32)
    eta: date | None = None  # latest carrier estimate (e.g. from a "delayed" event)
    delivered_at: datetime | None = _ts()
    extra: dict[str, Any] = _json({})  # flow bookkeeping: cancel reason, NPS score, …
    created_at: datetime = _created()
    updated_at: datetime = _created()
    # 0012_holdout (bot.core.holdout), fixed at creation: the global group (None = no experiment ran
    # then) and each measured journey's arm in the form ",shipped=h,delayed=t," (one LIKE finds an arm).
    holdout_group: str | None = Field(default=None, max_length=16, index=True)
    holdout_journeys: str = Field(default="", max_length=600)


class OrderEvent(SQLModel, table=True):
    __tablename__ = "order_event"
    __table_args__ = (sa.UniqueConstraint("order_pk", "dedupe_key", name="uq_order_event_dedupe"),)

    id: int | None = Field(default=None, primary_key=True)
    order_pk: int = Field(foreign_key="orders.id", index=True)
    type: str = Field(max_length=40)
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    eta: date | None = None
    note: str = Field(default="", max_length=2000)
    source: str = Field(default="api", max_length=16)  # api | carrier | bot | agent
    data: dict[str, Any] = _json({})
    dedupe_key: str | None = Field(default=None, max_length=200)
    created_at: datetime = _created()


class Conversation(SQLModel, table=True):
    """One per customer; the per-conversation lock is taken on this row."""

    __tablename__ = "conversation"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", unique=True, index=True)
    channel: str = Field(default="sms", max_length=16)  # where the customer last wrote
    flow: str | None = Field(default=None, max_length=40)
    state: str = Field(default="", max_length=60)
    slots: dict[str, Any] = _json({})
    owner: str = Field(default="bot", max_length=16)  # an Owner (bot/core/vocab.py): bot, waiting_human, human, resolved
    expires_at: datetime | None = _ts()
    misunderstandings: int = 0
    last_inbound_at: datetime | None = _ts()
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Message(SQLModel, table=True):
    """Every message in and out: the transcript and the message log."""

    __tablename__ = "message"
    __table_args__ = (sa.UniqueConstraint("channel", "provider_message_id", name="uq_message_provider_id"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int | None = Field(default=None, foreign_key="conversation.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    order_pk: int | None = Field(default=None, foreign_key="orders.id", index=True)
    direction: str = Field(max_length=3)  # in | out
    channel: str = Field(max_length=16)
    provider_message_id: str | None = Field(default=None, max_length=100)
    text: str = Field(default="", sa_column=sa.Column(sa.Text(), nullable=False))
    media_urls: list[str] = _json([])
    # in: received | processed | failed
    # out: scheduled | queued | held | sent | delivered | read | failed | cancelled | expired
    status: str = Field(default="received", max_length=16, index=True)
    intent: str | None = Field(default=None, max_length=32)
    confidence: float | None = None
    entities: list[dict[str, Any]] = _json([])
    template: str | None = Field(default=None, max_length=80)  # reply template or journey
    error_code: str | None = Field(default=None, max_length=32)
    error: str | None = Field(default=None, max_length=500)
    due_at: datetime | None = _ts()
    sent_at: datetime | None = _ts()
    processed_at: datetime | None = _ts()
    created_at: datetime = _created()
    # An inbound message acknowledged but not identified yet (conversation_id NULL): who sent it, as the
    # webhook saw it ({"phone", "telegram_chat_id", "profile_name", "link_token", "contact_phone"}).
    # Processing reads it to find or create the customer and conversation, then clears it (NULL).
    sender: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON(none_as_null=True), nullable=True))
    # out: the send planner's decision and why ({"channel", "form", "category", "price", "currency", "reason"};
    # bot.delivery.planner), shown in the message log and the inbox.
    plan: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON(none_as_null=True), nullable=True))


class Outbox(SQLModel, table=True):
    """Side effects written in the same transaction as the state change.

    kind = "message" (an outbound Message row, sent by the channel's sender),
    "webhook" (a LogisticsEvent delivered to LOGISTICS_WEBHOOK_URL), or any
    other registered sender kind. The dispatcher claims due rows
    (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and records the outcome here.
    """

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_due", "status", "due_at"),
                      sa.Index("ix_outbox_customer_order", "customer_id", "status", "first_due_at"))

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=24)
    channel: str | None = Field(default=None, max_length=16)
    status: str = Field(default="pending", max_length=16)  # pending | sending | sent | failed | dead | cancelled | expired | held
    priority: int = 0  # lower first: 0 replies, 10 transactional, 50 marketing
    due_at: datetime = _created()  # "now" unless the writer schedules it
    expires_at: datetime | None = _ts()
    attempts: int = 0
    max_attempts: int = 8
    claimed_until: datetime | None = _ts()
    claimed_by: str | None = Field(default=None, max_length=64)
    message_id: int | None = Field(default=None, foreign_key="message.id", index=True)
    event_id: str | None = Field(default=None, max_length=40, index=True)
    order_pk: int | None = Field(default=None, foreign_key="orders.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    payload: dict[str, Any] = _json({})
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    provider_id: str | None = Field(default=None, max_length=100)
    last_error: str | None = Field(default=None, max_length=500)
    sent_at: datetime | None = _ts()
    created_at: datetime = _created()
    updated_at: datetime = _created()
    # 0007: the due time the row was queued with. Retries and deferrals move `due_at`, never this:
    # it is one recipient's sending order (bot.delivery.dispatcher), so a retried reply keeps its place.
    first_due_at: datetime | None = _ts()
    # The queued message itself, for rows queued in this session: the unit of work inserts the message
    # first and fills `message_id`, so queuing needs no flush of its own and a batch's replies are one
    # INSERT per table. Never loaded from the database (read `message_id`).
    message: Message | None = Relationship(sa_relationship=sa.orm.relationship(Message, lazy="raise"))


class LogisticsEvent(SQLModel, table=True):
    """The logistics feed (`GET /api/events`); `feed_cursor` is the stable cursor."""

    __tablename__ = "logistics_event"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=40, unique=True, index=True)  # evt_…, also the webhook-id
    type: str = Field(max_length=40)
    order_id: str | None = Field(default=None, max_length=64, index=True)
    data: dict[str, Any] = _json({})
    created_at: datetime = _created()
    # Assigned after commit, in commit order (integrations, 0006): `seq` alone can let a
    # slower transaction's smaller seq appear behind a consumer's cursor on PostgreSQL.
    feed_cursor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), nullable=True, unique=True,
                                                                       index=True))


class Escalation(SQLModel, table=True):
    __tablename__ = "escalation"
    __table_args__ = (sa.Index("ix_escalation_customer_id_created", "customer_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    order_pk: int | None = Field(default=None, foreign_key="orders.id")
    reason: str = Field(max_length=40)
    note: str = Field(default="", max_length=2000)
    status: str = Field(default="open", max_length=16, index=True)  # open | assigned | resolved
    assignee: str | None = Field(default=None, max_length=100)
    context: dict[str, Any] = _json({})
    sla_due_at: datetime | None = _ts(index=True)
    resolved_at: datetime | None = _ts()
    created_at: datetime = _created()
    updated_at: datetime = _created()
    # 0004_handoff
    assigned_at: datetime | None = _ts()
    first_response_at: datetime | None = _ts()  # first agent reply (SLA met or missed)
    resolved_by: str | None = Field(default=None, max_length=100)
    ack_sent_at: datetime | None = _ts()  # the one "an agent will reply shortly" acknowledgement
    last_customer_message_at: datetime | None = _ts()
    # 0011_inbox: working the escalation in the inbox
    priority: str = Field(default="normal", max_length=8)  # low | normal | high | urgent
    tags: list[str] = _json([])
    snoozed_until: datetime | None = _ts()  # hidden from the working views until then (or the customer writes)
    last_agent_reply_at: datetime | None = _ts()  # "waiting on customer" when later than their last message
    csat_score: int | None = None  # 1-5, the customer's one-tap answer after the resolve
    csat_asked_at: datetime | None = _ts()
    csat_at: datetime | None = _ts()


class Agent(SQLModel, table=True):
    """A support agent who can log in to /inbox with a personal token (only its SHA-256 is stored)."""

    __tablename__ = "agent"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True, index=True)
    token_sha256: str = Field(max_length=64, unique=True, index=True)
    revoked_at: datetime | None = _ts()
    last_seen_at: datetime | None = _ts()
    created_at: datetime = _created()
    role: str = Field(default="agent", max_length=16)  # 0011_inbox: viewer | agent | supervisor


class EscalationNote(SQLModel, table=True):
    """The inbox's internal record of an escalation: notes, call outcomes, order actions, hand-overs.

    Never sent to the customer. `body` may hold what an agent wrote about the customer, so erasure
    clears it with the rest of the customer's data."""

    __tablename__ = "escalation_note"

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalation.id", index=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    kind: str = Field(max_length=16)  # note | call | action | assign
    author: str = Field(max_length=100)
    body: str = Field(default="", sa_column=sa.Column(sa.Text(), nullable=False))
    outcome: str | None = Field(default=None, max_length=40)  # a call's outcome, an action's name
    created_at: datetime = _created()


class InboxPresence(SQLModel, table=True):
    """Who has an escalation open in the inbox right now (their page's heartbeat), for the
    "another agent is here" warning. Rows older than `casework.PRESENCE_SECONDS` mean nothing."""

    __tablename__ = "inbox_presence"
    __table_args__ = (sa.UniqueConstraint("escalation_id", "agent", name="uq_inbox_presence_escalation_agent"),)

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalation.id", index=True)
    agent: str = Field(max_length=100)
    seen_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class QuickReply(SQLModel, table=True):
    """A canned reply for the inbox, per locale; `{{name}}`, `{{order_id}}`, `{{delivery_date}}` are filled in."""

    __tablename__ = "quick_reply"
    __table_args__ = (sa.UniqueConstraint("locale", "label", name="uq_quick_reply_locale_label"),)

    id: int | None = Field(default=None, primary_key=True)
    locale: str = Field(max_length=16, index=True)
    label: str = Field(max_length=60)
    text: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    position: int = 0
    updated_by: str = Field(default="", max_length=100)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class KeyValue(SQLModel, table=True):
    """Small persistent settings the service generates itself (e.g. the API key hash)."""

    __tablename__ = "kv"

    key: str = Field(primary_key=True, max_length=100)
    value: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    updated_at: datetime = _created()


class RateLimit(SQLModel, table=True):
    """One provider rate limit shared by every process on the database (bot.delivery.ratelimits).

    `next_at` (epoch seconds, wall clock) is when the key's next slot begins; a reservation moves it
    on in one atomic upsert. `spacing` (seconds between slots, margin included) and `burst` describe
    the key; `granted` is how many slots the last reservation got. A row whose `next_at` has passed
    limits nothing, so stale rows are pruned. Per-recipient keys hold a hash, never a phone number
    or chat id.
    """

    __tablename__ = "rate_limit"

    key: str = Field(primary_key=True, max_length=100)
    next_at: float = Field(sa_column=sa.Column(sa.Float(precision=53), nullable=False))
    spacing: float = Field(sa_column=sa.Column(sa.Float(precision=53), nullable=False))
    burst: int = 1
    granted: int = 0


class JourneyTimer(SQLModel, table=True):
    """A journey step that must be decided when it falls due, not when it is planned
    (COD reminder / escalation, NPS survey): the tick job claims due rows
    (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and re-checks the order first.
    Rows, not in-memory jobs, so a restart loses none."""

    __tablename__ = "journey_timer"
    __table_args__ = (sa.Index("ix_journey_timer_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)  # cod_reminder | cod_escalation | feedback
    order_pk: int = Field(foreign_key="orders.id", index=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    status: str = Field(default="pending", max_length=16)  # pending | done | skipped | cancelled
    due_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    dedupe_key: str = Field(max_length=200, unique=True)
    outcome: str | None = Field(default=None, max_length=200)
    fired_at: datetime | None = _ts()
    created_at: datetime = _created()


class ChatwootLink(SQLModel, table=True):
    """An escalation mirrored into a Chatwoot conversation (integrations, 0006)."""

    __tablename__ = "chatwoot_link"

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalation.id", unique=True, index=True)
    conversation_id: int = Field(foreign_key="conversation.id")
    chatwoot_contact_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), nullable=True))
    chatwoot_conversation_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), nullable=True,
                                                                                   index=True))
    status: str = Field(default="pending", max_length=16)  # pending | open | resolved
    created_at: datetime = _created()
    updated_at: datetime = _created()


class ConsentEvent(SQLModel, table=True):
    """The consent ledger: every opt-in and opt-out of a customer on a channel, with its source and time.

    Append-only (never updated): `Customer.opted_out_channels` is the current state, this is its history,
    exportable per customer (`doorstep consent export`, `GET /api/customers/{id}/consent`)."""

    __tablename__ = "consent_event"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    channel: str = Field(max_length=16)
    consent: str = Field(max_length=3)  # in | out
    source: str = Field(max_length=32)  # keyword | button | provider | api | agent | import
    detail: str = Field(default="", max_length=200)  # the keyword, the provider error code, …
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False, index=True))


class WhatsAppContent(SQLModel, table=True):
    """Twilio Content templates kept by `doorstep whatsapp sync-templates`: one row per template name."""

    __tablename__ = "whatsapp_content"

    name: str = Field(primary_key=True, max_length=64)
    content_sid: str = Field(max_length=34)
    definition_hash: str = Field(max_length=16)  # a changed definition is created anew
    category: str | None = Field(default=None, max_length=32)  # WhatsApp's category now (it may change it)
    requested_category: str | None = Field(default=None, max_length=32)
    approval_status: str = Field(default="unsubmitted", max_length=32)  # approved | pending | rejected | …
    rejection_reason: str | None = Field(default=None, max_length=500)
    updated_at: datetime = _created()


# ------------------------------------------------------------------ building rows on the hot path

# Per table model: its fields as (name, default, factory), its relationships' names, and the
# SQLAlchemy class manager that makes an instance with its state (as the ORM's loader does).
_IMMUTABLE = (type(None), str, bytes, bool, int, float, Decimal, date, datetime)
_Fields = tuple[tuple[tuple[str, Any, Callable[[], Any] | None], ...], frozenset[str], Any]
_FIELDS: dict[type, _Fields] = {}


def _fields(cls: type[SQLModel]) -> _Fields:
    found = _FIELDS.get(cls)
    if found is None:
        fields = []
        for name, field in cls.model_fields.items():
            if field.default_factory_takes_validated_data:
                raise TypeError(f"{cls.__name__}.{name}: a default factory of the validated data is not supported")
            default, factory = field.default, field.default_factory
            if factory is None and not isinstance(default, _IMMUTABLE) and default is not PydanticUndefined:
                factory = functools.partial(copy.deepcopy, default)  # as pydantic does: no row shares a mutable default
            fields.append((name, default, factory))
        relationships = frozenset(getattr(cls, "__sqlmodel_relationships__", ()))
        found = _FIELDS[cls] = (tuple(fields), relationships, sa.orm.class_mapper(cls).class_manager)  # type: ignore[arg-type]
    return found


def new_row(cls: type[T], **values: Any) -> T:
    """A new row object, the same as `cls(**values)` gives (every field set, defaults filled in), at a
    fraction of the cost: SQLModel's constructor sets each field through pydantic's and SQLAlchemy's
    attribute machinery (≈ 5 µs a field: 110 µs a Message, 100 an Outbox), twice per reply. Here the
    values go straight into the object's `__dict__`, which is where SQLAlchemy reads a new row's
    INSERT from and where pydantic keeps its fields; relationships are set the usual way (their events
    cascade the save and fill the foreign key at flush). Neither path validates (SQLModel does not
    validate table models). An unknown name is a TypeError, a missing required field too."""
    fields, relationships, manager = _fields(cls)
    row: T = manager.new_instance()  # SQLModel.__new__ + the instance's state
    state = row.__dict__
    given = set(values)
    for name, default, factory in fields:
        if name in values:
            state[name] = values.pop(name)
        elif factory is not None:
            state[name] = factory()
        elif default is PydanticUndefined:
            raise TypeError(f"{cls.__name__}: {name} is required")
        else:
            state[name] = default
    object.__setattr__(row, "__pydantic_fields_set__", given - relationships)
    for name, value in values.items():
        if name not in relationships:
            raise TypeError(f"{cls.__name__} has no field {name!r}")
        setattr(row, name, value)
    return row
