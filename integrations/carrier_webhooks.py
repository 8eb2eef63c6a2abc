"""Carrier status in: `POST /webhooks/carrier`.

Two payloads, told apart by their signature header:

* Doorstep's own event JSON `{"order_id"|"tracking_number", "type", "at", "eta",
  "note"}` with `X-Doorstep-Signature: sha256=<hex HMAC-SHA256(CARRIER_WEBHOOK_SECRET, raw body)>`;
* AfterShip's tracking webhook (`{"event": "tracking_update", "msg": {"tracking_number",
  "tag", "subtag", "expected_delivery", "checkpoints", …}, "ts", …}`) with
  `aftership-hmac-sha256: <base64 HMAC-SHA256(AFTERSHIP_WEBHOOK_SECRET, raw body)>`.

Both become `Service.record_order_event` (the event, then its journeys), exactly as
`POST /api/orders/{id}/events` does, so journeys (the out-for-delivery
message) fire the same way. Forged → 401; malformed → 400; unknown tracking
number → 202 and a log line; an AfterShip status Doorstep has no word for,
or an out-of-order update, → 202 "ignored" (AfterShip would otherwise retry
it 14 times). Nothing here logs a tracking number, address or secret, and no
error response echoes the body.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError, model_validator
from sqlmodel import Session, select

from bot.core import jsonbody
from bot.core.errors import Conflict
from bot.core.models import Order
from bot.core.schemas import EventType, OrderEventIn

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

MAX_BODY_BYTES = 1_000_000
DOORSTEP_SIGNATURE_HEADER = "x-doorstep-signature"
AFTERSHIP_SIGNATURE_HEADER = "aftership-hmac-sha256"

# AfterShip delivery statuses (`tag`) -> Doorstep event types. None: no Doorstep equivalent.
AFTERSHIP_TAGS: dict[str, EventType | None] = {
    "Pending": None,
    "InfoReceived": "packed",
    "InTransit": "shipped",
    "OutForDelivery": "out_for_delivery",
    "AttemptFail": "failed_attempt",
    "Delivered": "delivered",
    "AvailableForPickup": None,
    "Exception": "delayed",
    "Expired": "delayed",
}


class CarrierEventIn(OrderEventIn):
    """Doorstep's own carrier event: the API's shipment event plus which order it is about."""

    order_id: str | None = Field(None, min_length=1, max_length=64)
    tracking_number: str | None = Field(None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_reference(self) -> CarrierEventIn:
        if not self.order_id and not self.tracking_number:
            raise ValueError("order_id or tracking_number is required")
        return self


@dataclass(frozen=True)
class Update:
    """A carrier update reduced to what Doorstep applies."""

    order_id: str | None
    tracking_number: str | None
    event: OrderEventIn | None  # None: understood, but no Doorstep status to apply
    source_status: str
    carrier_hint: str = ""


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


def _signature_ok(expected: bytes, presented: bytes) -> bool:
    return hmac.compare_digest(expected, presented)


def doorstep_signature(secret: str, body: bytes) -> str:
    """The `X-Doorstep-Signature` value a sender computes (also used by tests and README)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def aftership_signature(secret: str, body: bytes) -> str:
    """AfterShip's documented signature: base64 of HMAC-SHA256 over the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _parse_when(value: Any) -> datetime | None:
    """AfterShip times: '', 'YYYY-MM-DD', 'YYYY-MM-DDTHH:MM:SS' (local, no zone) or with an offset."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _parse_date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value.strip()) < 10:
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


def parse_aftership(payload: Any) -> Update | None:
    """AfterShip `tracking_update` -> Update; None when it is not one (caller answers 400)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("msg"), dict):
        return None
    msg = payload["msg"]
    tracking_number = msg.get("tracking_number")
    tag = msg.get("tag")
    if not isinstance(tracking_number, str) or not tracking_number.strip() or not isinstance(tag, str):
        return None
    if payload.get("event", "tracking_update") != "tracking_update" or tag not in AFTERSHIP_TAGS:
        return Update(None, tracking_number.strip()[:100], None, f"{payload.get('event')}/{tag}"[:80])
    type_ = AFTERSHIP_TAGS[tag]
    if type_ is None:
        return Update(None, tracking_number.strip()[:100], None, tag)
    checkpoints = [c for c in msg.get("checkpoints") or [] if isinstance(c, dict)]
    latest = next((c for c in reversed(checkpoints) if c.get("tag") == tag), checkpoints[-1] if checkpoints else {})
    # The event time keys the dedupe: AfterShip's retries of one update carry the same `ts`.
    at = _parse_when(latest.get("checkpoint_time"))
    ts = payload.get("ts")
    if at is None and isinstance(ts, int | float) and 0 < ts < 32_503_680_000:  # before year 3000
        at = datetime.fromtimestamp(ts, tz=UTC)
    note_parts = [str(msg.get("subtag_message") or ""), str(latest.get("message") or "")]
    note = " — ".join(p for p in note_parts if p)[:2000]
    event = OrderEventIn(type=type_, at=at, eta=_parse_date(msg.get("expected_delivery")), note=note or None)
    order_id = msg.get("order_id") if isinstance(msg.get("order_id"), str) else None
    return Update(order_id, tracking_number.strip()[:100], event, tag, carrier_hint=str(msg.get("slug") or ""))


def _find_order(session: Session, update: Update) -> Order | None:
    if update.tracking_number:
        matches = list(session.exec(select(Order).where(Order.tracking_number == update.tracking_number)).all())
        if len(matches) > 1 and update.carrier_hint:
            hint = update.carrier_hint.replace("-", "").lower()
            matches = [o for o in matches if o.carrier.replace(" ", "").replace("-", "").lower() == hint] or matches
        if len(matches) == 1:
            return matches[0]
        if matches:
            return None  # ambiguous: never guess whose parcel it is
    if update.order_id:
        order = session.exec(select(Order).where(Order.order_id == update.order_id)).first()
        # An order id alone only counts when it does not contradict the tracking number.
        if order is not None and (not update.tracking_number or order.tracking_number in ("", update.tracking_number)):
            return order
    return None


def _apply(request: Request, update: Update, *, strict: bool) -> JSONResponse:
    service = request.app.state.service
    with service.db.session() as session:
        order = _find_order(session, update)
        if order is None:
            log.info("carrier update for an unknown order (source status %s); accepted, nothing changed",
                     update.source_status)
            return JSONResponse(status_code=202, content={"status": "unknown_order"})
        if update.event is None:
            return JSONResponse(status_code=202, content={"status": "ignored", "order_id": order.order_id,
                                                          "reason": f"no Doorstep status for {update.source_status}"})
        if not strict and update.event.type == order.status and update.event.type != "delayed":
            # AfterShip repeats a tag for every new checkpoint; the status did not change.
            return JSONResponse(status_code=200, content={"status": "unchanged", "order_id": order.order_id})
        try:
            with session.begin_nested():
                recorded = service.record_order_event(session, order, update.event, source="carrier")
        except Conflict as exc:
            if strict:
                return _problem(409, str(exc))
            log.info("out-of-order carrier update ignored for order %s: %s", order.order_id, exc)
            return JSONResponse(status_code=202, content={"status": "ignored", "order_id": order.order_id,
                                                          "reason": str(exc)})
        event, duplicate = recorded.event, recorded.duplicate
        log.info("carrier update applied order=%s type=%s duplicate=%s", order.order_id, event.type, duplicate)
        return JSONResponse(status_code=200 if duplicate else 201, content={
            "status": "duplicate" if duplicate else "applied", "order_id": order.order_id, "type": event.type,
            "order_status": order.status})


@router.post("/webhooks/carrier", status_code=201, responses={
    200: {"description": "duplicate or unchanged"}, 202: {"description": "unknown tracking number, or ignored"},
    400: {"description": "malformed body"}, 401: {"description": "missing or wrong signature"},
    409: {"description": "impossible transition (Doorstep format)"}, 413: {"description": "body too large"}})
async def carrier_webhook(request: Request) -> JSONResponse:
    """Carrier status in: Doorstep's HMAC-signed event JSON, or AfterShip's tracking webhook."""
    settings = request.app.state.service.settings
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")

    aftership_sig = request.headers.get(AFTERSHIP_SIGNATURE_HEADER)
    doorstep_sig = request.headers.get(DOORSTEP_SIGNATURE_HEADER)
    if aftership_sig is not None:
        secret = settings.aftership_webhook_secret.get_secret_value()
        if not secret:
            return _problem(401, "AfterShip webhooks are not enabled: set AFTERSHIP_WEBHOOK_SECRET")
        if not _signature_ok(aftership_signature(secret, body).encode(), aftership_sig.strip().encode()):
            return _problem(401, "aftership-hmac-sha256 does not match the body")
        strict = False
    elif doorstep_sig is not None:
        secret = settings.carrier_webhook_secret.get_secret_value()
        if not secret:
            return _problem(401, "carrier webhooks are not enabled: set CARRIER_WEBHOOK_SECRET")
        if not _signature_ok(doorstep_signature(secret, body).encode(), doorstep_sig.strip().lower().encode()):
            return _problem(401, "X-Doorstep-Signature does not match the body")
        strict = True
    else:
        return _problem(401, "missing signature: send X-Doorstep-Signature or aftership-hmac-sha256")

    try:
        payload = jsonbody.loads(body)
    except (UnicodeDecodeError, ValueError):
        return _problem(400, "body is not JSON")
    if strict:
        try:
            carrier_event = CarrierEventIn.model_validate(payload)
        except ValidationError as exc:
            reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
            return _problem(400, f"invalid carrier event: {reasons}"[:1000])
        update = Update(carrier_event.order_id, carrier_event.tracking_number,
                        OrderEventIn(type=carrier_event.type, at=carrier_event.at, eta=carrier_event.eta,
                                     note=carrier_event.note),
                        carrier_event.type)
    else:
        parsed = parse_aftership(payload)
        if parsed is None:
            return _problem(400, "not an AfterShip tracking webhook: msg.tracking_number and msg.tag are required")
        update = parsed
    return await asyncio.to_thread(_apply, request, update, strict=strict)
