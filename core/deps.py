"""Prerequisite links between tasks. Ready means no unfinished prerequisite; cycles are refused."""

from __future__ import annotations

from core import events
from core.backlog import Backlog, require_operator
from core.errors import Invalid, InvalidTransition
from core.models import Actor, EventKind, Task
from core.tasks import fetch_task, task_id_for_key

# Statements that finish tasks (an agent's completion, a closing commit) tell the operator which
# waiting tasks they unblocked, in the same statement. They put UNBLOCKED in their WITH list
# after an `upd` CTE of the tasks just done (columns id, number), and add the two arms below to
# their event and outbox inserts with `union all`; `prefix` names the key-prefix parameter.
UNBLOCKED = """
unblocked as (
    select d.task_id as id, w.number, u.number as prereq
    from upd u join task_deps d on d.prereq_id = u.id
    join tasks w on w.id = d.task_id and w.status in ('draft', 'open')
    where not exists (
        select 1 from task_deps d2 join tasks p on p.id = d2.prereq_id
        where d2.task_id = d.task_id and p.status <> 'done'
          and p.id not in (select id from upd))
)"""


def unblocked_events(prefix: str) -> str:
    return (
        "select id, 'system', 'unblocked',"
        f" jsonb_build_object('prerequisite', task_key({prefix}, prereq)) from unblocked"
    )


def unblocked_outbox(prefix: str) -> str:
    return (
        "select 'task_unblocked', id,"
        f" jsonb_build_object('key', task_key({prefix}, number),"
        f" 'prerequisite', task_key({prefix}, prereq)) from unblocked"
    )


DEPS_LOCK = 0x0B_DE_95  # serialises link changes so two concurrent links cannot form a cycle

_REACHES = """
with recursive chain(id) as (
    select prereq_id from task_deps where task_id = $1
    union
    select d.prereq_id from task_deps d join chain c on d.task_id = c.id
)
select exists (select 1 from chain where id = $2)
"""


async def add_prerequisite(backlog: Backlog, key: str, prereq_key: str, actor: Actor) -> Task:
    """`key` waits until `prereq_key` is done."""
    require_operator(actor, "link prerequisites")
    async with backlog.pool.acquire() as conn, conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1)", DEPS_LOCK)
        task_id = await task_id_for_key(conn, key, backlog.prefix)
        prereq_id = await task_id_for_key(conn, prereq_key, backlog.prefix)
        if task_id == prereq_id:
            raise Invalid("a task cannot be its own prerequisite")
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
            prereq = await fetch_task(conn, prereq_id, backlog.prefix)
            await events.record(
                conn, task_id, actor, EventKind.DEP_ADDED, {"prerequisite": prereq.key}
            )
        return await fetch_task(conn, task_id, backlog.prefix)


async def remove_prerequisite(backlog: Backlog, key: str, prereq_key: str, actor: Actor) -> Task:
    require_operator(actor, "unlink prerequisites")
    async with backlog.pool.acquire() as conn, conn.transaction():
        task_id = await task_id_for_key(conn, key, backlog.prefix)
        prereq_id = await task_id_for_key(conn, prereq_key, backlog.prefix)
        removed = await conn.fetchval(
            "delete from task_deps where task_id = $1 and prereq_id = $2 returning true",
            task_id,
            prereq_id,
        )
        if not removed:
            raise Invalid(f"{key.upper()} does not wait on {prereq_key.upper()}")
        prereq = await fetch_task(conn, prereq_id, backlog.prefix)
        await events.record(
            conn, task_id, actor, EventKind.DEP_REMOVED, {"prerequisite": prereq.key}
        )
        return await fetch_task(conn, task_id, backlog.prefix)
