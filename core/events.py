"""The append-only event log and the notification outbox.

`record` writes an event and, where the operator should hear of it, an outbox row, in one
statement; callers run it inside the transaction of the state change it describes, and call
`Waker.wake` after that transaction commits so the notifier looks at once (it also polls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from core.db import UNAVAILABLE
from core.models import Actor, Event, EventKind, OutboxKind, format_key
from core.notices import PAYLOADS, Payload

log = logging.getLogger(__name__)

_RECORD = """
with ev as (
    insert into events (task_id, actor, kind, details) values ($1, $2, $3, $4)
)
insert into outbox (kind, task_id, payload)
select $5::text, $1, $6 where $5::text is not null
"""


async def record(
    conn: asyncpg.Connection,
    task_id: int | None,
    actor: Actor | str,
    kind: EventKind,
    details: dict[str, Any] | None = None,
    *,
    notify: OutboxKind | None = None,
    payload: Payload | None = None,
) -> None:
    """The event, and with `notify` the outbox row whose payload is `payload` (that kind's
    model, core.notices)."""
    if (notify is None) != (payload is None):
        raise TypeError("an outbox row needs both its kind (`notify`) and its payload")
    if notify is not None:
        _check(notify, payload)
    body = payload.dump() if payload is not None else None
    await conn.execute(_RECORD, task_id, str(actor), kind, details or {}, notify, body)


_NOTICES = """
insert into outbox (kind, task_id, payload)
select $1::text, n.task_id, n.payload from unnest($2::bigint[], $3::jsonb[]) as n(task_id, payload)
"""


async def notify_many(
    conn: asyncpg.Connection, kind: OutboxKind, notices: Sequence[tuple[int | None, Payload]]
) -> None:
    """Outbox rows of one kind without an event of their own (an import's approval cards, the
    one notice for many drafts), in this order: (task id or None, payload)."""
    for _, payload in notices:
        _check(kind, payload)
    await conn.execute(_NOTICES, kind, [t for t, _ in notices], [p.dump() for _, p in notices])


def _check(kind: OutboxKind, payload: Payload | None) -> None:
    if type(payload) is not PAYLOADS[kind]:
        raise TypeError(f"a {kind.value} notice takes a {PAYLOADS[kind].__name__} payload")


OUTBOX_CHANNEL = "ob_outbox"


WAKE_INTERVAL = 0.05


class Waker:
    """At most one NOTIFY per WAKE_INTERVAL per pool: the first wake is sent at once, wakes
    asked for within the interval are folded into one sent when it ends. Under load this turns
    one NOTIFY per completed task into a few per second; a lone CLI action wakes at once."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self.last = float("-inf")
        self.trailing: asyncio.Task[None] | None = None

    async def wake(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self.last + WAKE_INTERVAL - loop.time()
        if wait <= 0:
            await self._send()
        elif self.trailing is None:
            self.trailing = asyncio.create_task(self._later(wait))

    async def _later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self.trailing = None
        await self._send()

    async def _send(self) -> None:
        self.last = asyncio.get_running_loop().time()
        try:
            await self.pool.execute("select pg_notify($1, '')", OUTBOX_CHANNEL)
        except UNAVAILABLE as err:
            log.warning("could not wake the notifier (%s); it will find the rows by polling", err)


_HISTORY = """
select e.id, e.at, e.actor, e.kind, e.details, t.number
from events e left join tasks t on t.id = e.task_id
where e.task_id = $1
order by e.id
"""


async def history(conn: asyncpg.Connection, task_id: int, prefix: str) -> list[Event]:
    rows = await conn.fetch(_HISTORY, task_id)
    return [
        Event(
            id=r["id"],
            task_key=format_key(prefix, r["number"]) if r["number"] is not None else None,
            at=r["at"],
            actor=r["actor"],
            kind=r["kind"],
            details=r["details"],
        )
        for r in rows
    ]
