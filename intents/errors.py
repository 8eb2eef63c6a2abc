"""The root of Doorstep's error hierarchy.

It lives in the lowest package so that every part can raise under it: `intents` (the LLM fallback),
`flows` (which may import only `intents`), and `bot` (`bot.core.errors` builds the domain and delivery
errors on it). Errors that callers also know as a built-in kind keep that base too
(`InvalidPhone` is a `ValueError`), so `except ValueError` still works where it did.
"""

from __future__ import annotations


class DoorstepError(Exception):
    """Base of every error Doorstep raises on purpose."""
