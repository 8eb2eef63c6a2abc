"""The dispatcher with the real twilio and aiogram clients against the fakes:
retries, permanent errors, the WhatsApp window, expiry, opt-out, rate limits,
crashes and several workers. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from bot.core.channels import InboundMessage
from bot.core.models import Customer, Message, Outbox
from bot.core.settings import Settings
from bot.delivery.dispatcher import LEASE, Dispatcher
from bot.service import Service
from bot.store.outbox import PRIORITY_TRANSACTIONAL, enqueue_message
from tests.channels.conftest import ASHA, Clock, add_order, drain, new_service, with_channels
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.twilio_server import FakeTwilio

CHAT = 555001


def _service(settings: Settings, twilio: FakeTwilio | None = None, telegram: FakeTelegram | None = None,
             **extra: object) -> Service:
    service = new_service(with_channels(settings, twilio=twilio, telegram=telegram, **extra))
    add_order(service, customer={"telegram_chat_id": str(CHAT)})
    return service


def _queue(service: Service, text: str, *, channel: str = "sms", priority: int = 0, expires_in: float | None = None,
           template: str | None = None, clock: Clock | None = None) -> int:
    now = clock() if clock else None
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        expires = (now or service.now()) + timedelta(seconds=expires_in) if expires_in is not None else None
        message = enqueue_message(session=session, customer=customer, channel=channel, text=text, priority=priority,
                                  expires_at=expires, template=template, now=now)
        assert message is not None
        return message.id or 0


def _outbox(service: Service, message_id: int) -> tuple[Outbox, Message]:
    with service.db.session() as session:
        row = session.exec(select(Outbox).where(Outbox.message_id == message_id)).one()
        message = session.get(Message, message_id)
        assert message is not None
        return row, message


def _once(dispatcher: Dispatcher) -> int:
    return asyncio.run(dispatcher.run_once_and_close())


# ---------------------------------------------------------------- Twilio failures


@pytest.mark.parametrize(("status", "code"), [(500, None), (503, 20500), (429, 20429)])
def test_transient_twilio_errors_are_retried_with_backoff_then_sent(
        settings: Settings, fake_twilio: FakeTwilio, status: int, code: int | None) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio)
    message_id = _queue(service, "Your order is on its way", clock=clock)
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    fake_twilio.fail_next(status, code)
    _once(dispatcher)
    row, message = _outbox(service, message_id)
    assert row.status == "pending" and row.attempts == 1 and message.status == "queued"
    assert row.due_at > clock.now  # backoff, not a hot loop
    assert _once(dispatcher) == 0  # not due yet
    clock.advance(seconds=5)
    _once(dispatcher)
    row, message = _outbox(service, message_id)
    assert row.status == "sent" and message.status == "queued" and message.provider_message_id
    assert len(fake_twilio.sent_to(ASHA)) == 1


def test_a_twilio_timeout_is_retried(settings: Settings, fake_twilio: FakeTwilio) -> None:
    import integrations.twilio_channel as twilio_channel

    clock = Clock()
    service = _service(settings, fake_twilio)
    message_id = _queue(service, "hello", clock=clock)
    fake_twilio.fail_next(200, delay=twilio_channel.REQUEST_TIMEOUT_SECONDS + 2)
    _once(Dispatcher(service.db, service.settings, clock=clock))
    row, _ = _outbox(service, message_id)
    assert row.status == "pending" and "timed out" in (row.last_error or "")


@pytest.mark.parametrize(("code", "opted_out"), [(21610, True), (21211, False)])
def test_permanent_twilio_errors_fail_at_once_and_are_never_retried(
        settings: Settings, fake_twilio: FakeTwilio, code: int, opted_out: bool) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio)
    message_id = _queue(service, "hello", clock=clock)
    fake_twilio.fail_next(400, code)
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    _once(dispatcher)
    clock.advance(hours=2)
    assert _once(dispatcher) == 0
    row, message = _outbox(service, message_id)
    assert (row.status, message.status, message.error_code) == ("failed", "failed", str(code))
    assert row.attempts == 1
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        assert customer.opted_out_channels == (["sms"] if opted_out else [])


def test_a_message_without_validity_is_dead_lettered_after_the_retry_horizon(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio)
    message_id = _queue(service, "hello", priority=PRIORITY_TRANSACTIONAL, clock=clock)
    fake_twilio.fail_next(500, times=40)
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    for _ in range(11):  # 20 hours of failures: still retrying, whatever the attempt count
        _once(dispatcher)
        clock.advance(hours=2)
    row, message = _outbox(service, message_id)
    assert row.status == "pending" and row.attempts > row.max_attempts
    for _ in range(3):
        _once(dispatcher)
        clock.advance(hours=2)
    row, message = _outbox(service, message_id)
    assert row.status == "dead" and message.status == "failed" and "gave up" in (row.last_error or "")
    assert fake_twilio.messages == []


# ---------------------------------------------------------------- expiry and opt-out


def test_expired_message_is_not_sent_and_validity_period_is_passed(settings: Settings, fake_twilio: FakeTwilio) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio)
    late = _queue(service, "out for delivery now", expires_in=60, clock=clock)
    clock.advance(seconds=120)
    fresh = _queue(service, "delivery tomorrow", expires_in=3600, clock=clock)
    _once(Dispatcher(service.db, service.settings, clock=clock))
    assert _outbox(service, late)[1].status == "expired"
    assert _outbox(service, fresh)[0].status == "sent"
    [sent] = fake_twilio.sent_to(ASHA)
    assert sent["body"] == "delivery tomorrow" and 3500 <= int(sent["validity_period"]) <= 3600


def test_proactive_messages_to_an_opted_out_customer_are_not_sent(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = _service(settings, fake_twilio)
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        customer.opted_out_channels = ["sms"]
        session.add(customer)
    proactive = _queue(service, "Your order has shipped!", priority=PRIORITY_TRANSACTIONAL)
    drain(Dispatcher(service.db, service.settings))
    assert _outbox(service, proactive)[1].status == "cancelled"
    assert fake_twilio.sent_to(ASHA) == []


# ---------------------------------------------------------------- WhatsApp window


def _whatsapp_inbound(service: Service, hours_ago: float) -> None:
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        session.add(Message(customer_id=customer.id, direction="in", channel="whatsapp", text="hi", status="processed",
                            created_at=service.now() - timedelta(hours=hours_ago)))


def test_whatsapp_inside_the_window_sends_free_form(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = _service(settings, fake_twilio)
    _whatsapp_inbound(service, hours_ago=23)
    _queue(service, "Your parcel is near", channel="whatsapp")
    drain(Dispatcher(service.db, service.settings))
    [sent] = fake_twilio.messages
    assert sent["to"] == f"whatsapp:{ASHA}" and sent["body"] == "Your parcel is near" and not sent["content_sid"]


def test_whatsapp_outside_the_window_uses_the_approved_template(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = _service(settings, fake_twilio, twilio_whatsapp_templates="journey.shipped=HX1111,*=HX9999")
    _whatsapp_inbound(service, hours_ago=25)
    _queue(service, "Your order shipped", channel="whatsapp", template="journey.shipped")
    _queue(service, "Anything else", channel="whatsapp", template="other")
    drain(Dispatcher(service.db, service.settings))
    assert [(m["content_sid"], m["body"]) for m in fake_twilio.messages] == [("HX1111", ""), ("HX9999", "")]
    # The operator's own templates: the text is never stuffed into one variable (a queued message without
    # the journey's named values sends the template as it is).
    assert [m["content_variables"] for m in fake_twilio.messages] == [None, None]


def test_whatsapp_outside_the_window_without_template_falls_back_to_sms(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = _service(settings, fake_twilio)
    message_id = _queue(service, "Your order shipped", channel="whatsapp")
    drain(Dispatcher(service.db, service.settings))
    [sent] = fake_twilio.messages
    assert sent["to"] == ASHA and sent["from"] == "+15005550006" and sent["body"] == "Your order shipped"
    row, message = _outbox(service, message_id)
    assert (row.status, row.channel, message.channel) == ("sent", "sms", "sms")


def test_whatsapp_63016_from_the_api_falls_back_to_sms(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = _service(settings, fake_twilio)
    _whatsapp_inbound(service, hours_ago=1)
    message_id = _queue(service, "Rescheduled to Saturday", channel="whatsapp")
    fake_twilio.fail_next(400, 63016)
    drain(Dispatcher(service.db, service.settings))
    assert [m["to"] for m in fake_twilio.messages] == [ASHA]
    row, message = _outbox(service, message_id)
    assert (row.status, message.channel, message.error_code) == ("sent", "sms", "63016")


def test_no_sms_fallback_when_the_customer_opted_out_of_sms(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = _service(settings, fake_twilio)
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        customer.opted_out_channels = ["sms"]
        session.add(customer)
    message_id = _queue(service, "Your order shipped", channel="whatsapp")
    drain(Dispatcher(service.db, service.settings))
    assert fake_twilio.messages == []
    assert _outbox(service, message_id)[1].status == "failed"


# ---------------------------------------------------------------- Telegram


def test_telegram_send_with_inline_buttons(settings: Settings, fake_telegram: FakeTelegram) -> None:
    service = _service(settings, telegram=fake_telegram)
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        enqueue_message(session=session, customer=customer, channel="telegram", text="Confirm COD?",
                        buttons=[("Yes", "/btn:cod_confirm"), ("No", "/btn:deny")])
    drain(Dispatcher(service.db, service.settings))
    [sent] = fake_telegram.sent_to(CHAT)
    assert sent["text"] == "Confirm COD?"
    assert sent["reply_markup"]["inline_keyboard"][0][0] == {"text": "Yes", "callback_data": "/btn:cod_confirm"}


def test_telegram_429_obeys_retry_after(settings: Settings, fake_telegram: FakeTelegram) -> None:
    clock = Clock()
    service = _service(settings, telegram=fake_telegram)
    message_id = _queue(service, "hi there", channel="telegram", clock=clock)
    fake_telegram.fail_next(429, retry_after=30)
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    _once(dispatcher)
    row, _ = _outbox(service, message_id)
    assert row.status == "pending" and row.due_at >= clock.now + timedelta(seconds=30)
    clock.advance(seconds=20)
    assert _once(dispatcher) == 0
    clock.advance(seconds=11)
    _once(dispatcher)
    assert _outbox(service, message_id)[0].status == "sent"
    assert len(fake_telegram.sent_to(CHAT)) == 1


@pytest.mark.parametrize(("status", "final", "opted_out"), [(403, "failed", True), (400, "failed", False),
                                                              (500, "pending", False)])
def test_telegram_errors(settings: Settings, fake_telegram: FakeTelegram, status: int, final: str,
                         opted_out: bool) -> None:
    service = _service(settings, telegram=fake_telegram)
    message_id = _queue(service, "hi there", channel="telegram")
    fake_telegram.fail_next(status)
    _once(Dispatcher(service.db, service.settings))
    row, message = _outbox(service, message_id)
    assert row.status == final
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        assert ("telegram" in customer.opted_out_channels) is opted_out


def test_telegram_per_chat_rate_is_about_one_per_second(settings: Settings, fake_telegram: FakeTelegram) -> None:
    service = _service(settings, telegram=fake_telegram)
    for i in range(3):
        _queue(service, f"update {i}", channel="telegram")
    _once(Dispatcher(service.db, service.settings))
    sent = fake_telegram.sent_to(CHAT)
    assert [m["text"] for m in sent] == ["update 0", "update 1", "update 2"]  # in order
    gaps = [b["_monotonic"] - a["_monotonic"] for a, b in zip(sent, sent[1:], strict=False)]
    assert all(gap >= 1.0 for gap in gaps), gaps


def test_sms_sender_rate_defers_instead_of_holding_the_lease(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = _service(settings, fake_twilio, twilio_sms_rate=1.0)
    ids = []
    with service.db.session() as session:
        for i in range(6):
            customer = Customer(phone=f"+9198111{i:05d}")
            session.add(customer)
            session.flush()
            message = enqueue_message(session=session, customer=customer, channel="sms", text=f"sms {i}")
            assert message is not None
            ids.append(message.id or 0)
    started = time.monotonic()
    _once(Dispatcher(service.db, service.settings))
    elapsed = time.monotonic() - started
    statuses = [_outbox(service, i)[0] for i in ids]
    sent = [r for r in statuses if r.status == "sent"]
    deferred = [r for r in statuses if r.status == "pending"]
    assert 2 <= len(sent) <= 4 and len(sent) + len(deferred) == 6, [r.status for r in statuses]
    assert all(r.attempts == 0 for r in deferred)  # deferral is not a failed attempt
    assert elapsed < 5


def test_sends_held_past_their_rate_slots_by_busy_provider_calls_keep_the_rate(settings: Settings,
                                                                                 fake_twilio: FakeTwilio) -> None:
    """The provider calls in flight are bounded; messages whose rate-limit slots passed while they
    waited for one of them would all go out at once when it freed, faster than the sender's rate.
    Each takes a fresh slot instead: they go out spaced by the rate."""
    rate = 5.0
    service = _service(settings, fake_twilio, twilio_sms_rate=rate)
    with service.db.session() as session:
        for i in range(3):
            customer = Customer(phone=f"+9198333{i:05d}")
            session.add(customer)
            session.flush()
            assert enqueue_message(session=session, customer=customer, channel="sms", text=f"held {i}") is not None
    dispatcher = Dispatcher(service.db, service.settings)

    async def held() -> list[str]:
        try:
            claimed = await asyncio.to_thread(dispatcher.claim)
            sending = asyncio.Semaphore(1)
            await sending.acquire()  # another send is in flight
            attempts = [asyncio.create_task(dispatcher.attempt(item, sending)) for item in claimed]
            await asyncio.sleep(0.7)  # all three slots (0, 0.2, 0.4 s) pass meanwhile
            sending.release()
            return [outcome.status for outcome, _ in await asyncio.gather(*attempts)]
        finally:
            await dispatcher.aclose()

    assert asyncio.run(held()) == ["sent"] * 3
    times = sorted(float(m["_monotonic"]) for m in fake_twilio.messages)
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert len(times) == 3 and min(gaps) >= 1 / rate - 0.06, gaps  # the slots' tolerance is 50 ms


# ---------------------------------------------------------------- crashes and workers


def test_crash_after_commit_before_send_sends_once_after_restart(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = _service(settings, fake_twilio)
    handled = service.handle_inbound(InboundMessage(channel="sms", text="where is my order", phone=ASHA,
                                                    provider_message_id="SMcrash1"))
    assert len(handled.replies) == 1
    # The process died here: committed, nothing sent. A new process starts:
    restarted = new_service(service.settings)
    drain(Dispatcher(restarted.db, restarted.settings))
    drain(Dispatcher(restarted.db, restarted.settings))
    assert len(fake_twilio.sent_to(ASHA)) == 1


def test_crash_after_provider_accepted_before_record_is_reconciled_not_resent(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio)
    message_id = _queue(service, "Your order is out for delivery", clock=clock)
    crashed = Dispatcher(service.db, service.settings, clock=clock, worker_id="crashed-worker")
    [claimed] = crashed.claim()
    sender = crashed.sender_for("message:sms")
    assert sender is not None and claimed.message is not None
    asyncio.run(sender.send(claimed.message))  # Twilio accepted it ... and the worker died before recording.
    assert len(fake_twilio.messages) == 1
    survivor = Dispatcher(service.db, service.settings, clock=clock, worker_id="survivor")
    assert _once(survivor) == 0  # the lease still protects the row
    clock.advance(seconds=LEASE.total_seconds() + 1)
    assert _once(survivor) == 1
    row, message = _outbox(service, message_id)
    assert row.status == "sent" and message.provider_message_id == fake_twilio.messages[0]["sid"]
    assert len(fake_twilio.messages) == 1  # reconciled, not sent twice
    assert any(r["method"] == "GET" for r in fake_twilio.requests)


def test_a_worker_whose_lease_was_taken_over_records_nothing(settings: Settings, fake_twilio: FakeTwilio) -> None:
    """The outcome is written by UPDATEs guarded by the lease: a slow worker's late "sent" or
    put-back never overwrites the row another worker now holds."""
    from bot.core.channels import Receipt
    from bot.delivery.outcomes import Outcome

    clock = Clock()
    service = _service(settings, fake_twilio)
    message_id = _queue(service, "slow worker", clock=clock)
    slow = Dispatcher(service.db, service.settings, clock=clock, worker_id="slow")
    [late] = slow.claim()
    clock.advance(seconds=LEASE.total_seconds() + 1)
    fast = Dispatcher(service.db, service.settings, clock=clock, worker_id="fast")
    [taken] = fast.claim()
    slow.record(late, Outcome("sent"), Receipt(provider_id="SMlate"))
    slow.record(late, Outcome("deferred", retry_in=30), None)
    row, message = _outbox(service, message_id)
    assert (row.status, row.claimed_by, row.attempts, row.provider_id) == ("sending", "fast", 2, None)
    assert message.status == "queued" and message.provider_message_id is None
    fast.record(taken, Outcome("sent"), Receipt(provider_id="SMfast", status="queued"))
    row, message = _outbox(service, message_id)
    assert (row.status, row.provider_id, row.claimed_until) == ("sent", "SMfast", None)
    assert (message.status, message.provider_message_id) == ("queued", "SMfast") and message.sent_at is not None


def test_reclaimed_row_that_never_reached_the_provider_is_sent(settings: Settings, fake_twilio: FakeTwilio) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio)
    message_id = _queue(service, "hello again", clock=clock)
    Dispatcher(service.db, service.settings, clock=clock, worker_id="crashed").claim()
    clock.advance(seconds=LEASE.total_seconds() + 1)
    _once(Dispatcher(service.db, service.settings, clock=clock, worker_id="survivor"))
    assert _outbox(service, message_id)[0].status == "sent"
    assert len(fake_twilio.messages) == 1


def test_two_workers_on_the_same_outbox_never_send_a_row_twice(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = _service(settings, fake_twilio)
    with service.db.session() as session:
        customers = []
        for i in range(30):
            customer = Customer(phone=f"+9198000{i:05d}", name=f"C{i}")
            session.add(customer)
            customers.append(customer)
        session.flush()
        for i, customer in enumerate(customers):
            enqueue_message(session=session, customer=customer, channel="sms", text=f"message {i}")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        dispatcher = Dispatcher(new_service(service.settings, migrate=False).db, service.settings, worker_id=name)
        try:
            barrier.wait()
            for _ in range(10):
                asyncio.run(dispatcher.run_once_and_close(limit=5))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    bodies = sorted(m["body"] for m in fake_twilio.messages)
    assert bodies == sorted(f"message {i}" for i in range(30))  # each exactly once
    with service.db.session() as session:
        rows = session.exec(select(Outbox).where(Outbox.kind == "message")).all()
        assert {r.status for r in rows} == {"sent"}
        assert {r.claimed_by for r in rows} == {"w0", "w1"} or service.db.is_sqlite
        assert session.exec(select(col(Outbox.id)).where(Outbox.attempts != 1)).all() == []


def test_a_batch_claimed_ahead_is_put_back_when_the_loop_ends(settings: Settings, fake_twilio: FakeTwilio) -> None:
    """run_forever claims the next batch while one is sent; stopping puts it back, not an attempt."""
    service = _service(settings, fake_twilio)
    with service.db.session() as session:
        customers = [Customer(phone=f"+9198111{i:05d}", name=f"C{i}") for i in range(60)]
        session.add_all(customers)
        session.flush()
        for i, customer in enumerate(customers):
            enqueue_message(session=session, customer=customer, channel="sms", text=f"ahead {i}")
    dispatcher = Dispatcher(service.db, service.settings, worker_id="loop")

    async def one_batch_then_stop() -> int:
        try:
            return await dispatcher.run_once(prefetch=True)
        finally:
            await dispatcher.release_prefetched()
            await dispatcher.aclose()

    claimed = asyncio.run(one_batch_then_stop())
    # 50 sent, bar any the shared rate limiter put back after its max wait (a loop too busy to keep any slot).
    assert claimed == 50 and 45 <= len(fake_twilio.messages) <= 50
    with service.db.read() as session:
        rest = session.exec(select(Outbox).where(Outbox.kind == "message", Outbox.status != "sent")).all()
    assert len(rest) == 60 - len(fake_twilio.messages)  # the 10 claimed ahead among them
    assert {(r.status, r.attempts, r.claimed_by) for r in rest} == {("pending", 0, "loop")}
    clock = Clock()
    clock.advance(seconds=2)  # put back due a second later, like any put-back
    drain(Dispatcher(service.db, service.settings, clock=clock))
    assert sorted(m["body"] for m in fake_twilio.messages) == sorted(f"ahead {i}" for i in range(60))


def test_a_lone_reply_costs_one_claim_and_the_loop_still_wakes_for_the_next(settings: Settings,
                                                                            fake_twilio: FakeTwilio) -> None:
    """A claim that came back short with every row sent leaves nothing due: the loop waits for the
    next wake-up instead of claiming again at once (an empty claim cost as much as the reply's own),
    and a reply queued afterwards still goes out at once, not at the next poll."""
    service = _service(settings, fake_twilio)
    claims: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().startswith("WITH picked AS"):
            claims.append(statement)

    async def run() -> tuple[int, int, float]:
        dispatcher = Dispatcher(service.db, service.settings)
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run_forever(stop, idle_sleep=30.0))  # no polling in this test
        try:
            settled = -1
            while settled != len(claims):  # the start's empty claims (PostgreSQL: once more when LISTEN starts)
                settled = len(claims)
                await asyncio.sleep(0.3)
            await asyncio.to_thread(_queue, service, "first")
            for _ in range(100):
                if fake_twilio.messages:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # time for a needless claim to happen
            after_first = len(claims)
            started = time.monotonic()
            await asyncio.to_thread(_queue, service, "second")
            for _ in range(100):
                if len(fake_twilio.messages) == 2:
                    break
                await asyncio.sleep(0.02)
            return after_first - settled, len(claims) - settled, time.monotonic() - started
        finally:
            stop.set()
            await task

    sa.event.listen(service.db.engine, "before_cursor_execute", count)
    try:
        after_first, after_second, took = asyncio.run(run())
    finally:
        sa.event.remove(service.db.engine, "before_cursor_execute", count)
    assert [m["body"] for m in fake_twilio.messages] == ["first", "second"]
    assert after_first == 1  # the claim that took the reply, and none after it
    assert after_second == 2 and took < 5.0  # woken by the commit, long before the 30 s poll


def test_a_long_queue_of_one_customer_holds_no_one_else_back_in_a_large_claim(settings: Settings) -> None:
    """A claim after a full one looks at the first rows in the claim order only; when those are one
    customer's queue waiting behind the message another worker is sending, the rest of the outbox
    is still claimed, and none of that customer's waiting messages."""
    service = _service(settings)
    clock = Clock()
    with service.db.session() as session:
        asha = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        queued = [enqueue_message(session=session, customer=asha, channel="sms", text=f"asha {i}", now=clock())
                  for i in range(260)]
        others = [Customer(phone=f"+9198222{i:05d}", name=f"C{i}") for i in range(20)]
        session.add_all(others)
        session.flush()
        clock.advance(seconds=1)  # queued after all of Asha's: behind them in the claim order
        for i, customer in enumerate(others):
            enqueue_message(session=session, customer=customer, channel="sms", text=f"other {i}", now=clock())
    assert all(message is not None for message in queued)
    clock.advance(seconds=1)
    # Another worker is sending Asha's first message: the rest of her queue waits for its outcome.
    [first] = Dispatcher(service.db, service.settings, clock=clock, worker_id="other").claim(limit=1)
    assert first.message is not None and first.message.text == "asha 0"
    dispatcher = Dispatcher(service.db, service.settings, clock=clock, worker_id="big")
    claimed = dispatcher.claim(limit=60)  # more than the smallest batch: the claim a backlog gets
    assert sorted(c.message.text for c in claimed if c.message is not None) == sorted(f"other {i}" for i in range(20))
