"""`doorstep chat --say` piped (or in a narrow terminal) broke replies into 80-column
lines, splitting URLs. A reply is printed as one line, exactly as stored."""

from __future__ import annotations

import os
import subprocess

from sqlmodel import col, select

from bot.cli.demo import load_demo
from bot.core.models import Message
from bot.core.settings import Settings
from bot.service import Service
from tests.support.server import DOORSTEP


def test_piped_chat_reply_is_one_unbroken_line(settings: Settings) -> None:
    load_demo(Service.create(settings))
    env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES"}}
    env.update({"DATABASE_URL": settings.database_url, "DOORSTEP_API_KEY": "k" * 32})
    chat = subprocess.run([DOORSTEP, "chat", "--phone", "+919812345678", "--say", "where is my order"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert chat.returncode == 0, chat.stderr
    with Service.create(settings).db.read() as session:
        reply = session.exec(select(Message).where(Message.direction == "out")
                             .order_by(col(Message.id).desc())).first()
    assert reply is not None and len(reply.text) > 80  # long enough to have been wrapped
    assert reply.text in chat.stdout.splitlines()
    assert "https://track.example.com/DL123" in chat.stdout.splitlines()[0]
