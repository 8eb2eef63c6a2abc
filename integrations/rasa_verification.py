"""Who a Rasa conversation belongs to: the channel's sender id, or a phone proven with a one-time code.

Rasa's `sender_id` is the channel's identity. When it is a phone number, that
is the customer. When it is not (a web chat session id, a Messenger id), a
phone typed into the `phone` slot is only a *claim*: anyone can type anyone's
number. The claim becomes this sender's identity only after the customer types
back a 6-digit code sent by SMS to that number:

- the code is stored only as an HMAC-SHA256 digest, expires after 10 minutes,
  allows 5 tries (then that sender may not ask for codes for an hour), and a
  new one is sent at most once a minute per sender;
- the answer is the same whether or not the number belongs to a customer, so
  the code step never reveals who shops here;
- a verified sender stays bound to that phone for 24 hours.

State lives in the `kv` table (keys hashed from the sender id), inside the
action's transaction. Nothing here logs phone numbers or codes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from bot.core.models import Customer, KeyValue
from bot.store.outbox import PRIORITY_REPLY, enqueue_message

CODE_TTL = timedelta(minutes=10)
RESEND_AFTER = timedelta(minutes=1)
MAX_TRIES = 5
LOCKED_FOR = timedelta(hours=1)
BOUND_FOR = timedelta(hours=24)
CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


@dataclass(frozen=True)
class Verification:
    """What the identity step decided: the phone to act for, or the message to send back instead."""

    phone: str | None
    reply_key: str | None = None  # a template key when the action must answer this instead of acting


def _key(kind: str, sender_id: str) -> str:
    return f"rasa_{kind}:" + hashlib.sha256(sender_id.encode()).hexdigest()[:40]


def _digest(code: str, sender_id: str) -> str:
    return hmac.new(sender_id.encode(), code.encode(), hashlib.sha256).hexdigest()


def _load(session: Session, key: str) -> dict[str, Any] | None:
    row = session.get(KeyValue, key)
    if row is None:
        return None
    try:
        value = json.loads(row.value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _store(session: Session, key: str, value: dict[str, Any]) -> None:
    row = session.get(KeyValue, key) or KeyValue(key=key, value="")
    row.value = json.dumps(value)
    session.add(row)


def _drop(session: Session, key: str) -> None:
    row = session.get(KeyValue, key)
    if row is not None:
        session.delete(row)


def bound_phone(session: Session, sender_id: str, now: datetime) -> str | None:
    """The phone this sender proved within the last 24 hours, if any."""
    bound = _load(session, _key("verified", sender_id))
    if bound and datetime.fromisoformat(str(bound.get("until"))) > now:
        return str(bound.get("phone") or "") or None
    return None


def verify(session: Session, *, sender_id: str, claimed_phone: str | None, latest_text: str,
           code_slot: str | None, customer_for: Any, now: datetime) -> Verification:
    """Resolve a non-phone sender: a bound phone, a code checked, or a code sent for a claimed phone.

    `customer_for(phone)` returns the customer with that phone (or None) in this session.
    """
    bound = bound_phone(session, sender_id, now)
    if bound:
        return Verification(phone=bound)
    lock = _load(session, _key("locked", sender_id))
    if lock and datetime.fromisoformat(str(lock.get("until"))) > now:
        return Verification(phone=None, reply_key="rasa.code_locked")
    pending_key = _key("otp", sender_id)
    pending = _load(session, pending_key)
    typed = CODE.search(code_slot or "") or CODE.search(latest_text or "")
    if pending and typed:
        if datetime.fromisoformat(str(pending["expires"])) <= now:
            _drop(session, pending_key)
            return Verification(phone=None, reply_key="rasa.code_expired")
        if hmac.compare_digest(str(pending["digest"]), _digest(typed.group(1), sender_id)):
            _drop(session, pending_key)
            _store(session, _key("verified", sender_id), {"phone": pending["phone"], "until": (now + BOUND_FOR).isoformat()})
            return Verification(phone=str(pending["phone"]))
        tries = int(pending.get("tries", 0)) + 1
        if tries >= MAX_TRIES:
            _drop(session, pending_key)
            _store(session, _key("locked", sender_id), {"until": (now + LOCKED_FOR).isoformat()})
            return Verification(phone=None, reply_key="rasa.code_locked")
        _store(session, pending_key, {**pending, "tries": tries})
        return Verification(phone=None, reply_key="rasa.code_wrong")
    if not claimed_phone:
        return Verification(phone=None)
    if pending and pending.get("phone") == claimed_phone and \
            now - datetime.fromisoformat(str(pending["sent_at"])) < RESEND_AFTER:
        return Verification(phone=None, reply_key="rasa.code_sent")
    code = f"{secrets.randbelow(1_000_000):06d}"
    _store(session, pending_key, {"phone": claimed_phone, "digest": _digest(code, sender_id), "tries": 0,
                                  "sent_at": now.isoformat(), "expires": (now + CODE_TTL).isoformat()})
    customer: Customer | None = customer_for(claimed_phone)
    if customer is not None and customer.erased_at is None:
        # Only to a number that is a customer's; the answer below is the same either way.
        enqueue_message(session=session, customer=customer, channel="sms", template="rasa.code_sms",
                        text=f"Your verification code is {code}. It expires in 10 minutes. "
                             "If you did not ask for it, ignore this message.",
                        priority=PRIORITY_REPLY, expires_at=now + CODE_TTL, now=now)
    return Verification(phone=None, reply_key="rasa.code_sent")
