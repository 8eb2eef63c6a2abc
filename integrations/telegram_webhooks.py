"""Telegram webhook: POST /webhooks/telegram (aiogram types, secret token checked).

(Reserved module: its router is already mounted by bot.app; fill it in.)
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
