"""Rasa action server endpoint: POST /rasa/webhook (rasa-sdk ActionExecutor).

(Reserved module: its router is already mounted by bot.app; fill it in.)
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
