"""The contact policy: whether, when, where and in which words one journey message goes.

Every proactive message goes through `ContactPolicy.plan`: the customer's preferred channel (Telegram
only once linked, else SMS); nothing for an opted-out or erased customer; quiet hours in the customer's
time zone move a message to the next allowed time (a customer who wrote in the last half hour is awake);
frequency caps drop optional messages only (marketing, reminders), logged as `cancelled` with the
reason; dedupe on the outbox key. Also opens the flow a proactive question belongs to, never in a
conversation a person owns or another live dialog.
"""


from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from bot.core import replies, whatsapp_templates
from bot.core.db import Database
from bot.core.models import Conversation, Customer, Message, Order, Outbox
from bot.core.runtime import Runtime
from bot.core.settings import Settings
from bot.core.shopconfig import parse_duration, parse_quiet_hours
from bot.core.vocab import (
    HUMAN_OWNERS,
    MARKETING_JOURNEYS,
    REMINDER_JOURNEYS,
    template_key,
)
from bot.journeys import records
from bot.store import conversations, outbox
from bot.store.orders import holdout_of, order_view

log = logging.getLogger(__name__)

AWAKE_WINDOW = timedelta(minutes=30)  # a customer who just wrote is awake: quiet hours do not hold replies
FEEDBACK_FLOW = "feedback"


@dataclass(frozen=True)
class Planned:
    """What the policy decided for one journey message (for tests, simulate and logs)."""

    journey: str
    decision: str  # queued | scheduled | capped | opted_out | disabled | holdout | duplicate | stale | no_channel
    message: Message | None = None
    due_at: datetime | None = None
    channel: str | None = None


def phone_timezone(phone: str, shop_timezone: str) -> str | None:
    """The time zone of a phone number's region (libphonenumber); the shop's when it is one of several,
    else the westernmost of them."""
    import phonenumbers
    from phonenumbers import timezone as phone_timezones

    try:
        zones = phone_timezones.time_zones_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return None
    zones = tuple(z for z in zones if z != phone_timezones.UNKNOWN_TIMEZONE)
    if not zones:
        return None
    if shop_timezone in zones:
        return shop_timezone
    # Several zones (Spain: Madrid and the Canaries): the one that wakes up last, so nobody is woken.
    probe = datetime(2026, 1, 15, 12, tzinfo=UTC)
    return min(zones, key=lambda z: probe.astimezone(ZoneInfo(z)).utcoffset() or timedelta(0))



class ContactPolicy:
    """The shop's journey configuration and the rules every proactive message obeys."""

    def __init__(self, *, db: Database, runtime: Runtime, settings: Settings) -> None:
        self.db = db
        self.runtime = runtime
        self.settings = settings
        try:  # fail at start, not on the first order at 9 pm
            parse_quiet_hours(self.quiet_hours_text())
        except ValueError as exc:
            source = "DOORSTEP_QUIET_HOURS" if settings.quiet_hours is not None else "contact_policy.quiet_hours"
            raise ValueError(f"{source}: {exc}") from None
        try:
            parse_duration(settings.voice_call_after)
        except ValueError as exc:
            raise ValueError(f"DOORSTEP_VOICE_CALL_AFTER: {exc}") from None

    # ------------------------------------------------------------ config

    @property
    def config(self) -> dict[str, Any]:
        return self.runtime.shop_config

    def spec(self, journey: str) -> dict[str, Any]:
        spec: dict[str, Any] = self.config.get("journeys", {}).get(journey, {})
        return spec

    def enabled(self, journey: str) -> bool:
        return bool(self.spec(journey).get("enabled", False))

    def quiet_hours_text(self) -> str:
        env = self.settings.quiet_hours
        if env is not None:
            return env
        return str(self.config.get("contact_policy", {}).get("quiet_hours", ""))

    def caps(self) -> dict[str, int]:
        caps: dict[str, int] = self.config.get("contact_policy", {}).get("caps", {})
        return caps

    def customer_timezone(self, customer: Customer) -> ZoneInfo:
        """The recipient's time zone: the customer's own, else their phone number's, else the shop's."""
        shop = self.runtime.timezone
        name = customer.timezone or (phone_timezone(customer.phone, shop) if customer.phone else None) or shop
        try:
            return ZoneInfo(name)
        except Exception:  # an unknown zone name must not stop a journey
            return ZoneInfo("UTC")

    # ------------------------------------------------------------ the contact policy

    def plan(self, session: Session, *, journey: str, order: Order, customer: Customer, dedupe_key: str,
             now: datetime, delay: timedelta | None = None, extra_vars: dict[str, Any] | None = None,
             opens_flow: str | None = None) -> Planned:
        """Decide whether, when and where one journey message goes, and queue it.

        `opens_flow` names the flow that reads the answer to this message ("cod" for the COD question):
        recorded with it, so a message held while a person owned the conversation opens its flow when it
        is released at hand-back."""
        spec = self.spec(journey)
        if not spec.get("enabled", False):
            return Planned(journey, "disabled")
        if holdout_of(order).holds_out(journey):
            return Planned(journey, "holdout")  # the order measures life without this journey (bot.core.holdout)
        if customer.erased_at is not None or customer.opted_out_channels:
            return Planned(journey, "opted_out")
        channel = self.channel_for(customer, spec)
        if channel is None:
            return Planned(journey, "no_channel")
        if session.exec(select(Outbox.id).where(Outbox.dedupe_key == dedupe_key)).first():
            return Planned(journey, "duplicate")
        due = now + (delay if delay is not None else parse_duration(spec.get("delay", "0m")))
        conversation = self.conversation(session, customer, channel)
        awake = conversation.last_inbound_at is not None and now - conversation.last_inbound_at <= AWAKE_WINDOW
        if not (awake and due <= now):
            due = self.next_allowed(due, customer)
        marketing = spec.get("priority") == "marketing"
        template = str(spec.get("template") or template_key(journey, cod=order.payment_method == "cod"))
        text = self.render(template, order=order, customer=customer, extra_vars=extra_vars or {})
        # Outside the WhatsApp window the message goes as its own approved template: its variables' values.
        values = (self.template_values(template, order=order, customer=customer, extra_vars=extra_vars or {})
                  if channel == "whatsapp" else None)
        # A question the template asks with buttons is asked with the same buttons inside the window too.
        definition = whatsapp_templates.for_kind(template) if channel == "whatsapp" else None
        buttons = definition.session_buttons(customer.locale) if definition is not None else []
        # Caps drop optional messages only (marketing, reminders): news is never dropped.
        optional = marketing or journey in REMINDER_JOURNEYS
        cap_reason = (self.cap_exceeded(session, order=order, customer=customer, due=due, marketing=marketing)
                      if optional else None)
        message = outbox.enqueue_message(
            session=session, customer=customer, channel=channel, text=text, conversation_id=conversation.id,
            order_pk=order.id, template=template, due_at=due, dedupe_key=dedupe_key, buttons=buttons or None,
            priority=outbox.PRIORITY_MARKETING if marketing else outbox.PRIORITY_TRANSACTIONAL,
            expires_at=due + parse_duration(spec.get("valid_for", "24h")),
            payload={"journey": journey, "marketing": marketing, "fallback_channel": "sms",
                     **({"opens_flow": opens_flow} if opens_flow else {}),
                     **({"whatsapp_values": values} if values is not None else {}),
                     **({"email": records.email_context(journey, order, customer, self.settings)}
                        if channel == "email" else {})},
            now=now,
        )
        if message is None:
            return Planned(journey, "duplicate")
        if cap_reason is not None:
            # Logged rather than silently skipped, so "why did they not hear from us" has an answer.
            self._cancel_message(session, message, reason=cap_reason, code="frequency_cap", now=now)
            return Planned(journey, "capped", message, due, channel)
        if channel != "email":
            records.queue_email_record(session, settings=self.settings, journey=journey, order=order,
                                       customer=customer, text=text, conversation_id=conversation.id,
                                       dedupe_key=dedupe_key, now=now)
        return Planned(journey, "scheduled" if due > now else "queued", message, due, channel)

    def plan_call(self, session: Session, *, journey: str, order: Order, customer: Customer, now: datetime,
                  extra_vars: dict[str, Any] | None = None, followup: Message | None = None) -> Planned:
        """A voice call for an action-required moment a text left unanswered (`DOORSTEP_VOICE_CALLS`).

        The call is an outbox message on the `voice` channel (its text is what the call says, from
        `voice.<journey>`), filed under the journey's template so an answer by text cancels a call still
        waiting; quiet hours hold it like any proactive message. It carries the journey's text message,
        queued if the call ends unanswered or on a voicemail (`followup`: the question as it went out, for
        a question a flow wrote)."""
        if not self.settings.voice_calls:
            return Planned(journey, "disabled")
        if holdout_of(order).holds_out(journey):
            return Planned(journey, "holdout")  # a call is that journey by voice: held out with it
        if customer.erased_at is not None or customer.opted_out_channels:
            return Planned(journey, "opted_out")
        if not customer.phone:
            return Planned(journey, "no_channel")
        dedupe_key = f"call:{journey}:{order.id}"
        if session.exec(select(Outbox.id).where(Outbox.dedupe_key == dedupe_key)).first():
            return Planned(journey, "duplicate")
        due = self.next_allowed(now, customer)
        variables = extra_vars or {}
        template = followup.template if followup is not None else template_key(journey, cod=order.payment_method == "cod")
        text = self.render(f"voice.{journey}", order=order, customer=customer, extra_vars=variables)
        followup_text = (followup.text if followup is not None
                         else self.render(template or "", order=order, customer=customer, extra_vars=variables))
        conversation = self.conversation(session, customer, customer.channel)  # a new one stays on text
        message = outbox.enqueue_message(
            session=session, customer=customer, channel="voice", text=text, conversation_id=conversation.id,
            order_pk=order.id, template=template, due_at=due, dedupe_key=dedupe_key,
            priority=outbox.PRIORITY_TRANSACTIONAL,
            expires_at=due + parse_duration(self.spec(journey).get("valid_for", "12h")),
            payload={"journey": journey, "call": journey, "followup_text": followup_text}, now=now)
        if message is None:
            return Planned(journey, "duplicate")
        return Planned(journey, "scheduled" if due > now else "queued", message, due, "voice")

    def channel_for(self, customer: Customer, spec: dict[str, Any]) -> str | None:
        wanted = str(spec.get("channel") or "preferred")
        channel = customer.channel if wanted == "preferred" else wanted
        if channel == "telegram" and not customer.telegram_chat_id:
            channel = "sms"  # not linked yet: SMS carries the deep link
        if channel == "email" and not (self.settings.email.configured and records.email_deliverable(customer)):
            channel = "sms"
        if channel == "viber" and not (self.settings.viber.configured and customer.viber_user_id):
            channel = "sms"  # not linked (or Viber not set up): SMS carries the news
        if channel != "telegram" and not customer.phone:
            return "telegram" if customer.telegram_chat_id else None
        return channel

    def next_allowed(self, due: datetime, customer: Customer) -> datetime:
        """`due`, or the end of the quiet hours it falls in (customer's timezone)."""
        quiet = parse_quiet_hours(self.quiet_hours_text())
        if quiet is None:
            return due
        tz = self.customer_timezone(customer)
        local = due.astimezone(tz)
        if not quiet.contains(local.time()):
            return due
        end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
        if end <= local:
            end = end + timedelta(days=1)
        # Re-localise so a DST change overnight still lands on the wall-clock end time.
        end = datetime.combine(end.date(), quiet.end, tzinfo=tz)
        return end.astimezone(UTC)

    def cap_exceeded(self, session: Session, *, order: Order, customer: Customer, due: datetime,
                     marketing: bool) -> str | None:
        caps = self.caps()
        live = ("scheduled", "queued", "sent", "delivered", "read")
        per_day = caps.get("per_order_per_day")
        if per_day is not None:
            tz = self.customer_timezone(customer)
            day_start = datetime.combine(due.astimezone(tz).date(), datetime.min.time(), tzinfo=tz).astimezone(UTC)
            count = len(session.exec(select(Message.id).where(
                Message.order_pk == order.id, Message.direction == "out", col(Message.template).startswith("journey."),
                col(Message.status).in_(live), col(Message.due_at) >= day_start,
                col(Message.due_at) < day_start + timedelta(days=1),
            )).all())
            if count >= per_day:
                return f"frequency cap: {per_day} proactive messages per order per day"
        per_week = caps.get("marketing_per_customer_per_week")
        if marketing and per_week is not None:
            templates = [template_key(j) for j in MARKETING_JOURNEYS]
            count = len(session.exec(select(Message.id).where(
                Message.customer_id == customer.id, Message.direction == "out", col(Message.template).in_(templates),
                col(Message.status).in_(live), col(Message.due_at) > due - timedelta(days=7),
                col(Message.due_at) < due + timedelta(days=7),
            )).all())
            if count >= per_week:
                return f"frequency cap: {per_week} marketing messages per customer per week"
        return None

    def render(self, template: str, *, order: Order, customer: Customer, extra_vars: dict[str, Any]) -> str:
        today = self.runtime.now().astimezone(self.customer_timezone(customer)).date()
        return replies.render(template, customer.locale, today=today,
                              **self.variables(order=order, customer=customer, extra_vars=extra_vars))

    def template_values(self, template: str, *, order: Order, customer: Customer,
                        extra_vars: dict[str, Any]) -> dict[str, str] | None:
        """The named values of `template`'s WhatsApp template (data/whatsapp_templates.yml) in the customer's
        language, or None when the message kind has none."""
        definition = whatsapp_templates.for_kind(template)
        if definition is None:
            return None
        today = self.runtime.now().astimezone(self.customer_timezone(customer)).date()
        return definition.render_values(customer.locale, self.variables(order=order, customer=customer,
                                                                         extra_vars=extra_vars), today)

    def variables(self, *, order: Order, customer: Customer, extra_vars: dict[str, Any]) -> dict[str, Any]:
        """What a journey's text is rendered from."""
        view = order_view(order)
        username = self.settings.telegram_bot_username.lstrip("@")
        deep_link = (f"https://t.me/{username}?start={customer.telegram_link_token}"
                     if username and customer.telegram_link_token and not customer.telegram_chat_id else "")
        variables = {
            "shop_name": self.config.get("shop_name", ""),  # empty = the locale's wording
            "support_contact": self.config.get("support_contact", ""),
            "customer_name": customer.name.split(" ")[0] if customer.name else "",
            "order": view,
            "items": view.item_names,
            "expected": view.expected_date,
            "deep_link": deep_link,
            "review_link": self.config.get("review_link", ""),
            **extra_vars,
        }
        return variables

    # ------------------------------------------------------------ obsolescence


    def _cancel_message(self, session: Session, message: Message, *, reason: str, code: str, now: datetime) -> None:
        row = session.exec(select(Outbox).where(Outbox.message_id == message.id)).first()
        if row is not None:
            outbox.cancel_row(session, row, message, reason=reason, now=now, code=code)


    # ------------------------------------------------------------ conversations and flows

    def conversation(self, session: Session, customer: Customer, channel: str) -> Conversation:
        return conversations.conversation_for(session, customer, channel)

    def open_flow(self, session: Session, customer: Customer, flow_name: str, *, order: Order, now: datetime) -> bool:
        """Put the customer's conversation into `flow_name` so their reply is read in context
        (`bot.store.conversations.open_flow`). Never hijacks a human-owned conversation or another
        live dialog; False when the flow was not opened."""
        from flows.registry import FLOWS_BY_NAME

        flow = FLOWS_BY_NAME.get(flow_name)
        if flow is None:
            return False
        conversation = self.conversation(session, customer, customer.channel)
        session.flush()
        self.db.lock_row(session, "conversation", conversation.id or 0)
        session.refresh(conversation)
        if conversation.owner in HUMAN_OWNERS:
            return False
        live = conversation.flow and conversation.expires_at is not None and conversation.expires_at > now
        if live and conversation.flow != flow_name:
            return False  # the customer is mid-dialog about something else; don't hijack it
        reply_window = self.spec(flow_name).get("reply_window")
        expires_at = now + parse_duration(reply_window) if reply_window else None
        explicit: dict[str, Any] = {}
        if flow_name == FEEDBACK_FLOW:
            from flows import feedback

            explicit = {"state": feedback.SCORE}
        try:
            conversations.open_flow(session=session, conversation=conversation, flow=flow, order_id=order.order_id, now=now,
                             runtime=self.runtime, customer=customer, expires_at=expires_at, **explicit)
        except ValueError as exc:  # includes flows.proactive.NotApplicable (e.g. COD already answered)
            log.info("flow %s not opened for order pk=%s: %s", flow_name, order.id, exc.__class__.__name__)
            return False
        return True
