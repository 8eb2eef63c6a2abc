"""Logging for Doorstep's long-running processes (`serve`, `worker`): one line per record.

- `DOORSTEP_LOG_FORMAT=text` (default) prints `time level logger: message`;
  `json` prints one JSON object per line for log pipelines. A traceback stays
  inside its record's line (newlines escaped), so no pipeline splits it.
- Third-party request logging is silenced by default: the twilio library logs
  every API call with the recipient's number at INFO, httpx logs every URL
  (the agent webhook's carries its secret), aiogram logs every update. They
  still log warnings and errors.
- uvicorn's access log is off unless `DOORSTEP_ACCESS_LOG=true`, and then it
  never shows query strings (`?token=` of Rasa and Chatwoot webhooks).
- `RedactingFilter` masks E.164-looking numbers, bearer tokens, secrets in
  query strings and URL credentials in every record, as defence in depth: the
  code already must not log them.

This module must never be imported for its side effects: nothing happens
until `setup_logging` is called.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any, Literal

# Loggers that log request details (numbers, URLs with secrets, chat ids) at INFO or DEBUG.
QUIET_LOGGERS = ("twilio", "twilio.http_client", "httpx", "httpcore", "aiogram", "aiogram.event",
                 "aiogram.dispatcher", "openai", "urllib3", "aiohttp.access", "apscheduler", "aiosmtplib", "mail.log")
_HANDLER_MARK = "_doorstep_handler"

_PHONE = re.compile(r"(?<![\w+%])(?:whatsapp:)?(?:\+|%2[Bb])(\d(?:[ .()-]{0,2}\d){6,15})(?!\d)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}")
_QUERY_SECRET = re.compile(
    r"(?i)(\b(?:token|secret|signature|sig|api[_-]?key|access[_-]?token|auth|password|passwd|key)=)[^&\s\"',;]+")
_HEADER_SECRET = re.compile(
    r"(?i)(\b(?:authorization|api_access_token|x-twilio-signature|x-telegram-bot-api-secret-token|x-viber-auth-token"
    r"|x-viber-content-signature)[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(?:bearer|basic)\s+)?[^\s\"',}]+")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
_TELEGRAM_TOKEN = re.compile(r"\b\d{6,}:[A-Za-z0-9_-]{30,}")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@((?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z][A-Za-z0-9-]{1,62})\b")
_KNOWN_SECRETS = re.compile(r"\b(whsec_|sk-|sk_live_|sk_test_)[A-Za-z0-9+/=_-]{6,}")


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(1))
    return "+" + "*" * max(0, len(digits) - 2) + digits[-2:]


def redact(text: str) -> str:
    """`text` with phone numbers, tokens and credentials masked."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _TELEGRAM_TOKEN.sub("***", text)
    text = _KNOWN_SECRETS.sub(r"\1***", text)
    text = _BEARER.sub(r"\1\2***", text)
    text = _HEADER_SECRET.sub(r"\1***", text)
    text = _QUERY_SECRET.sub(r"\1***", text)
    text = _EMAIL.sub(r"***@\1", text)
    return _PHONE.sub(_mask_phone, text)


class RedactingFilter(logging.Filter):
    """Masks personal data and secrets in a record's message and traceback (handler filter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the template, drop the arguments
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class AccessLogWithoutQuery(logging.Filter):
    """uvicorn's access records carry (client, method, path?query, version, status): drop the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            path = args[2]
            if isinstance(path, str):
                args[2] = path.split("?", 1)[0]
                record.args = tuple(args)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    # The record's own creation time (set by logging), in UTC.
    return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class OneLineFormatter(logging.Formatter):
    """`2026-11-28T10:00:00.000Z INFO bot.delivery.dispatcher: message` with newlines escaped."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += " | " + record.exc_text
        return line.replace("\r", "").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (and exc when there is a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": _timestamp(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: Literal["text", "json"] = "text", *, access_log: bool = False,
                  stream: IO[str] | None = None) -> logging.Handler:
    """Install Doorstep's one handler on the root logger (replacing a previous one); returns it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else OneLineFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's records go through this handler too (serve passes log_config=None), never its own.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.INFO if access_log else logging.WARNING)
    if not any(isinstance(f, AccessLogWithoutQuery) for f in access.filters):
        access.addFilter(AccessLogWithoutQuery())
    if stream is None:  # the process's own log (not a test's stream): nothing else may write to it
        route_stray_output()
    return handler


def route_stray_output() -> None:
    """What Python would print to stderr outside logging goes through it instead, so a JSON log
    stays one JSON object per line and the redaction applies: warnings (`ResourceWarning`s of
    connections left open at exit), exceptions in `__del__` and callbacks ("Exception ignored
    in …"), and uncaught exceptions in threads."""
    logging.captureWarnings(True)
    stray = logging.getLogger("bot.stray")

    def unraisable(info: Any) -> None:
        exc = (type(info.exc_value), info.exc_value, info.exc_traceback) if info.exc_value is not None else None
        stray.error("%s: %r", info.err_msg or "Exception ignored in", info.object, exc_info=exc)

    def thread_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        stray.error("uncaught exception in thread %s", name,
                    exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]

    sys.unraisablehook = unraisable
    threading.excepthook = thread_exception
