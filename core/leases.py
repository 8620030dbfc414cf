"""Leases: claim, heartbeat, release, complete, findings, hand-off, and the expiry sweep.

A lease is holder + expiry + fencing epoch. The epoch grows on every claim; every later write
by the holder must present it, so a paused agent that lost its lease can never write.

The lease lives in its own narrow row (`task_leases`, sql/005), apart from the task's spec, so
lease churn never rewrites the wide task row: a claim, heartbeat or release is a HOT update of
the lease row alone. The claim is one statement: `FOR UPDATE SKIP LOCKED` over the ready-queue
index on the lease rows, the state change, its events and its outbox rows. A task whose lease
expired is a candidate in the same claim; the expiry is recorded by the claim itself, so
correctness never depends on the sweep. The sweep runs the very same transition with no new
holder.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from core import events
from core.deps import announce_unblocked
from core.errors import Forbidden, Invalid, InvalidTransition, LeaseError, NotFound
from core.git.drift import drift_for
from core.models import (
    AGENT_LANES,
    MAX_LEASE_SECONDS,
    MIN_LEASE_SECONDS,
    Actor,
    EventKind,
    Lane,
    OutboxKind,
    Status,
    Task,
    format_key,
)
from core.notices import FindingsReported, Handoff, TaskCompleted
from core.service import Service
from core.shaping import local_today
from core.spec import REPO_RE, Spec, free_text
from core.tasks import (
    STATUS_SQL,
    TASK_COLUMNS,
    TASK_FROM,
    TaskFilter,
    fetch_task,
    number_for_key,
    task_columns,
    task_from_row,
)

SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")

# $1 new holder (null: sweep), $2 ttl seconds, $3 max expiries, $4 actor, $5 key prefix.
# Only the lease row changes, except when attempts are exhausted: then the task goes to the
# operator's decision lane (and sql/005's trigger takes it out of the ready queue).
_TRANSITION = f"""
lease as (
    update task_leases l set
        lease_agent_id = case when c.exhausted then null else $1::bigint end,
        lease_expires_at = case when c.exhausted or $1::bigint is null then null
                                else now() + make_interval(secs => $2::int) end,
        epoch = l.epoch + (not c.exhausted and $1::bigint is not null)::int,
        expiries = c.expiries,
        changed_at = now()
    from cand c
    where l.task_id = c.id
    returning l.*, c.prev_held, c.prev_epoch, c.prev_holder, c.exhausted
),
exhausted as (
    update tasks t set lane = 'requires_decision', status_at = now(), updated_at = now()
    from lease u where t.id = u.task_id and u.exhausted
),
ev as (
    insert into events (task_id, actor, kind, details)
    select u.task_id, v.actor, v.kind, v.details
    from lease u cross join lateral (values
        (1, 'system', case when u.prev_held then 'expired' end,
         jsonb_build_object('holder', u.prev_holder, 'epoch', u.prev_epoch,
                            'expiries', u.expiries)),
        (2, 'system', case when u.exhausted then 'attempts_exhausted' end,
         jsonb_build_object('expiries', u.expiries, 'lane', 'requires_decision')),
        (3, $4::text, case when u.lease_agent_id is not null then 'claimed' end,
         jsonb_build_object('epoch', u.epoch, 'expires_at', u.lease_expires_at))
    ) as v(ord, actor, kind, details)
    where v.kind is not null
    order by u.task_id, v.ord
),
ob as (
    insert into outbox (kind, task_id, payload)
    select case when u.exhausted then 'attempts_exhausted' else 'lease_expired' end, u.task_id,
           jsonb_build_object('key', task_key($5, t.number), 'holder', u.prev_holder,
                              'expiries', u.expiries, 'max_expiries', $3::int)
    from lease u join tasks t on t.id = u.task_id where u.prev_held
    order by u.task_id
)
select {TASK_COLUMNS}, l.prev_held, l.exhausted
from lease l join tasks t on t.id = l.task_id left join agents a on a.id = l.lease_agent_id
"""

_CANDIDATE_COLUMNS = """
    l.task_id as id, l.lease_agent_id is not null as prev_held, l.epoch as prev_epoch,
    (select name from agents where id = l.lease_agent_id) as prev_holder,
    l.expiries + (l.lease_agent_id is not null)::int as expiries,
    (l.lease_agent_id is not null and l.expiries + 1 >= $3::int) as exhausted
"""


# The best ready task: open (or with an expired lease) in an agent lane, no unfinished
# prerequisite, trigger date not in the future; by priority, then age. The scan, the order and
# the row lock are all on the narrow lease row. $6 today (operator's time zone); with repos, $7
# the repos. Two texts rather than `$7 is null or ...`, so that the prepared statement keeps
# one generic plan instead of being re-planned on every call.
def claimable(today: str, repo_filter: str) -> str:
    """What makes a lease row `l` claimable: ready, unheld or its lease expired, its trigger
    date not after `today` (the parameter holding the day), no unfinished prerequisite, and
    `repo_filter` (an `and ...` condition, or nothing). The claim and the waiting claims'
    count (core.waiting) both read it here."""
    return f"""l.ready
      and (l.lease_agent_id is null or l.lease_expires_at <= now())
      and (l.trigger_on is null or l.trigger_on <= {today}::date)
      {repo_filter}
      and not exists (
          select 1 from task_deps d join tasks p on p.id = d.prereq_id
          where d.task_id = l.task_id and p.status <> 'done')"""


def _best_candidate(columns: str, today: str, repo_filter: str) -> str:
    """The best ready task's lease row, locked."""
    return f"""
    select {columns}
    from task_leases l
    where {claimable(today, repo_filter)}
    order by l.priority, l.task_id
    limit 1
    for no key update of l skip locked"""


def _claim_sql(repo_filter: str) -> str:
    return f"""
with cand as ({_best_candidate(_CANDIDATE_COLUMNS, "$6", repo_filter)}
),
{_TRANSITION}
"""


CLAIM_SQL = _claim_sql("")
CLAIM_IN_REPOS_SQL = _claim_sql("and l.repo = any($7::text[])")


# The claim as it nearly always goes: the best candidate (the same choice as above) has no
# lease to take over, so the transition is the lease, its `claimed` event and nothing else.
# When the best candidate's lease expired instead, this statement takes nothing and says so
# (`expired`); the claim then runs the statement above, which records the expiry (its event,
# its notice, the attempts) in the same statement that gives the task to the new holder.
# $1 agent id, $2 ttl seconds, $3 actor, $4 holder's name, $5 today; with repos, $6 the repos.
_FAST_CANDIDATE_COLUMNS = "l.task_id, l.lease_agent_id is not null as expired"


def _fast_claim_sql(repo_filter: str) -> str:
    return f"""
with cand as ({_best_candidate(_FAST_CANDIDATE_COLUMNS, "$5", repo_filter)}
),
lease as (
    update task_leases l set lease_agent_id = $1::bigint,
        lease_expires_at = now() + make_interval(secs => $2::int),
        epoch = l.epoch + 1, changed_at = now()
    from cand c where l.task_id = c.task_id and not c.expired
    returning l.*
),
ev as (
    insert into events (task_id, actor, kind, details)
    select task_id, $3::text, 'claimed',
           jsonb_build_object('epoch', epoch, 'expires_at', lease_expires_at)
    from lease
)
select c.expired, {task_columns("$4::text")}
from cand c left join lease l on true left join tasks t on t.id = l.task_id
"""


FAST_CLAIM_SQL = _fast_claim_sql("")
FAST_CLAIM_IN_REPOS_SQL = _fast_claim_sql("and l.repo = any($6::text[])")

# $6 how many expired leases to record in one sweep.
SWEEP_SQL = f"""
with cand as (
    select {_CANDIDATE_COLUMNS}
    from task_leases l
    where l.ready and l.lease_agent_id is not null and l.lease_expires_at <= now()
    order by l.lease_expires_at
    limit $6::int
    for no key update of l skip locked
),
{_TRANSITION}
"""

# A write by the current holder: right task, right agent, right epoch, lease not expired. The
# statements update the lease row `l` from the task row `t` (read, not locked or written).
_FENCE = """t.number = $1 and l.task_id = t.id and l.lease_agent_id = $2
            and l.epoch = $3 and l.lease_expires_at > now()"""

HEARTBEAT_SQL = f"""
with lease as (
    update task_leases l set lease_expires_at = now() + make_interval(secs => $4::int)
    from tasks t
    where {_FENCE}
    returning l.task_id, l.epoch, l.lease_expires_at
),
ev as (
    insert into events (task_id, actor, kind, details)
    select task_id, $5::text, 'heartbeat',
           jsonb_build_object('epoch', epoch, 'expires_at', lease_expires_at)
    from lease
)
select * from lease
"""

# $4 actor, $5 commits, $6 note, $7 key prefix
COMPLETE_SQL = f"""
with lease as (
    update task_leases l set lease_agent_id = null, lease_expires_at = null, ready = false,
        changed_at = now()
    from tasks t
    where {_FENCE} and t.lane = 'autonomous_safe'
    returning l.*
),
upd as (
    update tasks t set status = 'done', completed_by = $4::text, completed_at = now(),
        commits = $5::text[], completion_note = $6::text, verified_at = null,
        status_at = now(), updated_at = now()
    from lease l where t.id = l.task_id
    returning t.*
),
ev as (
    insert into events (task_id, actor, kind, details)
    select u.id, $4::text, 'completed',
           jsonb_build_object('commits', $5::text[], 'note', $6::text, 'epoch', l.epoch,
                              'verified', false)
    from upd u join lease l on l.task_id = u.id
),
ob as (
    insert into outbox (kind, task_id, payload)
    select 'task_completed', id,
           jsonb_build_object('key', task_key($7, number), 'by', $4::text,
                              'commits', $5::text[], 'note', $6::text, 'verified', false)
    from upd
)
select {task_columns("null")},
       exists (select 1 from task_deps d where d.prereq_id = t.id) as has_dependents
from upd t join lease l on l.task_id = t.id
"""

# Findings end an investigation: the lease ends, the task goes to the operator's decision lane.
FINDINGS_SQL = f"""
with lease as (
    update task_leases l set lease_agent_id = null, lease_expires_at = null, expiries = 0,
        ready = false, changed_at = now()
    from tasks t
    where {_FENCE} and t.lane = 'requires_investigation'
    returning l.task_id
)
update tasks t set status = 'open', lane = 'requires_decision',
    findings = ltrim(t.findings || E'\\n\\n' || $4::text, E'\\n'),
    status_at = now(), updated_at = now()
from lease where t.id = lease.task_id
returning t.id
"""

END_LEASE_SQL = f"""
update task_leases l set lease_agent_id = null, lease_expires_at = null, changed_at = now()
from tasks t
where {_FENCE}
returning l.task_id
"""

# A done task that a commit closed while this agent held it at this epoch (the holder's late
# `done`, on refusal only), locked. $1 number, $2 holder, $3 epoch
CLOSED_UNDER_SQL = """
select t.id, e.details ->> 'sha' as sha from tasks t join events e on e.task_id = t.id
where t.number = $1 and t.status = 'done' and e.kind = 'closed_while_claimed'
  and e.details ->> 'holder' = $2 and e.details ->> 'epoch' = $3::text
order by e.id desc limit 1
for no key update of t
"""

# Its note and the commits it names that the task does not have yet (by SHA or prefix).
# $1 task id, $2 commits, $3 note
LATE_COMPLETION_SQL = """
update tasks t set
    completion_note = coalesce($3::text, t.completion_note),
    commits = t.commits || array(
        select c from unnest($2::text[]) as c
        where not exists (select 1 from unnest(t.commits) as x
                          where x like c || '%' or c like x || '%')),
    updated_at = now()
where t.id = $1
returning t.commits, t.verified_at is not null as verified
"""

# This agent's last write of a kind on a task at an epoch (a replay check, on refusal only).
LAST_WRITE_SQL = """
select e.task_id, e.details from events e
where e.task_id = (select id from tasks where number = $1) and e.kind = $2 and e.actor = $3
  and e.details ->> 'epoch' = $4::text
order by e.id desc limit 1
"""

REFUSAL_SQL = f"""
select {STATUS_SQL} as status, t.lane, l.epoch, l.lease_expires_at, a.name as holder,
       l.lease_expires_at <= now() as expired
from {TASK_FROM} where t.number = $1
"""


class Lease(BaseModel):
    """What a claim hands an agent: the task, and the epoch every later write must present."""

    key: str
    epoch: int
    lease_expires_at: datetime
    task: Task
    drift: dict[str, Any] | None = None


class Heartbeat(BaseModel):
    key: str
    epoch: int
    lease_expires_at: datetime


def _require_agent(actor: Actor) -> int:
    if actor.kind != "agent" or actor.agent_id is None:
        raise Forbidden("leases are for agents; register one with `ob agent add NAME`")
    return actor.agent_id


class _Refused(Exception):
    """A fenced write found the lease not the caller's. Raised inside the write's transaction,
    so the connection goes back to the pool before the replay check and the refusal read their
    own: a refused agent never holds one connection while waiting for another."""


class Leases(Service):
    def _ttl(self, lease_seconds: int | None) -> int:
        ttl = lease_seconds or self.settings.lease_ttl
        if not MIN_LEASE_SECONDS <= ttl <= MAX_LEASE_SECONDS:
            raise Invalid(
                f"lease_seconds must be between {MIN_LEASE_SECONDS} and {MAX_LEASE_SECONDS}"
            )
        return ttl

    # ------------------------------------------------------------------ claim

    async def claim(
        self, actor: Actor, *, repos: list[str] | None = None, lease_seconds: int | None = None
    ) -> Lease | None:
        """Take the best ready task, or None when nothing is ready for this agent."""
        agent_id = _require_agent(actor)
        ttl = self._ttl(lease_seconds)
        bad = [r for r in repos or [] if not REPO_RE.match(r)]
        if bad:
            raise Invalid(f"{bad[0][:60]!r} is not a repository name")
        today = local_today(self.settings.tz)
        async with self.pool.acquire() as conn:
            fast = [agent_id, ttl, str(actor), actor.name, today, *([repos] if repos else [])]
            row = await conn.fetchrow(FAST_CLAIM_IN_REPOS_SQL if repos else FAST_CLAIM_SQL, *fast)
            if row is not None and row["expired"]:
                row = await self._claim_expired(conn, actor, ttl, today, repos)
            if row is None:
                return None
            task = task_from_row(row, self.prefix)
            assert task.lease_expires_at is not None  # a claimed task has a lease
            return Lease(
                key=task.key,
                epoch=task.epoch,
                lease_expires_at=task.lease_expires_at,
                task=task,
                drift=await drift_for(conn, task, row["id"]),
            )

    async def _claim_expired(
        self,
        conn: asyncpg.Connection,
        actor: Actor,
        ttl: int,
        today: date,
        repos: list[str] | None,
    ) -> asyncpg.Record | None:
        """The claim whose best candidate's lease expired: the expiry is recorded (its event,
        the operator's notice, the attempts count) by the statement that takes the task. A
        candidate whose lease expired for the last allowed time, or with a question of its
        holder still open (sql/013), goes to the operator instead of to us; then we look
        again."""
        args = [actor.agent_id, ttl, self.settings.max_expiries, str(actor), self.prefix, today]
        sql = CLAIM_IN_REPOS_SQL if repos else CLAIM_SQL
        row = None
        expiry_recorded = False
        for _ in range(20):
            row = await conn.fetchrow(sql, *args, *([repos] if repos else []))
            if row is None:
                break
            expiry_recorded |= row["prev_held"]
            if row["lease_expires_at"] is not None:
                break
            row = None
        if expiry_recorded:
            await self.backlog.wake()
        return row

    async def sweep(self, limit: int = 100) -> int:
        """Record expired leases (events + operator notices); returns how many."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                SWEEP_SQL,
                None,
                self.settings.lease_ttl,
                self.settings.max_expiries,
                "system",
                self.prefix,
                limit,
            )
        if rows:
            await self.backlog.wake()
        return len(rows)

    async def announce_unblocked(self) -> int:
        """The safety net (run by the sweep): announce any waiting task whose prerequisites all
        finished but that was not announced yet (a process died in between); returns how many."""
        n = await announce_unblocked(self.pool, self.prefix, None)
        if n:
            await self.backlog.wake()
        return n

    async def ready(self, repo: str | None = None, limit: int = 50) -> list[Task]:
        """What a claim could take now, best first: open in an agent lane, no unfinished
        prerequisite, trigger date not in the future (REST and MCP list it alike)."""
        return await self.backlog.list(
            TaskFilter(
                status=[Status.OPEN],
                lane=list(AGENT_LANES),
                repo=repo,
                blocked=False,
                due_by=local_today(self.settings.tz),
                limit=limit,
            )
        )

    # ------------------------------------------------------------- fenced writes

    async def heartbeat(
        self, key: str, actor: Actor, epoch: int, *, lease_seconds: int | None = None
    ) -> Heartbeat:
        agent_id = _require_agent(actor)
        number = number_for_key(key, self.prefix)
        row = await self.pool.fetchrow(
            HEARTBEAT_SQL, number, agent_id, epoch, self._ttl(lease_seconds), str(actor)
        )
        if row is None:
            raise await self._refusal(number, actor, epoch, "heartbeat")
        return Heartbeat(
            key=format_key(self.prefix, number),
            epoch=row["epoch"],
            lease_expires_at=row["lease_expires_at"],
        )

    async def complete(
        self,
        key: str,
        actor: Actor,
        epoch: int,
        *,
        commits: list[str] | None = None,
        note: str | None = None,
    ) -> Task:
        """Finish an autonomous task: done, unverified until git shows the commits."""
        agent_id = _require_agent(actor)
        number = number_for_key(key, self.prefix)
        shas = _check_commits(commits or [])
        note = free_text(note, "note", 4000)
        try:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    COMPLETE_SQL, number, agent_id, epoch, str(actor), shas, note, self.prefix
                )
                if row is None:
                    raise _Refused
                data = dict(row)
                if data.pop("has_dependents"):  # after the commit: see the other finishes too
                    await announce_unblocked(conn, self.prefix, [data["id"]])
        except _Refused:
            late = await self._completed_after_close(number, actor, epoch, shas, note)
            if late is not None:
                return late
            same = {"commits": shas, "note": note}
            return await self._refused(
                number, actor, epoch, "complete", EventKind.COMPLETED, same, Lane.AUTONOMOUS
            )
        await self.backlog.wake()
        return task_from_row(data, self.prefix)

    async def _completed_after_close(
        self, number: int, actor: Actor, epoch: int, shas: list[str], note: str | None
    ) -> Task | None:
        """The holder's `done` after a commit closed the task under its lease (the same agent
        and epoch): its note and commits are recorded (`completed`, and a notice with the
        note), the lease is over already; the task says which commit closed it. None when
        that is not what happened."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(CLOSED_UNDER_SQL, number, actor.name, str(epoch))
            if row is None or await conn.fetchrow(
                LAST_WRITE_SQL, number, EventKind.COMPLETED, str(actor), str(epoch)
            ):
                return None  # (recorded already: a retry is answered as a replay, or refused)
            t = await conn.fetchrow(LATE_COMPLETION_SQL, row["id"], shas, note)
            details = {"commits": shas, "note": note, "epoch": epoch, "closed_by": row["sha"]}
            await events.record(
                conn,
                row["id"],
                actor,
                EventKind.COMPLETED,
                {**details, "verified": t["verified"]},
                notify=OutboxKind.TASK_COMPLETED,
                payload=TaskCompleted(
                    key=format_key(self.prefix, number),
                    by=str(actor),
                    commits=list(t["commits"]),
                    note=note,
                    verified=t["verified"],
                    closed_by=row["sha"],
                ),
            )
            task = await fetch_task(conn, row["id"], self.prefix)
        await self.backlog.wake()  # (its connection given back: a pool of one does not wait)
        return task.model_copy(update={"already_closed_by": row["sha"]})

    async def release(self, key: str, actor: Actor, epoch: int, reason: str | None = None) -> Task:
        agent_id = _require_agent(actor)
        number = number_for_key(key, self.prefix)
        reason = free_text(reason, "reason", 1000)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                task_id = await self._end_lease(conn, number, agent_id, epoch)
                if task_id is None:
                    raise _Refused
                await events.record(
                    conn, task_id, actor, EventKind.RELEASED, {"epoch": epoch, "reason": reason}
                )
                return await fetch_task(conn, task_id, self.prefix)
        except _Refused:
            same = {"reason": reason}
            return await self._refused(number, actor, epoch, "release", EventKind.RELEASED, same)

    async def findings(self, key: str, actor: Actor, epoch: int, text: str) -> Task:
        """Finish an investigation with findings; the task goes to the operator's decision lane."""
        agent_id = _require_agent(actor)
        number = number_for_key(key, self.prefix)
        text = free_text(text, "findings", 20_000) or ""
        if not text:
            raise Invalid("findings are empty; say what you found")
        try:
            async with self.backlog.transaction(wake=True) as conn:
                task_id = await conn.fetchval(
                    FINDINGS_SQL, number, agent_id, epoch, f"[{actor.name}] {text}"
                )
                if task_id is None:
                    raise _Refused
                key = format_key(self.prefix, number)
                await events.record(
                    conn,
                    task_id,
                    actor,
                    EventKind.FINDINGS,
                    {"epoch": epoch, "text": text[:2000]},
                    notify=OutboxKind.FINDINGS_REPORTED,
                    payload=FindingsReported(key=key, by=str(actor), text=text[:2000]),
                )
                return await fetch_task(conn, task_id, self.prefix)
        except _Refused:
            same = {"text": text[:2000]}
            return await self._refused(
                number,
                actor,
                epoch,
                "report findings on",
                EventKind.FINDINGS,
                same,
                Lane.INVESTIGATION,
            )

    async def handoff(
        self, key: str, actor: Actor, epoch: int, prerequisite: Spec, reason: str | None = None
    ) -> tuple[Task, Task]:
        """File a prerequisite, link it, and give the task back, in one transaction.

        Returns (the original task, now blocked; the prerequisite: a draft unless the
        operator's policy auto-approves prerequisites)."""
        agent_id = _require_agent(actor)
        number = number_for_key(key, self.prefix)
        if prerequisite.key or prerequisite.status:
            raise Invalid("a prerequisite is a new task: leave out key and status")
        reason = free_text(reason, "reason", 1000)
        try:
            async with self.backlog.transaction(wake=True) as conn:
                repo = await conn.fetchval("select repo from tasks where number = $1", number)
                task_id = await self._end_lease(conn, number, agent_id, epoch)
                if task_id is None:
                    raise _Refused
                if prerequisite.repo is None and repo:
                    prerequisite = prerequisite.model_copy(update={"repo": repo})
                auto = self.settings.auto_approve_prerequisites
                prereq_id = await self.backlog.insert_task(
                    conn,
                    prerequisite,
                    actor,
                    approve=auto,
                    lane=(prerequisite.lane or Lane.AUTONOMOUS) if auto else None,
                    prerequisite_of=format_key(self.prefix, number),
                )
                await conn.execute(
                    "insert into task_deps (task_id, prereq_id) values ($1, $2)", task_id, prereq_id
                )
                prereq = await fetch_task(conn, prereq_id, self.prefix)
                details = {
                    "epoch": epoch,
                    "prerequisite": prereq.key,
                    "reason": reason,
                    "prerequisite_status": prereq.status.value,
                }
                await events.record(
                    conn,
                    task_id,
                    actor,
                    EventKind.HANDED_OFF,
                    details,
                    notify=OutboxKind.HANDOFF,
                    payload=Handoff(
                        key=format_key(self.prefix, number),
                        by=str(actor),
                        epoch=epoch,
                        prerequisite=prereq.key,
                        prerequisite_title=prereq.title,
                        prerequisite_status=prereq.status,
                        reason=reason,
                    ),
                )
                return await fetch_task(conn, task_id, self.prefix), prereq
        except _Refused:
            replay = await self._handed_off(number, actor, epoch, prerequisite, reason)
            if replay is None:
                raise await self._refusal(number, actor, epoch, "hand off") from None
            return replay

    async def _last_write(
        self, number: int, actor: Actor, epoch: int, kind: EventKind
    ) -> asyncpg.Record | None:
        return await self.pool.fetchrow(LAST_WRITE_SQL, number, kind, str(actor), str(epoch))

    async def _replayed(
        self, number: int, actor: Actor, epoch: int, kind: EventKind, same: dict[str, Any]
    ) -> Task | None:
        """A refused write that is a retry of one that went through (the same agent, epoch and
        payload; its answer was lost): the task as it is, marked replayed (and, for a done after
        a commit had closed the task, that commit); else None."""
        row = await self._last_write(number, actor, epoch, kind)
        if row is None or any(row["details"].get(k) != v for k, v in same.items()):
            return None
        task = await self.backlog.get_by_id(row["task_id"])
        closed_by = row["details"].get("closed_by")
        return task.model_copy(update={"replayed": True, "already_closed_by": closed_by})

    async def _refused(
        self,
        number: int,
        actor: Actor,
        epoch: int,
        verb: str,
        kind: EventKind,
        same: dict[str, Any],
        want: Lane | None = None,
    ) -> Task:
        """After a fenced write was refused (its connection given back: asking why takes
        others): a retry of a write that went through answers as a replay; else raise why."""
        done = await self._replayed(number, actor, epoch, kind, same)
        if done is None:
            raise await self._refusal(number, actor, epoch, verb, want) from None
        return done

    async def _handed_off(
        self, number: int, actor: Actor, epoch: int, prerequisite: Spec, reason: str | None
    ) -> tuple[Task, Task] | None:
        """A retried hand-off that went through: the task and its prerequisite, marked
        replayed (the same prerequisite title and reason), else None."""
        row = await self._last_write(number, actor, epoch, EventKind.HANDED_OFF)
        if row is None or row["details"].get("reason") != reason:
            return None
        prereq = await self.backlog.get(row["details"]["prerequisite"])
        if prereq.title != prerequisite.title:
            return None
        task = await self.backlog.get_by_id(row["task_id"])
        return task.model_copy(update={"replayed": True}), prereq.model_copy(
            update={"replayed": True}
        )

    async def _end_lease(
        self, conn: asyncpg.Connection, number: int, agent_id: int, epoch: int
    ) -> int | None:
        return await conn.fetchval(END_LEASE_SQL, number, agent_id, epoch)

    async def _refusal(
        self, number: int, actor: Actor, epoch: int, verb: str, want: Lane | None = None
    ) -> Exception:
        """Why a fenced write was refused, naming who holds the task now."""
        key = format_key(self.prefix, number)
        row = await self.pool.fetchrow(REFUSAL_SQL, number)
        if row is None:
            return NotFound(f"no task {key}")
        details = {
            "key": key,
            "status": row["status"],
            "holder": row["holder"],
            "epoch": row["epoch"],
            "your_epoch": epoch,
        }
        holder, current = row["holder"], row["epoch"]
        # did this agent ever hold the task at the epoch it presents?
        held = (
            row["status"] == Status.CLAIMED
            and epoch != current
            and await self._last_write(number, actor, epoch, EventKind.CLAIMED) is not None
        )
        if row["status"] == Status.CLAIMED and holder != actor.name:
            what = (
                f"your lease (epoch {epoch}) is stale; {holder} holds it now (epoch {current})"
                if held
                else f"you do not hold it; {holder} does (epoch {current})"
            )
            return LeaseError(
                f"cannot {verb} {key}: {what}. Stop work on it and run `ob next`.", **details
            )
        if row["status"] == Status.CLAIMED and epoch != current:
            what = (
                f"epoch {epoch} is stale: you claimed it again since and hold it at epoch "
                f"{current}; only the newest claim may write (if another session of yours "
                "works on it, stop this one)"
                if held
                else f"epoch {epoch} is not one your claims got: you hold it at epoch {current}"
                " (the epoch your claim returned)"
            )
            return LeaseError(f"cannot {verb} {key}: {what}", **details)
        if row["status"] == Status.CLAIMED and row["expired"]:
            return LeaseError(
                f"cannot {verb} {key}: your lease expired at {row['lease_expires_at']:%H:%M:%S} "
                "UTC; anyone may claim it now. Heartbeat sooner, or claim it again.",
                **details,
            )
        if row["status"] == Status.CLAIMED and want and row["lane"] != want:
            hint = "`ob findings`" if row["lane"] == Lane.INVESTIGATION else "`ob done`"
            return InvalidTransition(
                f"cannot {verb} {key}: it is in {row['lane']}; finish it with {hint}", **details
            )
        if row["status"] == Status.CLAIMED:
            return LeaseError(f"cannot {verb} {key}: lease refused", **details)
        return LeaseError(
            f"cannot {verb} {key}: you do not hold it (it is {row['status']}"
            + (f", epoch {row['epoch']}" if row["epoch"] else "")
            + "). Your lease ended; run `ob next` for work.",
            **details,
        )


def _check_commits(commits: list[str]) -> list[str]:
    out = []
    for c in commits:
        c = c.strip().lower()
        if not SHA_RE.match(c):
            raise Invalid(f"{c[:50]!r} is not a commit SHA (7-40 hex digits)")
        out.append(c)
    if len(out) > 50:
        raise Invalid("at most 50 commits per completion")
    return out
