"""The webhooks' acknowledgement: group commit of inbound messages.

A webhook that verified its signature hands its message to `AckWriter.store`
and waits. One writer task per event loop takes *every* message waiting,
inserts them with one multi-row `INSERT … ON CONFLICT DO NOTHING` in one
transaction, commits once, and only then answers each request (its new
message id, or "duplicate"). While a batch commits, the next one gathers: the
busier the server, the more rows share a commit. Nothing is acknowledged
before its row is committed; a failed batch answers each of its requests with
the error (the provider retries, and the retry is a duplicate at most).

The writer never queues behind conversation work: it has its own thread (not
the default executor the background processing runs in) and its own small
connection pool, and while it waits or writes, inbound processing in this
process begins no new transaction (`Database.ack_priority`: throttled, never stopped). On
SQLite the one write lock is shared with everything else: a batch may still
wait (`busy_timeout`) for the one transaction holding it;
`doorstep_ack_lock_wait_seconds` measures that wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from bot.conversation import gateway
from bot.core import metrics
from bot.core.db import Database

log = logging.getLogger(__name__)

Waiting = tuple[dict[str, Any], "asyncio.Future[gateway.Received]"]


class AckWriter:
    """Group commit for acknowledged inbound messages (one per Service)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorstep-ack")
        self._waiting: list[Waiting] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def store(self, row: dict[str, Any]) -> gateway.Received:
        """Store one inbound row (`gateway.inbound_row`); returns once it is committed."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests run one per client): a new writer task
            self._loop, self._task, self._waiting = loop, None, []
        future: asyncio.Future[gateway.Received] = loop.create_future()
        self._waiting.append((row, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                ids = await loop.run_in_executor(self._executor, self._write, [row for row, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("shutting down"))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), message_id in zip(batch, ids, strict=True):
                if not future.done():  # the request may have gone (client disconnected): its row is stored
                    future.set_result(gateway.Received(message_id=message_id, duplicate=message_id is None))

    def _write(self, rows: list[dict[str, Any]]) -> list[int | None]:
        """One transaction for the batch, on the writer's own connection; once more on a dropped connection
        found before COMMIT (never after a failed COMMIT: it may have committed; the provider retries)."""
        try:
            return self._write_once(rows)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated or getattr(exc, "doorstep_in_commit", False):
                raise
            log.warning("database connection lost during the acknowledgement; running it again")
        return self._write_once(rows)

    def _write_once(self, rows: list[dict[str, Any]]) -> list[int | None]:
        started = time.perf_counter()
        with self.db.ack_priority.acknowledging(), self.db.ack_engine.connect() as connection:
            transaction = connection.begin()  # SQLite: BEGIN IMMEDIATE, the one write lock
            locked = time.perf_counter()
            try:
                ids = gateway.store_rows(connection, rows)
            except BaseException:
                transaction.rollback()
                raise
            try:
                transaction.commit()
            except sa.exc.DBAPIError as exc:
                exc.doorstep_in_commit = True  # type: ignore[attr-defined]
                raise
        done = time.perf_counter()
        metrics.ACK_BATCH_SIZE.observe(len(rows))
        metrics.ACK_LOCK_WAIT.observe(locked - started)
        metrics.ACK_COMMIT_SECONDS.observe(done - started)
        return ids

    def close(self) -> None:
        self._executor.shutdown(wait=True)
