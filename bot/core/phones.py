"""Phone numbers: normalisation to E.164 (phonenumbers) and masking for logs."""

from __future__ import annotations

import functools
import hashlib
import hmac

import phonenumbers

from intents.errors import DoorstepError


class InvalidPhone(DoorstepError, ValueError):
    pass


@functools.lru_cache(maxsize=4096)  # every inbound message and reply plan parses its sender's number
def to_e164(raw: str, default_region: str = "IN", *, strict: bool = True) -> str:
    """Normalise a phone number to E.164, or raise InvalidPhone with a reason.

    `strict` (numbers a shop or a customer types) also asks libphonenumber whether
    the number is assigned in its country. A sender the provider has already
    verified (Twilio's `From`) only needs to be a *possible* number: a range newer
    than the installed metadata must still get its answer.
    """
    text = (raw or "").strip()
    if text.startswith("whatsapp:"):
        text = text[len("whatsapp:") :]
    if not text:
        raise InvalidPhone("phone number is empty")
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number ({exc.args[0] if exc.args else 'unparseable'})") from None
    if strict and not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone("not a valid phone number for its country")
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhone("not a possible phone number (wrong length for its country)")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask(phone: str | None) -> str:
    """'+919812345678' -> '+91******5678'; safe to log."""
    if not phone:
        return "-"
    return phone[:3] + "*" * max(0, len(phone) - 7) + phone[-4:]


def phone_hash(phone: str, salt: str) -> str:
    return hmac.new(salt.encode(), phone.encode(), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=4096)
def country_of(phone: str | None) -> str | None:
    """The ISO country of an E.164 number ("US", "IN"), or None when unknown."""
    if not phone:
        return None
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone.removeprefix("whatsapp:"), None))
    except phonenumbers.NumberParseException:
        return None
    return region if region and region != "ZZ" else None


def forget_parsed_numbers() -> None:
    """Drop the parsed numbers kept in this process's memory (called when a customer is erased:
    their number must not outlive the erasure here either; the caches refill as messages arrive)."""
    to_e164.cache_clear()
    country_of.cache_clear()