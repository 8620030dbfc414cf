"""Prerequisite links between tasks. Ready means no unfinished prerequisite; cycles are refused."""

from __future__ import annotations

import asyncpg

from core import events
from core.backlog import require_operator
from core.errors import Invalid, InvalidTransition
from core.models import Actor, EventKind, Status, Task
from core.service import Service
from core.tasks import fetch_task, task_id_for_key


# A waiting task is announced ready (an `unblocked` event and a notice) once per time its last
# prerequisite finishes. The statement runs after the finishing transaction committed, so of two
# prerequisites finished at the same moment at least one announcement sees both done; the row
# lock and `unblocked_at` (later than the last finish once announced) let only one of them
# announce. $1 the key prefix; `waiting` picks the candidates: those of the tasks just finished
# ($2), or every waiting task (the sweep's safety net, for a process that died between a finish
# and its announcement). Two texts rather than `$2 is null or ...`, so that each prepared
# statement keeps one generic plan.
def _announce_sql(waiting: str) -> str:
    return f"""
with cand as (
    select w.id, w.number,
           (select p.number from task_deps d join tasks p on p.id = d.prereq_id
            where d.task_id = w.id order by p.completed_at desc nulls last, p.id limit 1)
               as prereq
    from tasks w
    where w.status in ('draft', 'open')
      and w.id in (select d.task_id from task_deps d {waiting})
      and not exists (select 1 from task_deps d join tasks p on p.id = d.prereq_id
                      where d.task_id = w.id and p.status <> 'done')
      and (w.unblocked_at is null or w.unblocked_at < (
               select max(p.completed_at) from task_deps d join tasks p on p.id = d.prereq_id
               where d.task_id = w.id))
    order by w.id
    for no key update of w
),
upd as (
    update tasks w set unblocked_at = now() from cand c where w.id = c.id
    returning w.id, c.number, c.prereq
),
ev as (
    insert into events (task_id, actor, kind, details)
    select id, 'system', 'unblocked', jsonb_build_object('prerequisite', task_key($1, prereq))
    from upd
)
insert into outbox (kind, task_id, payload)
select 'task_unblocked', id,
       jsonb_build_object('key', task_key($1, number), 'prerequisite', task_key($1, prereq))
from upd
returning task_id
"""


_ANNOUNCE_AFTER = _announce_sql("where d.prereq_id = any($2::bigint[])")
_ANNOUNCE_ANY = _announce_sql("")


async def announce_unblocked(
    db: asyncpg.Pool | asyncpg.Connection, prefix: str, finished: list[int] | None
) -> int:
    """Announce the waiting tasks these finished tasks (None: any) made ready; returns how many.
    Call it after the finishing transaction committed."""
    if finished is None:
        return len(await db.fetch(_ANNOUNCE_ANY, prefix))
    return len(await db.fetch(_ANNOUNCE_AFTER, prefix, finished))


DEPS_LOCK = 0x0B_DE_95  # serialises link changes so two concurrent links cannot form a cycle

_REACHES = """
with recursive chain(id) as (
    select prereq_id from task_deps where task_id = $1
    union
    select d.prereq_id from task_deps d join chain c on d.task_id = c.id
)
select exists (select 1 from chain where id = $2)
"""


class Prerequisites(Service):
    """Links between tasks: a task waits until its prerequisites are done (cycles refused)."""

    async def add(self, key: str, prereq_key: str, actor: Actor) -> Task:
        """`key` waits until `prereq_key` is done."""
        require_operator(actor, "link prerequisites")
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("select pg_advisory_xact_lock($1)", DEPS_LOCK)
            task_id = await task_id_for_key(conn, key, self.prefix)
            prereq_id = await task_id_for_key(conn, prereq_key, self.prefix)
            if task_id == prereq_id:
                raise Invalid("a task cannot be its own prerequisite")
            prereq = await fetch_task(conn, prereq_id, self.prefix)
            if prereq.status == Status.REJECTED:
                raise InvalidTransition(
                    f"{prereq.key} was rejected, so nothing can wait on it; bring it back first "
                    f"(`ob reopen {prereq.key} -m WHY`) or link another task"
                )
            if await conn.fetchval(_REACHES, prereq_id, task_id):
                raise InvalidTransition(
                    f"{prereq_key.upper()} already waits (directly or through others) on "
                    f"{key.upper()}; linking them would make a cycle"
                )
            added = await conn.fetchval(
                "insert into task_deps (task_id, prereq_id) values ($1, $2)"
                " on conflict do nothing returning true",
                task_id,
                prereq_id,
            )
            if added:
                await events.record(
                    conn, task_id, actor, EventKind.DEP_ADDED, {"prerequisite": prereq.key}
                )
            return await fetch_task(conn, task_id, self.prefix)

    async def remove(self, key: str, prereq_key: str, actor: Actor) -> Task:
        require_operator(actor, "unlink prerequisites")
        async with self.pool.acquire() as conn, conn.transaction():
            task_id = await task_id_for_key(conn, key, self.prefix)
            prereq_id = await task_id_for_key(conn, prereq_key, self.prefix)
            removed = await conn.fetchval(
                "delete from task_deps where task_id = $1 and prereq_id = $2 returning true",
                task_id,
                prereq_id,
            )
            if not removed:
                raise Invalid(f"{key.upper()} does not wait on {prereq_key.upper()}")
            prereq = await fetch_task(conn, prereq_id, self.prefix)
            await events.record(
                conn, task_id, actor, EventKind.DEP_REMOVED, {"prerequisite": prereq.key}
            )
            return await fetch_task(conn, task_id, self.prefix)
