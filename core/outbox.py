"""The notification outbox, consumer side: each pending row is worked on by exactly one process.

Writers insert rows in the transaction of the change (core/events). A notifier takes one row at
a time inside a transaction with `FOR NO KEY UPDATE SKIP LOCKED`: a second `ob serve` skips it,
and a notifier that dies (even SIGKILL) releases it the moment its connection closes, with no
lease to wait out. Each recipient chat is recorded in `outbox_sent` (autocommit, on another
connection; NO KEY UPDATE leaves the foreign-key check free) as soon as Telegram accepted it, so
a retry never repeats a chat. The row is marked delivered, or rescheduled with its attempt count
and error, when the transaction commits.

A notice is never given up for a transient failure (network, 5xx, 429, an unreadable answer,
an unknown error): it waits, backing off up to five minutes, for as long as it takes. Only a
permanent refusal (the chat is gone, the bot is blocked) makes it dead, and a dead notice stays
visible (`ob outbox`, `ob status`, the digest) until the operator retries it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from core.models import OutboxKind
from core.service import Service

MAX_BACKOFF = 300.0

_NEXT = """
select id, kind, task_id, payload, attempts, created_at from outbox
where delivered_at is null and gave_up_at is null and available_at <= now()
order by id limit 1
for no key update skip locked
"""


class OutboxRow(BaseModel):
    id: int
    kind: OutboxKind
    task_id: int | None
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4 … capped at 5 min."""
    return min(MAX_BACKOFF, 2.0 ** max(0, attempts - 1))


class Claimed:
    """A row held by this process until the block ends; say how it went before then."""

    def __init__(self, conn: asyncpg.Connection, row: OutboxRow, worker: str):
        self.conn = conn
        self.row = row
        self.worker = worker
        self.settled = False

    async def delivered(self) -> None:
        await self.conn.execute(
            "update outbox set delivered_at = now(), attempts = attempts + 1, last_error = null"
            " where id = $1",
            self.row.id,
        )
        self.settled = True

    async def retry(self, delay: float, error: str, *, count: bool = True) -> None:
        """Try again after `delay` seconds (`count=False`: a deferral or a retry-after, which
        does not use up an attempt)."""
        await self.conn.execute(
            """update outbox set available_at = now() + make_interval(secs => $2::float8),
                      last_error = $3, attempts = attempts + $4::bool::int
               where id = $1""",
            self.row.id,
            max(0.0, delay),
            f"[{self.worker}] {error}"[:2000],
            count,
        )
        self.settled = True

    async def dead(self, error: str) -> None:
        """Refused for good: keep the row, with the reason, for the operator to see and retry."""
        await self.conn.execute(
            "update outbox set gave_up_at = now(), attempts = attempts + 1, last_error = $2"
            " where id = $1",
            self.row.id,
            f"[{self.worker}] {error}"[:2000],
        )
        self.settled = True


class Notice(BaseModel):
    """An undelivered outbox row as `ob outbox` lists it."""

    id: int
    kind: OutboxKind
    key: str | None
    created_at: datetime
    attempts: int
    available_at: datetime
    last_error: str | None
    dead_at: datetime | None


class OutboxStats(BaseModel):
    pending: int
    dead: int
    oldest_pending_at: datetime | None


_STATS = """
select (select count(*) from outbox where delivered_at is null and gave_up_at is null) as pending,
       (select count(*) from outbox where delivered_at is null and gave_up_at is not null) as dead,
       (select min(created_at) from outbox where delivered_at is null and gave_up_at is null)
           as oldest_pending_at
"""

_UNDELIVERED = """
select o.id, o.kind, o.payload ->> 'key' as key, o.created_at, o.attempts, o.available_at,
       o.last_error, o.gave_up_at as dead_at
from outbox o
where o.delivered_at is null and ($1 or o.gave_up_at is not null)
order by o.id limit $2
"""


async def outbox_stats_on(conn: asyncpg.Connection) -> OutboxStats:
    return OutboxStats(**dict(await conn.fetchrow(_STATS)))


class Outbox(Service):
    """The notices: how many wait (`ob status`), which ones (`ob outbox`), sending dead ones
    again; and, for the notifier, taking the next one to deliver."""

    async def stats(self) -> OutboxStats:
        async with self.pool.acquire() as conn:
            return await outbox_stats_on(conn)

    async def undelivered(self, *, dead_only: bool = False, limit: int = 200) -> list[Notice]:
        """Notices not delivered yet, oldest first: waiting ones and dead ones (or only dead)."""
        rows = await self.pool.fetch(_UNDELIVERED, not dead_only, limit)
        return [Notice(**dict(r)) for r in rows]

    async def retry_dead(self, ids: list[int] | None = None) -> int:
        """Send dead notices again (these ids, or all of them); returns how many were revived."""
        status = await self.pool.execute(
            """update outbox set gave_up_at = null, available_at = now()
               where delivered_at is null and gave_up_at is not null
                 and ($1::bigint[] is null or id = any($1::bigint[]))""",
            ids,
        )
        revived = int(status.rsplit(" ", 1)[1])
        if revived:
            await self.wake()
        return revived

    @asynccontextmanager
    async def next(self, worker: str) -> AsyncIterator[Claimed | None]:
        """The oldest deliverable row nobody else holds (None: nothing to do), held by
        `worker` (named in the errors it records)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rec = await conn.fetchrow(_NEXT)
            if rec is None:
                yield None
                return
            yield Claimed(conn, OutboxRow(**dict(rec)), worker)

    async def sent_chats(self, row_id: int) -> set[int]:
        rows = await self.pool.fetch("select chat_id from outbox_sent where outbox_id = $1", row_id)
        return {r["chat_id"] for r in rows}

    async def record_sent(self, row_id: int, chat_id: int, message_id: int | None) -> None:
        await self.pool.execute(
            "insert into outbox_sent (outbox_id, chat_id, message_id) values ($1, $2, $3)"
            " on conflict do nothing",
            row_id,
            chat_id,
            message_id,
        )

    async def undelivered_for_task(self, task_id: int, kind: OutboxKind, before_id: int) -> bool:
        """Is an earlier row of this kind for the task still waiting (keeps per-task order)?"""
        return bool(
            await self.pool.fetchval(
                "select exists (select 1 from outbox where task_id = $1 and kind = $2 and id < $3"
                " and delivered_at is null and gave_up_at is null)",
                task_id,
                kind,
                before_id,
            )
        )

    async def next_due(self) -> float | None:
        """Seconds until the earliest waiting row may be tried (None: nothing is waiting)."""
        value = await self.pool.fetchval(
            "select extract(epoch from min(available_at) - now()) from outbox"
            " where delivered_at is null and gave_up_at is null"
        )
        return None if value is None else float(value)
