"""The daily lane digest, as data (DESIGN §5). SQL only; the bot renders it.

Per-lane counts and oldest age, what waits for the operator's decision (agents' questions and
the decision lane) and the drafts awaiting approval, both ranked by what deciding releases
(core.decisions), the commits that say they close another repo's task (core.git.crossrepo), tasks back from a snooze (their trigger date is the digest's day), work in
progress by agent, work done in the last 24 hours by agent with its evidence, blocked chains,
drifted plans, unverified completions and the truth's age (repos whose last good fetch is too
old). Each section is one indexed query; `Digests.build` runs them on one connection.
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
from pydantic import BaseModel

from core.decisions import PendingKind, Ranked, ranked_on, starved
from core.git.crossrepo import OpenAsks, open_asks
from core.git.drift import DriftedPlans, drifted_plans
from core.git.evidence import UnverifiedReport, unverified_report
from core.git.repos import TruthAge, truth_age
from core.models import Lane, format_key
from core.outbox import OutboxStats, outbox_stats_on
from core.service import Service
from core.shaping import local_today
from core.todo_words import describe_status

LIST_LIMIT = 10


class LaneLoad(BaseModel):
    """Unfinished work in one lane (`lane` None: the drafts awaiting approval)."""

    lane: Lane | None
    total: int
    claimed: int
    oldest_at: datetime | None


class Item(BaseModel):
    key: str
    title: str
    who: str | None = None
    at: datetime | None = None
    commits: list[str] = []
    verified: bool | None = None
    blocked_by: list[str] = []
    lane: Lane | None = None
    said: str | None = None  # the status as written (`blocked since 2026-11-18 — finance`)
    unblocks: int = 0  # unfinished tasks waiting on it


class Section(BaseModel):
    total: int = 0
    items: list[Item] = []


class Digest(BaseModel):
    built_at: datetime
    lanes: list[LaneLoad]
    decide: Ranked  # agents' open questions and the decision lane, most-blocking first
    cross_repo: OpenAsks  # commits that say they close another repo's task: close or ignore?
    awaiting_approval: Section  # most-blocking first
    back_today: Section  # snoozed until the digest's day
    in_progress: dict[str, list[Item]]
    done_24h: dict[str, list[Item]]
    done_24h_total: int
    done_without_evidence: int
    blocked: Section
    drifted: DriftedPlans
    unverified: UnverifiedReport
    notices: OutboxStats
    truth: TruthAge  # repos whose last good fetch is older than OB_TRUTH_MAX_AGE


# Open work per lane (tasks_digest_lane_age_idx) and the drafts, with their oldest.
_LANES = """
with held as (
    select t.lane, count(*) as n
    from task_leases l join tasks t on t.id = l.task_id
    where l.ready and l.lease_agent_id is not null group by t.lane  -- held ones are ready
)
select o.lane, o.total, coalesce(h.n, 0) as claimed, o.oldest_at
from (select lane, count(*) as total, min(coalesce(approved_at, created_at)) as oldest_at
      from tasks where status = 'open' group by lane) o
left join held h on h.lane = o.lane
union all
select null, count(*), 0, min(created_at) from tasks where status = 'draft'
"""
_BACK_TODAY = """
select number, title, lane, status_word, status_date, status_reason, count(*) over () as total
from tasks where trigger_on = $2 and status in ('draft', 'open', 'claimed')
order by priority, id limit $1
"""
_IN_PROGRESS = """
select a.name, t.number, t.title, p.lease_expires_at, p.total from (
    select task_id, lease_agent_id, lease_expires_at,
           count(*) over (partition by lease_agent_id) as total,
           row_number() over (partition by lease_agent_id order by lease_expires_at) as rn
    from task_leases where ready and lease_agent_id is not null
) p join agents a on a.id = p.lease_agent_id join tasks t on t.id = p.task_id
where p.rn <= $1 order by a.name, p.lease_expires_at
"""
_DONE = """
select number, title, completed_by, completed_at, commits, verified_at is not null as verified,
       (select count(*) from tasks
        where status = 'done' and completed_at > now() - interval '24 hours') as total
from tasks
where id = any(array(
    select id from (
        select id, row_number() over (partition by completed_by order by completed_at desc) as rn
        from tasks where status = 'done' and completed_at > now() - interval '24 hours'
    ) r where rn <= $1))
order by completed_at desc
"""
_BLOCKED = """
with b as (
    select d.task_id, array_agg(p.number order by p.number) as prereqs
    from task_deps d join tasks p on p.id = d.prereq_id
    where p.status <> 'done' group by d.task_id
)
select t.number, t.title, b.prereqs, t.status_word, t.status_date, t.status_reason,
       count(*) over () as total
from b join tasks t on t.id = b.task_id join task_leases l on l.task_id = t.id
where t.status in ('draft', 'open') and l.lease_agent_id is null
order by t.priority, t.id limit $1
"""
_NO_EVIDENCE = """
select count(*) from tasks
where status = 'done' and commits = '{}' and completed_at > now() - interval '24 hours'
"""


async def lane_loads(conn: asyncpg.Connection) -> list[LaneLoad]:
    """The drafts, then every lane, with counts and the oldest waiting (`/lanes`, the digest)."""
    found = {r["lane"]: r for r in await conn.fetch(_LANES)}
    return [
        LaneLoad(
            lane=lane,
            total=found[lane]["total"] if lane in found else 0,
            claimed=found[lane]["claimed"] if lane in found else 0,
            oldest_at=found[lane]["oldest_at"] if lane in found else None,
        )
        for lane in (None, *Lane)
    ]


class Digests(Service):
    """The daily digest, and the lane loads it opens with (`/lanes`)."""

    async def lanes(self) -> list[LaneLoad]:
        async with self.pool.acquire() as conn:
            return await lane_loads(conn)

    async def build(self, limit: int = LIST_LIMIT, *, day: date | None = None) -> Digest:
        """Every section of the digest of `day` (the operator's today) from one consistent
        snapshot."""
        prefix = self.prefix
        day = day or local_today(self.settings.tz)
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            now = await conn.fetchval("select now()")
            lanes = await lane_loads(conn)
            hungry = await starved(conn, self.backlog)
            decide = await ranked_on(
                conn,
                self.backlog,
                (PendingKind.QUESTION, PendingKind.DECISION),
                limit,
                hungry=hungry,
            )
            drafts = await ranked_on(conn, self.backlog, (PendingKind.DRAFT,), limit, hungry=hungry)
            cross_repo = await open_asks(conn, prefix, limit)
            back = await conn.fetch(_BACK_TODAY, limit, day)
            prog = await conn.fetch(_IN_PROGRESS, limit)
            done = await conn.fetch(_DONE, limit)
            blocked = await conn.fetch(_BLOCKED, limit)
            unverified = await unverified_report(conn, self.settings, limit)
            no_evidence = await conn.fetchval(_NO_EVIDENCE)
            drifted = await drifted_plans(conn, prefix, limit)
            notices = await outbox_stats_on(conn)
            truth = await truth_age(conn, self.settings.truth_max_age, limit)

        def key(n: int) -> str:
            return format_key(prefix, n)

        def said(r: asyncpg.Record) -> str | None:
            return describe_status(r["status_word"], r["status_date"], r["status_reason"])

        in_progress: dict[str, list[Item]] = {}
        for r in prog:
            in_progress.setdefault(r["name"], []).append(
                Item(key=key(r["number"]), title=r["title"], at=r["lease_expires_at"])
            )
        done_by: dict[str, list[Item]] = {}
        for r in done:
            done_by.setdefault(r["completed_by"] or "unknown", []).append(
                Item(
                    key=key(r["number"]),
                    title=r["title"],
                    at=r["completed_at"],
                    commits=list(r["commits"]),
                    verified=r["verified"],
                )
            )
        return Digest(
            built_at=now,
            lanes=[load for load in lanes if load.lane is not None],
            decide=decide,
            cross_repo=cross_repo,
            awaiting_approval=Section(
                total=drafts.total,
                items=[
                    Item(
                        key=p.key,
                        title=p.title,
                        who=p.by,
                        at=p.at,
                        unblocks=p.unblocks,
                        said=p.said,
                    )
                    for p in drafts.items
                ],
            ),
            back_today=Section(
                total=back[0]["total"] if back else 0,
                items=[
                    Item(key=key(r["number"]), title=r["title"], lane=r["lane"], said=said(r))
                    for r in back
                ],
            ),
            in_progress=in_progress,
            done_24h=done_by,
            done_24h_total=done[0]["total"] if done else 0,
            done_without_evidence=no_evidence,
            blocked=Section(
                total=blocked[0]["total"] if blocked else 0,
                items=[
                    Item(
                        key=key(r["number"]),
                        title=r["title"],
                        blocked_by=[key(n) for n in r["prereqs"]],
                        said=said(r),
                    )
                    for r in blocked
                ],
            ),
            drifted=drifted,
            unverified=unverified,
            notices=notices,
            truth=truth,
        )
