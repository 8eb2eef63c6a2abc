"""Twilio SMS/WhatsApp webhooks: POST /webhooks/twilio and /webhooks/twilio/status.

(Reserved module: its router is already mounted by bot.app; fill it in.)
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
