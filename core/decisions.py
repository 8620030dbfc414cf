"""Pending decisions, ranked by what they unblock: the operator's open questions, the drafts
awaiting approval and the tasks in requires_decision (/decide, /inbox, the digest, `ob
questions`).

The order, best first:
1. questions an agent is waiting on right now (it holds the task's lease and idles until you
   answer);
2. when agents sit idle because nothing is ready for them, the decisions that can give them work
   at once (nothing blocks the task);
3. then by how much waiting work each releases: the unfinished tasks that wait on the task,
   directly or through others;
4. then the oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from enum import StrEnum

import asyncpg
from pydantic import BaseModel

from core.backlog import Backlog
from core.models import format_key
from core.questions import QUESTION_COLUMNS, QUESTION_FROM, Question
from core.service import Service
from core.shaping import local_today
from core.todo_words import describe_status
from core.waiting import count_claimable


class PendingKind(StrEnum):
    QUESTION = "question"
    DRAFT = "draft"
    DECISION = "decision"  # an open task in requires_decision


class Pending(BaseModel):
    kind: PendingKind
    key: str
    number: int
    title: str
    at: datetime  # asked, filed, or since when it is in the lane
    by: str  # who asked, or who filed the task
    unblocks: int  # unfinished tasks waiting on the task, directly or through others
    agent_waiting: bool  # an agent holds the task and waits on this question
    ready: bool  # no unfinished prerequisite: deciding it can give agents work at once
    question: Question | None = None
    said: str | None = None  # the task's status as written (`blocked since 2026-11-18`)


class Ranked(BaseModel):
    total: int  # how many are pending (the limit aside)
    starved: bool  # agents are idle and nothing is ready for them
    items: list[Pending]


# $1..$3 which kinds, $4 starved, $5 limit, $6 a day: drafts and decisions snoozed past it are
# left out (null: none is). A task in requires_decision with an open question is there as its
# question. `down` walks every waiting task below each unfinished prerequisite (the links
# only); whether a pending task is blocked is looked up for the order only while agents starve,
# and for the rows returned.
_READY = """not exists (select 1 from task_deps d join tasks p on p.id = d.prereq_id
                        where d.task_id = {task} and p.status <> 'done')"""
_RANKED = f"""
with recursive down (root, id) as (
    select d.prereq_id, d.task_id from task_deps d
    where (select p.status from tasks p where p.id = d.prereq_id) in ('draft', 'open')
    union
    select down.root, d.task_id from down join task_deps d on d.prereq_id = down.id
),
released as (  -- a probe per link, not a scan of every unfinished task
    select down.root, count(*) as n from down
    where (select w.status from tasks w where w.id = down.id) in ('draft', 'open')
    group by down.root
),
ranked as (
    select i.*, coalesce(r.n, 0) as unblocks, count(*) over () as total
    from (
        select 'question' as kind, q.id as question, t.id, t.number, t.title, q.asked_at as at,
               q.asked_by as by, coalesce(l.lease_agent_id = q.agent_id and l.epoch = q.epoch
                                          and l.lease_expires_at > now(), false) as agent_waiting,
               t.status_word, t.status_date, t.status_reason
        from questions q join tasks t on t.id = q.task_id join task_leases l on l.task_id = t.id
        where $1 and q.answered_at is null and t.status in ('draft', 'open')
        union all
        select 'draft', null, t.id, t.number, t.title, t.created_at, t.created_by, false,
               t.status_word, t.status_date, t.status_reason
        from tasks t
        where $2 and t.status = 'draft'
          and ($6::date is null or coalesce(t.trigger_on <= $6, true))
        union all
        select 'decision', null, t.id, t.number, t.title, t.status_at, t.created_by, false,
               t.status_word, t.status_date, t.status_reason
        from tasks t
        where $3 and t.status = 'open' and t.lane = 'requires_decision'
          and ($6::date is null or coalesce(t.trigger_on <= $6, true))
          and not exists (select 1 from questions q
                          where q.task_id = t.id and q.answered_at is null)
    ) i left join released r on r.root = i.id
    order by i.agent_waiting desc,
             (case when $4 then {_READY.format(task="i.id")} end) desc nulls last,
             unblocks desc, i.at, i.number, i.question
    limit $5
)
select * from (
    select r.*, {_READY.format(task="r.id")} as ready from ranked r
) o
order by agent_waiting desc, ($4 and ready) desc, unblocks desc, at, number, question
"""

# Registered agents holding no lease.
_IDLE_AGENTS = """
select count(*) from agents
where revoked_at is null
  and id not in (select lease_agent_id from task_leases
                 where ready and lease_agent_id is not null)
"""


async def starved(conn: asyncpg.Connection, backlog: Backlog) -> bool:
    """Agents sit idle and no work is ready for them."""
    today = local_today(backlog.settings.tz)
    if await count_claimable(conn, today, None, 1):
        return False
    return bool(await conn.fetchval(_IDLE_AGENTS))


async def ranked_on(
    conn: asyncpg.Connection,
    backlog: Backlog,
    kinds: Iterable[PendingKind] = tuple(PendingKind),
    limit: int = 50,
    *,
    due_by: date | None = None,
    hungry: bool | None = None,
) -> Ranked:
    """The pending decisions of these kinds, best first (see the module's docstring); with
    `due_by`, without the drafts and decisions snoozed past that day. `hungry`: whether agents
    are starved, when the caller knows already."""
    wanted = set(kinds)
    if hungry is None:
        hungry = await starved(conn, backlog)
    rows = await conn.fetch(
        _RANKED,
        PendingKind.QUESTION in wanted,
        PendingKind.DRAFT in wanted,
        PendingKind.DECISION in wanted,
        hungry,
        limit,
        due_by,
    )
    ids = [r["question"] for r in rows if r["question"] is not None]
    questions = {
        q["id"]: Question(**dict(q))
        for q in await conn.fetch(
            f"select {QUESTION_COLUMNS} from {QUESTION_FROM} where q.id = any($1::bigint[])",
            ids,
        )
    }
    items = [
        Pending(
            kind=PendingKind(r["kind"]),
            key=format_key(backlog.prefix, r["number"]),
            number=r["number"],
            title=r["title"],
            at=r["at"],
            by=r["by"],
            unblocks=r["unblocks"],
            agent_waiting=r["agent_waiting"],
            ready=r["ready"],
            question=questions.get(r["question"]) if r["question"] is not None else None,
            said=describe_status(r["status_word"], r["status_date"], r["status_reason"]),
        )
        for r in rows
    ]
    return Ranked(total=rows[0]["total"] if rows else 0, starved=hungry, items=items)


class Decisions(Service):
    """What waits for the operator's decision, ranked (`/decide`, `ob questions`)."""

    async def ranked(
        self,
        kinds: Iterable[PendingKind] = tuple(PendingKind),
        limit: int = 50,
        *,
        due_by: date | None = None,
    ) -> Ranked:
        async with self.pool.acquire() as conn:
            return await ranked_on(conn, self.backlog, kinds, limit, due_by=due_by)
