"""The append-only event log and the notification outbox.

`record` writes an event and, where the operator should hear of it, an outbox row, in one
statement; callers run it inside the transaction of the state change it describes.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from ob.core.models import Actor, Event

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
    kind: str,
    details: dict[str, Any] | None = None,
    *,
    notify: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        _RECORD, task_id, str(actor), kind, details or {}, notify, payload or details or {}
    )


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
            task_key=f"{prefix}-{r['number']}" if r["number"] is not None else None,
            at=r["at"],
            actor=r["actor"],
            kind=r["kind"],
            details=r["details"],
        )
        for r in rows
    ]
