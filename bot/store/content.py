"""WhatsApp Content templates as synced (`doorstep whatsapp sync-templates`): which SID to send, and whether it may.

Session templates (buttons, lists) need no approval inside the 24-hour window; a template for outside the
window is usable only once WhatsApp approved it. WhatsApp may change an approved template's category
(utility -> marketing); the sync records the category it reports now, and the send planner prices and
gates by that one. Row operations on the caller's session; nothing here calls the provider.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import Session, select

from bot.core.models import WhatsAppContent

APPROVED = "approved"


@dataclass(frozen=True)
class Synced:
    name: str
    content_sid: str
    definition_hash: str
    category: str | None
    requested_category: str | None
    approval_status: str
    rejection_reason: str | None = None


@dataclass(frozen=True)
class State:
    content_sid: str
    approval_status: str
    category: str | None  # lower case: WhatsApp's category now
    session_only: bool  # a session template (buttons, lists): no approval needed inside the window

    @property
    def usable(self) -> bool:
        return self.session_only or self.approval_status == APPROVED


def states(session: Session) -> dict[str, State]:
    """name -> what the last sync recorded (one read of the small table)."""
    return {row.name: State(row.content_sid, row.approval_status, row.category.lower() if row.category else None,
                            row.requested_category is None) for row in session.exec(select(WhatsAppContent))}


def usable(session: Session) -> dict[str, str]:
    """name -> Content SID of every template that may be sent now (session ones, and approved ones)."""
    return {row.name: row.content_sid for row in session.exec(select(WhatsAppContent))
            if row.requested_category is None or row.approval_status == APPROVED}


def categories(session: Session) -> dict[str, str]:
    """name -> the category WhatsApp gives the template now (lower case), for templates that have one."""
    return {row.name: row.category.lower() for row in session.exec(select(WhatsAppContent)) if row.category}


def save(session: Session, synced: Iterable[Synced]) -> None:
    """Record what the sync found (insert or update by name)."""
    for item in synced:
        row = session.get(WhatsAppContent, item.name) or WhatsAppContent(name=item.name, content_sid=item.content_sid,
                                                                         definition_hash=item.definition_hash)
        row.content_sid = item.content_sid
        row.definition_hash = item.definition_hash
        row.category = item.category
        row.requested_category = item.requested_category
        row.approval_status = item.approval_status
        row.rejection_reason = (item.rejection_reason or None) and item.rejection_reason[:500]
        session.add(row)


def all_rows(session: Session) -> list[WhatsAppContent]:
    return list(session.exec(select(WhatsAppContent).order_by(WhatsAppContent.name)))
