"""Chatwoot hand-off (optional): escalations open Chatwoot conversations; agents answer there.

Out: with `CHATWOOT_URL`, `CHATWOOT_API_TOKEN` and `CHATWOOT_INBOX_ID` set,
every open escalation (the `escalation.created` event) gets a `chatwoot`
outbox row (`enqueue_escalations`, run by the per-second tick). Its sender
creates, through Chatwoot's public application API, a contact, a
conversation in the inbox, and a private note holding the context packet.
Progress is kept in `chatwoot_link`, so a retry resumes where the last try
stopped instead of opening a second conversation. While the escalation is
open, what the customer writes afterwards is forwarded to that conversation
as incoming messages (one outbox row each, deduped on the message id).

In: `POST /webhooks/chatwoot?token=CHATWOOT_WEBHOOK_TOKEN` (the URL you give
Chatwoot's webhook settings). `message_created` for a public outgoing agent
message is queued to the customer on their own channel through
`bot.store.escalations.agent_reply` (the same path as the Doorstep inbox);
`conversation_status_changed` to `resolved` hands the conversation back to
the bot through `Service.resolve_escalation`.

Every call goes through the one URL guard (bot/core/urlguard.py): `CHATWOOT_URL`
on loopback or a private network needs `DOORSTEP_ALLOW_PRIVATE_URLS=true`.

Never logs phone numbers, message text or tokens; never echoes a webhook body.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session, col, func, select

from bot.core import jsonbody
from bot.core.channels import Receipt
from bot.core.db import Database, try_insert
from bot.core.errors import Conflict, InvalidInput, NotFound, PermanentProviderError, RetryAfter
from bot.core.models import ChatwootLink, Customer, Escalation, KeyValue, Message, Outbox
from bot.core.urlguard import GuardedTransport, HostNotResolved, UnsafeURL, vet_url
from bot.store import escalations

if TYPE_CHECKING:
    from bot.core.settings import Settings
    from bot.delivery.dispatcher import Claimed
    from bot.service import Service

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

OUTBOX_KIND = "chatwoot"
MAX_BODY_BYTES = 1_000_000
REQUEST_TIMEOUT_SECONDS = 10.0
NOTE_LIMIT = 15_000
AGENT_PREFIX = "chatwoot:"


@dataclass(frozen=True)
class ChatwootConfig:
    url: str
    token: str
    account_id: int
    inbox_id: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatwootConfig | None:
        token = settings.chatwoot_api_token.get_secret_value()
        if not (settings.chatwoot_url and token and settings.chatwoot_inbox_id):
            return None
        return cls(settings.chatwoot_url.rstrip("/"), token, settings.chatwoot_account_id, settings.chatwoot_inbox_id)

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1/accounts/{self.account_id}{path}"


# ------------------------------------------------------------------ out: escalations -> Chatwoot


def _watermark_key(link_id: int) -> str:
    return f"chatwoot.forwarded:{link_id}"


def enqueue_escalations(service: Service) -> int:
    """Queue `chatwoot` outbox rows: each open escalation not yet mirrored, and the customer's
    later messages on mirrored ones (tick job; idempotent, safe with several workers)."""
    if ChatwootConfig.from_settings(service.settings) is None:
        return 0
    queued = _enqueue_new(service)
    return queued + _enqueue_customer_messages(service)


def _enqueue_customer_messages(service: Service) -> int:
    queued = 0
    with service.db.session() as session:
        rows = session.exec(
            select(ChatwootLink, Escalation).join(Escalation, col(Escalation.id) == col(ChatwootLink.escalation_id))
            .where(col(ChatwootLink.status).in_(("pending", "open")), col(Escalation.status).in_(("open", "assigned")))
        ).all()
        now = service.now()
        for link, escalation in rows:
            mark = session.get(KeyValue, _watermark_key(link.id or 0))
            if mark is None:
                continue
            after = int(mark.value)
            messages = session.exec(
                select(Message).where(Message.conversation_id == link.conversation_id, Message.direction == "in",
                                      col(Message.id) > after).order_by(col(Message.id)).limit(50)
            ).all()
            for message in messages:
                row = Outbox(kind=OUTBOX_KIND, priority=5, due_at=now, created_at=now, updated_at=now,
                             customer_id=escalation.customer_id, max_attempts=10,
                             payload={"op": "customer_message", "link_id": link.id, "message_id": message.id},
                             dedupe_key=f"chatwoot:message:{message.id}")
                if try_insert(session, row):
                    queued += 1
                mark.value = str(message.id)
            mark.updated_at = now
            session.add(mark)
    return queued


def _enqueue_new(service: Service) -> int:
    queued = 0
    with service.db.session() as session:
        linked = select(ChatwootLink.escalation_id)
        pending = session.exec(
            select(Escalation).where(col(Escalation.status).in_(("open", "assigned")),
                                     col(Escalation.id).not_in(linked)).order_by(col(Escalation.id)).limit(100)
        ).all()
        now = service.now()
        for escalation in pending:
            link = ChatwootLink(escalation_id=escalation.id or 0, conversation_id=escalation.conversation_id,
                                created_at=now, updated_at=now)
            if not try_insert(session, link):
                continue  # another worker queued it first
            # What the customer wrote up to the escalation is in the note; later messages are forwarded.
            last_seen = session.exec(
                select(func.max(Message.id)).where(Message.conversation_id == escalation.conversation_id,
                                                   col(Message.created_at) <= escalation.created_at)
            ).one()
            session.add(KeyValue(key=_watermark_key(link.id or 0), value=str(last_seen or 0), updated_at=now))
            session.add(Outbox(kind=OUTBOX_KIND, priority=10, due_at=now, created_at=now, updated_at=now,
                               customer_id=escalation.customer_id, order_pk=escalation.order_pk, max_attempts=10,
                               payload={"escalation_id": escalation.id},
                               dedupe_key=f"chatwoot:escalation:{escalation.id}"))
            queued += 1
    if queued:
        log.info("queued %s escalation(s) for Chatwoot", queued)
    return queued


def context_note(escalation: Escalation) -> str:
    """The private note: why the customer needs a person, the order, and the transcript."""
    packet = escalation.context or {}
    order = packet.get("order") or {}
    lines = [f"Doorstep escalation #{escalation.id} — reason: {escalation.reason}"]
    if escalation.note:
        lines.append(f"Note: {escalation.note}")
    if order:
        lines.append(f"Order {order.get('order_id')}: {order.get('status')}, {order.get('payment_method')}, "
                     f"COD {order.get('cod_status') or '-'}, delivery {order.get('delivery_date') or order.get('promised_date') or '-'}, "
                     f"{order.get('carrier') or ''} {order.get('tracking_number') or ''}".strip())
    actions = packet.get("actions") or []
    if actions:
        lines.append("Bot actions: " + "; ".join(str(a.get("type", a)) if isinstance(a, dict) else str(a) for a in actions))
    transcript = packet.get("transcript") or []
    if transcript:
        lines.append("Transcript:")
        for item in transcript[-30:]:
            who = "Customer" if item.get("direction") == "in" else "Bot"
            lines.append(f"{who}: {str(item.get('text', ''))[:500]}")
    lines.append("Reply here: public replies go to the customer on their channel; resolve to hand back to the bot.")
    return "\n".join(lines)[:NOTE_LIMIT]


class ChatwootSender:
    """The dispatcher's sender for outbox rows of kind `chatwoot`."""

    def __init__(self, settings: Settings, *, db: Database | None = None) -> None:
        self.settings = settings
        self._db = db

    @property
    def db(self) -> Database:
        if self._db is None:
            from integrations.logistics import sender_database

            self._db = sender_database(self.settings)
        return self._db

    def _load(self, escalation_id: int) -> tuple[Escalation, Customer, ChatwootLink]:
        with self.db.session() as session:
            escalation = session.get(Escalation, escalation_id)
            link = session.exec(select(ChatwootLink).where(ChatwootLink.escalation_id == escalation_id)).first()
            if escalation is None or link is None:
                raise PermanentProviderError("escalation not found")
            customer = session.get(Customer, escalation.customer_id)
            if customer is None:
                raise PermanentProviderError("customer not found")
            session.expunge_all()
            return escalation, customer, link

    def _save(self, link_id: int, **changes: Any) -> None:
        with self.db.session() as session:
            link = session.get(ChatwootLink, link_id)
            if link is None:
                return
            for key, value in changes.items():
                setattr(link, key, value)
            session.add(link)

    async def _call(self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await client.request(method, url, **kwargs)
        except UnsafeURL as exc:  # a host that resolved to a refused address between two calls
            raise PermanentProviderError(str(exc), code="refused_url") from exc
        except HostNotResolved:
            raise RetryAfter(None, "CHATWOOT_URL host did not resolve", code="dns") from None
        except httpx.HTTPError as exc:
            raise RetryAfter(None, f"Chatwoot unreachable ({exc.__class__.__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            hint = response.headers.get("retry-after", "")
            raise RetryAfter(float(hint) if hint.isdigit() else None, f"Chatwoot answered HTTP {response.status_code}",
                             code=str(response.status_code))
        if response.status_code in (401, 403, 404):
            raise PermanentProviderError(f"Chatwoot answered HTTP {response.status_code}; check CHATWOOT_* settings",
                                         code=str(response.status_code))
        return response

    async def _contact(self, client: httpx.AsyncClient, config: ChatwootConfig, customer: Customer
                       ) -> tuple[int, str]:
        """(contact id, source id in our inbox): create the contact, or find it when it exists."""
        identifier = f"doorstep-customer-{customer.id}"
        body = {"inbox_id": config.inbox_id, "name": customer.name or "Doorstep customer", "identifier": identifier}
        if customer.phone:
            body["phone_number"] = customer.phone
        response = await self._call(client, "POST", config.api("/contacts"), json=body)
        if response.status_code < 300:
            payload = response.json().get("payload", {})
            contact_id = int(payload["contact"]["id"])
            source_id = (payload.get("contact_inbox") or {}).get("source_id")
            if source_id:
                return contact_id, str(source_id)
        elif response.status_code == 422:  # the contact exists (phone or identifier taken): find it
            found = await self._call(client, "GET", config.api("/contacts/search"),
                                     params={"q": customer.phone or identifier})
            matches = found.json().get("payload", []) if found.status_code < 300 else []
            if not matches:
                raise PermanentProviderError("Chatwoot refused the contact and search found none", code="422")
            contact_id = int(matches[0]["id"])
            for contact_inbox in matches[0].get("contact_inboxes") or []:
                if int((contact_inbox.get("inbox") or {}).get("id", -1)) == config.inbox_id:
                    return contact_id, str(contact_inbox["source_id"])
        else:
            raise PermanentProviderError(f"Chatwoot refused the contact (HTTP {response.status_code})",
                                         code=str(response.status_code))
        made = await self._call(client, "POST", config.api(f"/contacts/{contact_id}/contact_inboxes"),
                                json={"inbox_id": config.inbox_id})
        if made.status_code >= 300:
            raise PermanentProviderError(f"Chatwoot refused the contact inbox (HTTP {made.status_code})")
        return contact_id, str(made.json()["source_id"])

    def _load_message(self, link_id: int, message_id: int) -> tuple[int | None, str]:
        with self.db.session() as session:
            link = session.get(ChatwootLink, link_id)
            message = session.get(Message, message_id)
            if link is None or message is None:
                raise PermanentProviderError("link or message not found")
            media = "\n".join(message.media_urls)
            return link.chatwoot_conversation_id, (message.text + ("\n" + media if media else "")).strip()

    async def _forward(self, config: ChatwootConfig, claimed: Claimed) -> Receipt:
        conversation_id, text = await asyncio.to_thread(
            self._load_message, int(claimed.payload.get("link_id") or 0), int(claimed.payload.get("message_id") or 0))
        if conversation_id is None:
            raise RetryAfter(5.0, "the Chatwoot conversation is not open yet")
        async with self._client(config) as client:
            response = await self._call(client, "POST", config.api(f"/conversations/{conversation_id}/messages"),
                                        json={"content": text or "(empty message)", "message_type": "incoming",
                                              "private": False})
        if response.status_code >= 300:
            raise PermanentProviderError(f"Chatwoot refused the message (HTTP {response.status_code})")
        return Receipt(provider_id=f"chatwoot-message-{response.json().get('id')}")

    def _client(self, config: ChatwootConfig) -> httpx.AsyncClient:
        headers = {"api_access_token": config.token, "content-type": "application/json"}
        transport = GuardedTransport(setting="CHATWOOT_URL", allow_private=self.settings.allow_private_urls)
        return httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS, headers=headers, follow_redirects=False,
                                 transport=transport)

    async def send(self, claimed: Claimed) -> Receipt:
        config = ChatwootConfig.from_settings(self.settings)
        if config is None:
            raise PermanentProviderError("Chatwoot is not configured (CHATWOOT_URL, CHATWOOT_API_TOKEN, CHATWOOT_INBOX_ID)")
        try:  # before anything is loaded or sent (the transport checks every call again)
            await asyncio.to_thread(vet_url, config.url, setting="CHATWOOT_URL",
                                    allow_private=self.settings.allow_private_urls)
        except UnsafeURL as exc:
            raise PermanentProviderError(str(exc), code="refused_url") from exc
        except HostNotResolved:
            raise RetryAfter(None, "CHATWOOT_URL host did not resolve", code="dns") from None
        if claimed.payload.get("op") == "customer_message":
            return await self._forward(config, claimed)
        escalation_id = int(claimed.payload.get("escalation_id") or 0)
        escalation, customer, link = await asyncio.to_thread(self._load, escalation_id)
        async with self._client(config) as client:
            if link.chatwoot_conversation_id is None:
                contact_id, source_id = await self._contact(client, config, customer)
                await asyncio.to_thread(self._save, link.id or 0, chatwoot_contact_id=contact_id)
                created = await self._call(client, "POST", config.api("/conversations"), json={
                    "source_id": source_id, "inbox_id": config.inbox_id, "contact_id": contact_id, "status": "open",
                    "custom_attributes": {"doorstep_escalation_id": escalation.id,
                                          "doorstep_reason": escalation.reason}})
                if created.status_code >= 300:
                    raise PermanentProviderError(f"Chatwoot refused the conversation (HTTP {created.status_code})")
                conversation_id = int(created.json()["id"])
                await asyncio.to_thread(self._save, link.id or 0, chatwoot_conversation_id=conversation_id)
            else:
                conversation_id = int(link.chatwoot_conversation_id)
            note = await self._call(client, "POST", config.api(f"/conversations/{conversation_id}/messages"),
                                    json={"content": context_note(escalation), "message_type": "outgoing",
                                          "private": True})
            if note.status_code >= 300:
                raise PermanentProviderError(f"Chatwoot refused the note (HTTP {note.status_code})")
        await asyncio.to_thread(self._save, link.id or 0, status="open")
        log.info("escalation %s opened in Chatwoot as conversation %s", escalation.id, conversation_id)
        return Receipt(provider_id=f"chatwoot-conversation-{conversation_id}")


def make_sender(settings: Settings) -> ChatwootSender:
    return ChatwootSender(settings)


# ------------------------------------------------------------------ in: Chatwoot webhooks


def _is_outgoing(message_type: Any) -> bool:
    # Webhooks spell it "outgoing"; the REST API uses 1.
    return message_type in ("outgoing", 1, "1")


def _first_delivery(session: Session, key: str) -> bool:
    """True the first time a Chatwoot event id is seen (Chatwoot may deliver one event twice)."""
    return try_insert(session, KeyValue(key=key[:100], value="1"))


def handle_event(service: Service, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    event = payload.get("event")
    if event == "message_created":
        conversation = payload.get("conversation")
        content = payload.get("content")
        if not isinstance(conversation, dict) or "id" not in conversation:
            return 400, {"detail": "message_created without conversation.id"}
        if not _is_outgoing(payload.get("message_type")) or payload.get("private") or not isinstance(content, str) \
                or not content.strip():
            return 200, {"status": "ignored", "reason": "not a public outgoing message"}
        return _agent_message(service, conversation["id"], payload.get("id"), content,
                              (payload.get("sender") or {}).get("name") if isinstance(payload.get("sender"), dict) else None)
    if event == "conversation_status_changed":
        if payload.get("status") != "resolved":
            return 200, {"status": "ignored", "reason": "only 'resolved' hands back to the bot"}
        return _resolved(service, payload.get("id"))
    return 200, {"status": "ignored", "reason": "event not used by Doorstep"}


def _link_for(session: Session, chatwoot_conversation_id: Any) -> ChatwootLink | None:
    try:
        conversation_id = int(chatwoot_conversation_id)
    except (TypeError, ValueError):
        return None
    return session.exec(select(ChatwootLink).where(ChatwootLink.chatwoot_conversation_id == conversation_id)).first()


def _agent_message(service: Service, chatwoot_conversation_id: Any, message_id: Any, content: str,
                   agent_name: str | None) -> tuple[int, dict[str, Any]]:
    with service.db.session() as session:
        link = _link_for(session, chatwoot_conversation_id)
        if link is None:
            return 200, {"status": "ignored", "reason": "not a Doorstep conversation"}
        if message_id is not None and not _first_delivery(session, f"chatwoot.message:{message_id}"):
            return 200, {"status": "duplicate"}
        agent = f"{AGENT_PREFIX}{agent_name or 'agent'}"[:100]
        try:
            reply = escalations.agent_reply(session=session, escalation_id=link.escalation_id, agent=agent,
                                            text=content, now=service.now())
        except (Conflict, InvalidInput, NotFound) as exc:
            log.info("Chatwoot reply for escalation %s not queued: %s", link.escalation_id, exc.__class__.__name__)
            return 409, {"detail": str(exc)}
        return 200, {"status": "queued", "escalation_id": link.escalation_id, "channel": reply.channel}


def _resolved(service: Service, chatwoot_conversation_id: Any) -> tuple[int, dict[str, Any]]:
    with service.db.session() as session:
        link = _link_for(session, chatwoot_conversation_id)
        if link is None:
            return 200, {"status": "ignored", "reason": "not a Doorstep conversation"}
        service.resolve_escalation(session, link.escalation_id, agent=f"{AGENT_PREFIX}resolved")
        link.status = "resolved"
        session.add(link)
        return 200, {"status": "resolved", "escalation_id": link.escalation_id}


@router.post("/webhooks/chatwoot", responses={400: {"description": "malformed body"},
                                              401: {"description": "missing or wrong token"},
                                              409: {"description": "the escalation cannot take a reply"}})
async def chatwoot_webhook(request: Request, token: str = Query("", description="CHATWOOT_WEBHOOK_TOKEN")
                           ) -> JSONResponse:
    """Chatwoot's account webhook: agent replies go to the customer; resolving hands back to the bot."""
    service = request.app.state.service
    expected = service.settings.chatwoot_webhook_token.get_secret_value()
    if not expected:
        return JSONResponse(status_code=401, content={"detail": "Chatwoot webhooks are not enabled: set CHATWOOT_WEBHOOK_TOKEN"})
    if not hmac.compare_digest(expected.encode(), token.encode()):
        return JSONResponse(status_code=401, content={"detail": "missing or invalid ?token="})
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return JSONResponse(status_code=413, content={"detail": "body too large"})
    try:
        payload = jsonbody.loads(body)
    except (UnicodeDecodeError, ValueError):
        return JSONResponse(status_code=400, content={"detail": "body is not JSON"})
    if not isinstance(payload, dict):
        return JSONResponse(status_code=400, content={"detail": "body must be a JSON object"})
    status, content = await asyncio.to_thread(handle_event, service, payload)
    return JSONResponse(status_code=status, content=content)


def link_status(session: Session, escalation_id: int) -> dict[str, Any] | None:
    """How an escalation stands in Chatwoot (for the inbox or the CLI)."""
    link = session.exec(select(ChatwootLink).where(ChatwootLink.escalation_id == escalation_id)).first()
    if link is None:
        return None
    return {"status": link.status, "conversation_id": link.chatwoot_conversation_id,
            "updated_at": link.updated_at.isoformat() if isinstance(link.updated_at, datetime) else None}
