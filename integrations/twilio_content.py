"""Twilio Content API: the WhatsApp templates Doorstep sends, kept by `doorstep whatsapp sync-templates`.

Two kinds of Content template:
  * session templates, generic (the text and choices are variables, so a handful serve every flow), sent
    inside the 24-hour window without approval: `twilio/quick-reply` with 1-3 buttons
    (`doorstep_buttons_N`) and `twilio/list-picker` with 4-10 rows (`doorstep_list_N`); a button's
    `id` / a row's `id` is the flow's payload (`/btn:affirm:yes`), which WhatsApp returns as
    `ButtonPayload` / `ListId` when tapped;
  * one template per proactive message kind and locale for outside the window
    (`doorstep_shipped_en`, `doorstep_order_confirmed_cod_es`, …; data/whatsapp_templates.yml, read by
    `bot.core.whatsapp_templates`): fixed wording with positional variables and their samples, in the
    locale's language, quick-reply buttons where the journey offers a choice, submitted for WhatsApp
    approval in its category (utility, or marketing for feedback and reorder nudges).

`sync` is idempotent: a template whose definition is unchanged is kept (found by its friendly name,
which carries a hash of the definition); a changed one is created anew; an approval is requested once;
the approval status and the category WhatsApp reports now (it may move a utility template to marketing)
are read on every run. The real `twilio` client is used (`TWILIO_API_BASE_URL` redirects it, like the
sender). Never logs tokens or message text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bot.core import choices, whatsapp_templates
from bot.core.settings import Settings
from bot.store.content import Synced
from integrations.twilio_channel import TwilioSender, map_twilio_error

# The ContentVariables layout of `doorstep_buttons_N` / `doorstep_list_N` is
# `integrations.twilio_channel.interactive_variables`: keep the two in step.

LANGUAGE = "en"  # the session templates' language (their text is a variable, in the customer's language)


@dataclass(frozen=True)
class Definition:
    name: str
    types: dict[str, Any]
    variables: dict[str, str]  # samples (WhatsApp requires one per variable)
    category: str | None = None  # None: a session template, never submitted for approval
    language: str = LANGUAGE
    kind: str | None = None  # the proactive message kind it serves (`journey.shipped`), None for session ones
    locale: str | None = None  # the Doorstep locale of its wording

    @property
    def digest(self) -> str:
        raw = json.dumps({"types": self.types, "category": self.category, "language": self.language,
                          "variables": self.variables}, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]

    @property
    def friendly_name(self) -> str:
        return f"{self.name}_{self.digest}"


def _quick_reply(count: int) -> Definition:
    actions = [{"type": "QUICK_REPLY", "title": f"{{{{{2 * i + 2}}}}}", "id": f"{{{{{2 * i + 3}}}}}"}
               for i in range(count)]
    samples = {"1": "Deliver order A1001 on Sat, 28 Nov?"}
    for i in range(count):
        samples[str(2 * i + 2)] = f"Choice {i + 1}"
        samples[str(2 * i + 3)] = f"/btn:choice:{i + 1}"
    return Definition(f"doorstep_buttons_{count}", {"twilio/quick-reply": {"body": "{{1}}", "actions": actions}}, samples)


def _list_picker(count: int) -> Definition:
    items = [{"item": f"{{{{{2 * i + 3}}}}}", "id": f"{{{{{2 * i + 4}}}}}", "description": ""} for i in range(count)]
    samples = {"1": "Which day should we deliver order A1001?", "2": "Choose"}
    for i in range(count):
        samples[str(2 * i + 3)] = f"Choice {i + 1}"
        samples[str(2 * i + 4)] = f"/btn:choice:{i + 1}"
    return Definition(f"doorstep_list_{count}",
                      {"twilio/list-picker": {"body": "{{1}}", "button": "{{2}}", "items": items}}, samples)


def journey_definitions() -> list[Definition]:
    """One approvable template per proactive message kind and locale (data/whatsapp_templates.yml)."""
    return [Definition(t.content_name(locale), t.types(locale), t.samples(locale), t.category,
                       language=t.language(locale), kind=t.kind, locale=locale)
            for t in whatsapp_templates.templates().values() for locale in whatsapp_templates.LOCALES]


def definitions() -> list[Definition]:
    """Every Content template Doorstep uses."""
    interactive = [_quick_reply(n) for n in range(1, choices.MAX_QUICK_REPLIES + 1)]
    interactive += [_list_picker(n) for n in range(choices.MAX_QUICK_REPLIES + 1, choices.MAX_LIST_ROWS + 1)]
    return [*interactive, *journey_definitions()]


@dataclass(frozen=True)
class SyncReport:
    created: list[str]
    kept: list[str]
    submitted: list[str]
    synced: list[Synced]


async def sync(settings: Settings) -> SyncReport:
    """Create missing Content templates, request approvals once, and read every status and category."""
    if not settings.twilio.configured:
        from bot.core.errors import ChannelNotConfigured

        raise ChannelNotConfigured("Twilio is not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)")
    sender = TwilioSender(settings, "whatsapp")
    client = sender.client
    try:
        try:
            existing = {c.friendly_name: c for c in await client.content.v1.contents.list_async()}
        except Exception as exc:
            raise map_twilio_error(exc) from None
        created: list[str] = []
        kept: list[str] = []
        submitted: list[str] = []
        synced: list[Synced] = []
        from twilio.rest.content.v1.content import ContentList
        from twilio.rest.content.v1.content.approval_create import ApprovalCreateList

        for definition in definitions():
            found = existing.get(definition.friendly_name)
            try:
                if found is None:
                    request = ContentList.ContentCreateRequest({
                        "friendly_name": definition.friendly_name, "language": definition.language,
                        "variables": definition.variables, "types": definition.types})
                    found = await client.content.v1.contents.create_async(request)
                    created.append(definition.name)
                else:
                    kept.append(definition.name)
                status, category, reason = "session", None, None
                if definition.category is not None:
                    approval = await client.content.v1.contents(found.sid).approval_fetch().fetch_async()
                    whatsapp = dict(approval.whatsapp or {})
                    if not whatsapp.get("status") or whatsapp.get("status") == "unsubmitted":
                        await client.content.v1.contents(found.sid).approval_create.create_async(
                            ApprovalCreateList.ContentApprovalRequest(
                                {"name": definition.friendly_name, "category": definition.category}))
                        submitted.append(definition.name)
                        approval = await client.content.v1.contents(found.sid).approval_fetch().fetch_async()
                        whatsapp = dict(approval.whatsapp or {})
                    status = str(whatsapp.get("status") or "unsubmitted").lower()
                    category = str(whatsapp.get("category") or definition.category).upper()
                    reason = str(whatsapp.get("rejection_reason") or "") or None
            except Exception as exc:
                raise map_twilio_error(exc) from None
            synced.append(Synced(name=definition.name, content_sid=str(found.sid), definition_hash=definition.digest,
                                 category=category, requested_category=definition.category,
                                 approval_status=status, rejection_reason=reason))
        return SyncReport(created=created, kept=kept, submitted=submitted, synced=synced)
    finally:
        await sender.aclose()
