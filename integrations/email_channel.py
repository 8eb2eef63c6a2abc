"""Email sender: order records and replies through SMTP (aiosmtplib), HTML and plain text from one template.

What a message becomes: `data/templates/email/message.html` and `message.txt` (Jinja2), with the labels
and subject lines of the customer's language from `data/templates/<locale>/email.yml`. A journey email
carries an order snapshot in its payload (`bot/journeys/records.py`: items, totals, address, tracking
link); a reply carries only its text. Every email has:

* `Reply-To: reply+<reply token>@EMAIL_REPLY_DOMAIN` and a `Message-ID` holding the same token, so a
  reply (from the customer's own address) reaches their conversation (integrations/email_webhooks.py);
* `List-Unsubscribe` (a signed https link) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
  (RFC 8058), so a mail client's unsubscribe button records the opt-out without a page.

Tokens are `<customer id>-<HMAC-SHA256(EMAIL_LINK_SECRET, purpose:id), 24 hex>`: they name the customer,
cannot be forged or moved to another customer, and hold no personal data.

SMTP answers map to bot.core.errors: 4xx, timeouts and dropped connections -> RetryAfter; 5xx (a refused
recipient or message) -> PermanentProviderError; a refused login -> ChannelNotConfigured. This module
never writes to the database and never logs addresses or message text.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import jinja2

from bot.core import replies
from bot.core.channels import OutboundMessage, Receipt
from bot.core.errors import ChannelNotConfigured, PermanentProviderError, RetryAfter
from bot.core.settings import EmailSettings, Settings

SMTP_TIMEOUT_SECONDS = 20.0
TOKEN_HEX = 24
REPLY_PURPOSE = "reply"
UNSUBSCRIBE_PURPOSE = "unsubscribe"
UNSUBSCRIBE_PATH = "/email/unsubscribe"
EMAIL_TEMPLATE_DIR = replies.TEMPLATE_DIR / "email"


# ------------------------------------------------------------------ signed tokens


def _signature(secret: str, purpose: str, customer_id: int) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}:{customer_id}".encode(), hashlib.sha256).hexdigest()
    return digest[:TOKEN_HEX]


def make_token(secret: str, purpose: str, customer_id: int) -> str:
    return f"{customer_id}-{_signature(secret, purpose, customer_id)}"


def read_token(secret: str, purpose: str, token: str) -> int | None:
    """The customer id a token was made for, or None for anything forged, truncated or of another purpose."""
    if not secret or not token or len(token) > 64:
        return None
    head, _, signature = token.strip().lower().partition("-")
    if not head.isdigit() or len(signature) != TOKEN_HEX:
        return None
    customer_id = int(head)
    return customer_id if hmac.compare_digest(signature, _signature(secret, purpose, customer_id)) else None


def reply_address(config: EmailSettings, customer_id: int) -> str:
    token = make_token(config.link_secret.get_secret_value(), REPLY_PURPOSE, customer_id)
    return f"reply+{token}@{config.reply_domain}"


def unsubscribe_url(settings: Settings, customer_id: int) -> str:
    token = make_token(settings.email.link_secret.get_secret_value(), UNSUBSCRIBE_PURPOSE, customer_id)
    return f"{settings.public_url.rstrip('/')}{UNSUBSCRIBE_PATH}?{urlencode({'token': token})}"


def sender_domain(config: EmailSettings) -> str:
    return config.reply_domain or parseaddr(config.from_address)[1].rpartition("@")[2] or "localhost"


# ------------------------------------------------------------------ rendering


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(EMAIL_TEMPLATE_DIR), undefined=jinja2.StrictUndefined,
                              autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def render(message: OutboundMessage, settings: Settings) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of one outbound email, in the customer's language."""
    locale = replies.normalise_locale(str(message.payload.get("locale") or "en"))
    context: dict[str, Any] = dict(message.payload.get("email") or {})
    order = context.get("order")
    kind = str(context.get("kind") or ("update" if order else "message"))
    shop_name = settings.shop_name

    def t(key: str, **variables: Any) -> str:
        return replies.render(f"email.{key}", locale, shop_name=shop_name, **variables)

    variables = {
        "t": t, "kind": kind, "text": message.text, "order": order,
        "customer_name": context.get("customer_name", ""), "viber_link": context.get("viber_link", ""),
        "buttons": [label for label, _ in message.buttons],
        "money": lambda value, currency="": replies.format_money(value, currency, locale),
        "day": lambda value: replies.format_day(value, locale),
        "window": lambda value: replies.format_window(value, locale),
        "unsubscribe_url": unsubscribe_url(settings, int(message.payload["customer_id"]))
        if message.payload.get("customer_id") else "",
    }
    subject = t(f"subject.{kind}", order_id=order["order_id"] if order else "")
    text = _templates().get_template("message.txt").render(subject=subject, **variables)
    html = _templates().get_template("message.html").render(subject=subject, lang=locale, **variables)
    return subject, text, html


def build(message: OutboundMessage, settings: Settings) -> EmailMessage:
    """The MIME message: headers for threading and unsubscribing, plain text with an HTML alternative."""
    config = settings.email
    if not config.configured:
        raise ChannelNotConfigured("email is not configured (EMAIL_SMTP_HOST, EMAIL_FROM, EMAIL_LINK_SECRET)")
    if not message.to:
        raise PermanentProviderError("the customer has no deliverable email address", code="no-recipient")
    try:
        recipient = str(Address(addr_spec=message.to))
    except (ValueError, IndexError):
        raise PermanentProviderError("the customer's email address is not valid", code="no-recipient") from None
    subject, text, html = render(message, settings)
    customer_id = message.payload.get("customer_id")
    email = EmailMessage()
    email["From"] = config.from_address
    email["To"] = recipient
    email["Subject"] = subject
    email["Date"] = formatdate(localtime=False, usegmt=True)
    # The reply token in the Message-ID threads a reply that lost its Reply-To back to the customer.
    token = make_token(config.link_secret.get_secret_value(), REPLY_PURPOSE, int(customer_id)) if customer_id else "x"
    email["Message-ID"] = f"<{token}.{message.outbox_id}.{secrets.token_hex(4)}@{sender_domain(config)}>"
    if config.reply_domain and customer_id:
        email["Reply-To"] = reply_address(config, int(customer_id))
    if customer_id:
        email["List-Unsubscribe"] = f"<{unsubscribe_url(settings, int(customer_id))}>"
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email.set_content(text)
    email.add_alternative(html, subtype="html")
    return email


# ------------------------------------------------------------------ sending


def map_smtp_error(exc: Exception) -> Exception:
    import aiosmtplib

    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return ChannelNotConfigured(f"SMTP {exc.code}: login refused (EMAIL_SMTP_USERNAME / EMAIL_SMTP_PASSWORD)")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [error.code for error in exc.recipients]
        if codes and all(400 <= code < 500 for code in codes):
            return RetryAfter(None, f"SMTP {codes[0]}: recipient deferred", code=str(codes[0]))
        return PermanentProviderError(f"SMTP {codes[0] if codes else '5xx'}: recipient refused",
                                      code=str(codes[0]) if codes else "5xx")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError):
        return RetryAfter(None, "SMTP server unreachable or timed out", code="connection")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if 400 <= exc.code < 500:
            return RetryAfter(None, f"SMTP {exc.code}: temporarily refused", code=str(exc.code))
        return PermanentProviderError(f"SMTP {exc.code}: refused", code=str(exc.code))
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | ConnectionError | OSError):
        return RetryAfter(None, "SMTP server unreachable", code="connection")
    return exc


class EmailSender:
    """Sends `email` outbox messages through the configured SMTP server (one connection per message)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, message: OutboundMessage) -> Receipt:
        import aiosmtplib

        email = build(message, self.settings)
        config = self.settings.email
        try:
            await aiosmtplib.send(
                email, hostname=config.smtp_host, port=config.smtp_port,
                username=config.smtp_username or None, password=config.smtp_password.get_secret_value() or None,
                use_tls=config.smtp_security == "tls", start_tls=config.smtp_security == "starttls",
                timeout=SMTP_TIMEOUT_SECONDS)
        except Exception as exc:
            raise map_smtp_error(exc) from None
        return Receipt(provider_id=str(email["Message-ID"]).strip("<>")[:100], status="sent")


def make_sender(settings: Settings) -> EmailSender:
    return EmailSender(settings)
