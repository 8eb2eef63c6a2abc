"""The API key: from DOORSTEP_API_KEY, or generated once at first start.

A generated key is shown once and only its SHA-256 is stored (table `kv`), so
it cannot leak from the database. `doorstep api-key --rotate` makes a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from bot.core.db import Database
from bot.core.models import KeyValue

KEY_NAME = "api_key_sha256"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def ensure_api_key(db: Database, configured: str) -> str | None:
    """Returns a newly generated key (to print once), or None when one already exists/is configured."""
    if configured:
        return None
    with db.session() as session:
        if session.get(KeyValue, KEY_NAME) is not None:
            return None
        key = "dsk_" + secrets.token_urlsafe(32)
        session.add(KeyValue(key=KEY_NAME, value=_digest(key)))
        return key


def rotate_api_key(db: Database) -> str:
    key = "dsk_" + secrets.token_urlsafe(32)
    with db.session() as session:
        row = session.get(KeyValue, KEY_NAME) or KeyValue(key=KEY_NAME, value="")
        row.value = _digest(key)
        session.add(row)
    return key


def check_api_key(db: Database, configured: str, presented: str) -> bool:
    if not presented:
        return False
    if configured:
        return hmac.compare_digest(configured.encode(), presented.encode())
    with db.read() as session:  # never the write lock: callers may hold a write transaction
        row = session.get(KeyValue, KEY_NAME)
    return row is not None and hmac.compare_digest(row.value, _digest(presented))
