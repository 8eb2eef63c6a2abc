"""The agent inbox (GET /inbox), server-rendered HTML.

(Reserved module: its router is already mounted by bot.app; fill it in.)
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
