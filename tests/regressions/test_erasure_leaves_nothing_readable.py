"""Erasure leaves nothing of the customer readable in the database.

It blanked the columns but left the customer's phone, name, address and
messages readable in `doorstep.db-wal` and in freed pages of the main file;
the Telegram chat id stayed inside the provider ids of sent messages; the
tracking number and URL stayed on the order. A customer who talked on
Telegram, changed nothing, asked for a human and got replies is erased; then:
- SQLite: the raw bytes of the main file, the `-wal` and the `-shm` file hold
  none of their identifiers or words;
- both backends: no value of any row of any table does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import SQLModel, select

import bot.core.models  # noqa: F401  (every table in the metadata)
from bot.app import create_app
from bot.core.models import ChatwootLink, Customer, Escalation
from bot.core.phones import country_of, to_e164
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from tests.channels.conftest import TELEGRAM_SECRET, with_channels
from tests.fakes.telegram_server import FakeTelegram, update
from tests.support.factories import order_payload

PHONE = "+919845012377"
CHAT = 913377001
NAME = "Zephyrine Quillbottom"
LINE1 = "47 Wisteria Crescent"
LANDMARK = "opposite Marigold Bakery"
POSTAL = "560099"
TRACKING = "TRKQZ93817"
CHATWOOT_CONTACT = 880041377
SAID = ("please leave it with Mrs Pemberton at flat 9C", "I want to talk to a human about the parcel")

LATE = "ring the bell twice for Quillbottom"
SECRETS = (PHONE, PHONE[1:], PHONE[3:], str(CHAT), NAME, "Zephyrine", "Quillbottom", "Wisteria Crescent",
           "Marigold Bakery", POSTAL, TRACKING, str(CHATWOOT_CONTACT), "Pemberton", "talk to a human about the parcel", LATE)
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}


@pytest.fixture
def service(settings: Settings, fake_telegram: FakeTelegram) -> Iterator[Service]:
    made = Service.create(with_channels(settings, telegram=fake_telegram))
    yield made
    made.db.dispose()


def _talk(service: Service, client: TestClient, auth: dict[str, str], fake: FakeTelegram) -> None:
    payload = order_payload(
        phone=PHONE, tracking_number=TRACKING, tracking_url=f"https://track.example.com/{TRACKING}",
        customer={"name": NAME, "telegram_chat_id": CHAT, "channel": "telegram"},
        shipping_address={"line1": LINE1, "landmark": LANDMARK, "postal_code": POSTAL})
    assert client.post("/api/orders", json=payload, headers=auth).status_code in (200, 201)
    event = client.post("/api/orders/A1001/events", json={"type": "shipped", "at": service.now().isoformat(),
                                                          "note": f"tracking {TRACKING}"}, headers=auth)
    assert event.status_code == 201, event.text
    for text in SAID:
        response = client.post("/webhooks/telegram", json=update(CHAT, text=text), headers=HEADERS)
        assert response.status_code == 200, response.text
    dispatcher = Dispatcher(service.db, service.settings)
    while asyncio.run(dispatcher.run_once_and_close()):
        pass
    assert fake.sent_to(CHAT), "the bot replied on Telegram (provider ids embed the chat id)"
    with service.db.session() as session:
        escalation = session.exec(select(Escalation)).first()
        assert escalation is not None, "the customer reached a human"
        # What the Chatwoot sender records once it has mirrored the escalation (integrations/chatwoot.py).
        session.add(ChatwootLink(escalation_id=escalation.id or 0, conversation_id=escalation.conversation_id,
                                 chatwoot_contact_id=CHATWOOT_CONTACT, chatwoot_conversation_id=77, status="open"))


def _database_files(service: Service) -> dict[str, bytes]:
    path = Path(service.db.engine.url.database or "")
    return {file.name: file.read_bytes() for file in path.parent.glob(path.name + "*")}


def _all_rows(service: Service) -> str:
    chunks: list[str] = []
    with service.db.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            chunks.extend(repr(tuple(row)) for row in conn.execute(sa.select(table)))
    return "\n".join(chunks)


def _found(haystack: bytes) -> list[str]:
    return [secret for secret in SECRETS if secret.encode() in haystack]


def test_erasure_leaves_no_identifier_or_word_of_the_customer_in_the_database(
        service: Service, fake_telegram: FakeTelegram, auth: dict[str, str]) -> None:
    with TestClient(create_app(service=service)) as client:
        _talk(service, client, auth, fake_telegram)
        rows = _all_rows(service)
        assert set(_found(rows.encode())) >= {PHONE, str(CHAT), NAME, TRACKING, "Wisteria Crescent", "Pemberton"}
        assert f"{CHAT}:" in rows  # a sent message's provider id names the chat
        if service.db.is_sqlite:
            # A running service checkpoints by itself: part of the data is in the main file, part in the log.
            raw = service.db.engine.raw_connection()
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            raw.close()
            client.post("/webhooks/telegram", json=update(CHAT, text=LATE), headers=HEADERS)
            files = _database_files(service)
            assert _found(files["doorstep-test.db"]) and LATE.encode() in files["doorstep-test.db-wal"]

        assert to_e164.cache_info().currsize and country_of.cache_info().currsize  # parsed while they talked
        response = client.delete(f"/api/customers/{PHONE}", headers=auth)
        assert response.status_code == 200 and response.json()["erased"] is True
        # Nor kept in this process's memory: the parsed-number caches held their number.
        assert to_e164.cache_info().currsize == 0 and country_of.cache_info().currsize == 0

        assert _found(_all_rows(service).encode()) == []
        if service.db.is_sqlite:
            files = _database_files(service)
            assert any(name.endswith("-wal") for name in files), "the service still runs in WAL mode"
            for name, content in files.items():
                assert _found(content) == [], name
        else:
            # The dead row versions holding the old values are reclaimed at once, not at autovacuum's leisure.
            with service.db.engine.connect() as conn:
                vacuumed = conn.exec_driver_sql(
                    "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL").scalars().all()
            assert {"customer", "orders", "message", "outbox", "escalation", "logistics_event"} <= set(vacuumed)
        with service.db.read() as session:
            customer = session.exec(select(Customer)).one()
            assert customer.erased_at is not None and customer.phone_hash
            # Nobody is left to answer: the escalation is closed and no longer linked to a Chatwoot contact.
            assert session.exec(select(Escalation)).one().status == "resolved"
            assert session.exec(select(ChatwootLink)).one().chatwoot_conversation_id is None
        # The service keeps working for everyone else after the purge.
        other = order_payload(order_id="B2002", phone="+919812345678")
        assert client.post("/api/orders", json=other, headers=auth).status_code in (200, 201)
