"""Parsing untrusted JSON bodies: a clear ValueError, never a RecursionError (an HTTP 500).

`json.loads` raises RecursionError on `[[[[…]]]]` nested a few thousand deep,
which escaped the webhooks' `except ValueError` and answered 500. Every
webhook that parses JSON itself goes through `loads`; no real payload (Rasa,
Chatwoot, carriers, Telegram) nests anywhere near MAX_DEPTH.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


def _too_deep(text: str) -> bool:
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def loads(raw: bytes | str) -> Any:
    """`json.loads`, refusing (ValueError) bodies nested deeper than MAX_DEPTH."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(text):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
