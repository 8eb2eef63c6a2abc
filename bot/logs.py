"""Logging for `serve` and `worker`: one line per record, text or JSON, with personal data redacted.

Third-party libraries log what they send: twilio's HTTP client logs each
request's parameters at INFO (recipients' phone numbers), httpx logs every URL
(with tokens in query strings). They are held at WARNING by default. As a
second line of defence every record passes a redaction filter that masks
phone numbers, bearer tokens, Doorstep keys and `token=`/`secret=` query
values, whatever logged them. `DOORSTEP_LOG_FORMAT=json` writes one JSON
object per line for log pipelines.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

# Libraries whose INFO/DEBUG output carries request details (numbers, URLs with tokens).
NOISY = ("twilio", "twilio.http_client", "httpx", "httpcore", "aiogram", "aiogram.event", "openai", "urllib3",
         "uvicorn.access", "apscheduler", "aiohttp.access", "asyncio")

_PHONE = re.compile(r"(?<![\w+])(?:whatsapp:)?\+?\d[\d ()-]{8,17}\d(?!\w)")
_SECRETS = re.compile(
    r"(?i)(bearer\s+)[^\s,;\"']+|\b(dsk|dat|whsec|sk|xoxb)_[A-Za-z0-9+/=_-]{8,}|"
    r"([?&](?:token|secret|key|api_key|apikey|signature|password|auth)=)[^&\s\"']+")


def redact(text: str) -> str:
    """`text` with phone numbers masked (+91******5678) and secrets replaced by `***`."""

    def phone(match: re.Match[str]) -> str:
        raw = match.group(0)
        digits = re.sub(r"\D", "", raw)
        if len(digits) < 10 or len(digits) > 15:
            return raw
        return raw[:3] + "***" + digits[-4:]

    def secret(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1) + "***"
        if match.group(2):
            return match.group(2) + "_***"
        return match.group(3) + "***"

    return _PHONE.sub(phone, _SECRETS.sub(secret, text))


class Redact(logging.Filter):
    """Masks personal data and secrets in the final message (arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class OneLine(logging.Formatter):
    """`2026-11-28T21:03:23Z INFO bot.gateway: message` — newlines escaped, so one record is one line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = f"{stamp} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_text:
            text += " | " + record.exc_text
        return text.replace("\r", "\\r").replace("\n", "\\n")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", *, stream: IO[str] | None = None) -> logging.Handler:
    """Configure the root logger once for a long-running command; returns the handler (tests read it)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines() if fmt == "json" else OneLine())
    handler.addFilter(Redact())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
