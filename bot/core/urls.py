"""Which URLs may be sent to a customer or rendered as a link: http(s) with a host, nothing else.

`javascript:`, `data:`, `vbscript:` and scheme-relative tricks are refused at the
API (tracking links) and never rendered as links in the inbox (attachments).
"""

from __future__ import annotations

from urllib.parse import urlsplit


def is_web_url(value: str) -> bool:
    text = value.strip()
    if not text or any(ord(ch) < 0x20 for ch in text) or "\\" in text:
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)


def safe_link(value: object) -> str:
    """The URL when it may be a link, else "" (for templates: `{% if url | safe_link %}`)."""
    text = str(value or "")
    return text.strip() if is_web_url(text) else ""
