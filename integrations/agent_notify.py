"""Agent notifications for new escalations: an optional webhook and/or a Telegram group message.

The `agent_notify` outbox rows written by bot.store.escalations.create_escalation
are sent here by the dispatcher, after commit, with its retries. Targets:

* `DOORSTEP_AGENT_WEBHOOK_URL` — a JSON POST (`text` for Slack/Mattermost-style
  incoming webhooks, plus structured fields); the header
  `Doorstep-Notification-Id` is stable across retries so receivers can dedupe.
* `TELEGRAM_AGENT_CHAT_ID` (with `TELEGRAM_BOT_TOKEN`) — a message to the agents'
  group through the real aiogram Bot (`TELEGRAM_API_BASE_URL` honoured).

With neither configured the row completes as a no-op: the escalation is in
/inbox either way. A notification that cannot be delivered never changes the
escalation: the conversation stays marked as needing a human. Notifications
carry the escalation id, reason, order id and channel — never the customer's
phone, name or messages — and nothing here logs them. The webhook URL goes
through the one URL guard (bot/core/urlguard.py) on every try and is never logged
(its query often holds the receiver's secret).
"""

from __future__ import annotations

from typing import Any

import httpx

from bot.core.channels import Receipt
from bot.core.errors import PermanentProviderError, RetryAfter
from bot.core.settings import Settings
from bot.core.urlguard import GuardedTransport, HostNotResolved, UnsafeURL

REQUEST_TIMEOUT_SECONDS = 10.0


def notification_text(payload: dict[str, Any], inbox_url: str) -> str:
    reason = str(payload.get("reason") or "").replace("_", " ")
    order = f" · order {payload['order_id']}" if payload.get("order_id") else ""
    sla = str(payload.get("sla_due_at") or "")[11:16]
    return (f"New escalation #{payload.get('escalation_id')}: {reason}{order} · {payload.get('channel')}"
            f"{f' · reply by {sla} UTC' if sla else ''}\n{inbox_url}")


class AgentNotifier:
    """Sends one escalation's notification to every configured target."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def targets(self) -> list[str]:
        found = []
        if self.settings.agent_webhook_url:
            found.append("webhook")
        if self.settings.telegram.agent_chat_id and self.settings.telegram.configured:
            found.append("telegram")
        return found

    async def send(self, claimed: Any) -> Receipt:
        payload: dict[str, Any] = dict(getattr(claimed, "payload", {}) or {})
        targets = self.targets()
        if not targets:
            return Receipt(provider_id=None, status="sent", detail="no agent notification target configured")
        inbox_url = f"{self.settings.public_url.rstrip('/')}/inbox/escalations/{payload.get('escalation_id')}"
        text = notification_text(payload, inbox_url)
        ids = []
        # At least once: a retry after a partial failure may repeat the target that worked;
        # the stable notification id lets receivers drop the repeat.
        if "webhook" in targets:
            ids.append(await self._webhook(payload, text, inbox_url))
        if "telegram" in targets:
            ids.append(await self._telegram(text))
        return Receipt(provider_id=",".join(i for i in ids if i)[:100] or None, status="sent")

    async def _webhook(self, payload: dict[str, Any], text: str, inbox_url: str) -> str:
        notification_id = f"esc_{payload.get('escalation_id')}"
        body = {"type": "escalation.created", "id": notification_id, "text": text,
                "escalation_id": payload.get("escalation_id"), "reason": payload.get("reason"),
                "order_id": payload.get("order_id"), "channel": payload.get("channel"),
                "sla_due_at": payload.get("sla_due_at"), "inbox_url": inbox_url}
        transport = GuardedTransport(setting="DOORSTEP_AGENT_WEBHOOK_URL",
                                     allow_private=self.settings.allow_private_urls)
        try:
            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS, transport=transport,
                                         follow_redirects=False) as client:
                response = await client.post(self.settings.agent_webhook_url, json=body,
                                             headers={"Doorstep-Notification-Id": notification_id})
        except UnsafeURL as exc:
            raise PermanentProviderError(str(exc), code="refused_url") from exc
        except HostNotResolved:
            raise RetryAfter(None, "DOORSTEP_AGENT_WEBHOOK_URL host did not resolve", code="dns") from None
        except httpx.HTTPError:
            raise RetryAfter(None, "agent webhook unreachable or timed out", code="timeout") from None
        if response.status_code == 429 or response.status_code >= 500:
            retry = response.headers.get("retry-after", "")
            raise RetryAfter(float(retry) if retry.isdigit() else None, f"agent webhook answered {response.status_code}",
                             code=str(response.status_code))
        if response.status_code >= 400:
            raise PermanentProviderError(f"agent webhook refused the notification ({response.status_code})",
                                         code=str(response.status_code))
        return "webhook"

    async def _telegram(self, text: str) -> str:
        from integrations.telegram_channel import bot_for, map_telegram_error

        try:
            chat_id: int | str = int(self.settings.telegram.agent_chat_id)
        except ValueError:
            chat_id = self.settings.telegram.agent_chat_id  # "@channelusername"
        try:
            sent = await bot_for(self.settings).send_message(chat_id=chat_id, text=text)
        except Exception as exc:
            raise map_telegram_error(exc) from None
        return f"tg:{sent.message_id}"


def make_sender(settings: Settings) -> AgentNotifier:
    return AgentNotifier(settings)
