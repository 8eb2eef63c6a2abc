"""Customers: erasure (DELETE /api/customers/{phone}) and the message log.

(Reserved module: its router is already mounted by bot.app; fill it in.)
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
