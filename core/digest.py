"""The daily lane digest, as data (DESIGN §5). SQL only; the bot renders it.

Per-lane counts and oldest age, drafts awaiting approval, work in progress by agent, work done in
the last 24 hours by agent with its evidence, blocked chains, drifted plans and unverified
completions. Each section is one indexed query; `build_digest` runs them on one connection.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel

from core.models import Lane
from core.tasks import STATUS_SQL

LIST_LIMIT = 10


class LaneCount(BaseModel):
    lane: Lane
    count: int
    oldest_at: datetime | None


class Item(BaseModel):
    key: str
    title: str
    who: str | None = None
    at: datetime | None = None
    commits: list[str] = []
    verified: bool | None = None
    blocked_by: list[str] = []


class Section(BaseModel):
    total: int = 0
    items: list[Item] = []


class Digest(BaseModel):
    built_at: datetime
    lanes: list[LaneCount]
    awaiting_approval: Section
    in_progress: dict[str, list[Item]]
    done_24h: dict[str, list[Item]]
    done_24h_total: int
    done_without_evidence: int
    blocked: Section
    drifted: Section
    unverified: Section


_LANES = """
select lane, count(*) as count, min(coalesce(approved_at, created_at)) as oldest_at
from tasks where status = 'open' group by lane
"""
_DRAFTS = """
select number, title, created_by, created_at, count(*) over () as total
from tasks where status = 'draft' order by created_at, id limit $1
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
select t.number, t.title, b.prereqs, count(*) over () as total
from b join tasks t on t.id = b.task_id join task_leases l on l.task_id = t.id
where t.status in ('draft', 'open') and l.lease_agent_id is null
order by t.priority, t.id limit $1
"""
_UNVERIFIED = """
select number, title, completed_by, completed_at, commits
from tasks where status = 'done' and verified_at is null and commits <> '{}'
order by completed_at desc limit $1
"""
_UNVERIFIED_COUNT = """
select count(*) from tasks where status = 'done' and verified_at is null and commits <> '{}'
"""
_NO_EVIDENCE = """
select count(*) from tasks
where status = 'done' and commits = '{}' and completed_at > now() - interval '24 hours'
"""

# Plan drift hook: a task approved against `base_sha` has drifted when its repo's default branch
# has moved since. The reconciler (another module) owns the repo's current head; whichever of
# these columns it keeps on `repos` is used. Without one, the section stays empty.
DRIFT_HEAD_COLUMNS = ("head_sha", "last_sha", "cursor_sha", "last_commit")
_DRIFTED = """
select t.number, t.title, t.base_sha, count(*) over () as total
from tasks t join repos r on r.name = t.repo
where t.status = 'open' and t.base_sha is not null
  and r.{col} is not null and r.{col} <> t.base_sha
order by t.priority, t.id limit $1
"""


# /lanes: unfinished tasks by lane and status (as shown: claimed while a lease is held).
_LANE_STATUS = f"""
select coalesce(t.lane, '') as lane, {STATUS_SQL} as status, count(*) as n,
       min(coalesce(t.approved_at, t.created_at)) as oldest
from tasks t join task_leases l on l.task_id = t.id
where t.status in ('draft', 'open') group by 1, 2
"""


async def lane_status_counts(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Rows of (lane, status, n, oldest) for unfinished tasks; lane is '' for drafts."""
    return await pool.fetch(_LANE_STATUS)


async def _drift_column(conn: asyncpg.Connection) -> str | None:
    cols = await conn.fetch(
        "select column_name from information_schema.columns"
        " where table_name = 'repos' and column_name = any($1::text[])",
        list(DRIFT_HEAD_COLUMNS),
    )
    found = {r["column_name"] for r in cols}
    return next((c for c in DRIFT_HEAD_COLUMNS if c in found), None)


async def drifted_plans(conn: asyncpg.Connection, prefix: str, limit: int) -> Section:
    col = await _drift_column(conn)
    if col is None:
        return Section()
    rows = await conn.fetch(_DRIFTED.format(col=col), limit)
    return Section(
        total=rows[0]["total"] if rows else 0,
        items=[
            Item(key=f"{prefix}-{r['number']}", title=r["title"], who=r["base_sha"][:10])
            for r in rows
        ],
    )


async def build_digest(pool: asyncpg.Pool, prefix: str, limit: int = LIST_LIMIT) -> Digest:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        now = await conn.fetchval("select now()")
        lanes = {r["lane"]: r for r in await conn.fetch(_LANES)}
        drafts = await conn.fetch(_DRAFTS, limit)
        prog = await conn.fetch(_IN_PROGRESS, limit)
        done = await conn.fetch(_DONE, limit)
        blocked = await conn.fetch(_BLOCKED, limit)
        unverified = await conn.fetch(_UNVERIFIED, limit)
        unverified_total = await conn.fetchval(_UNVERIFIED_COUNT)
        no_evidence = await conn.fetchval(_NO_EVIDENCE)
        drifted = await drifted_plans(conn, prefix, limit)

    def key(n: int) -> str:
        return f"{prefix}-{n}"

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
        lanes=[
            LaneCount(
                lane=lane,
                count=lanes[lane]["count"] if lane in lanes else 0,
                oldest_at=lanes[lane]["oldest_at"] if lane in lanes else None,
            )
            for lane in Lane
        ],
        awaiting_approval=Section(
            total=drafts[0]["total"] if drafts else 0,
            items=[
                Item(
                    key=key(r["number"]), title=r["title"], who=r["created_by"], at=r["created_at"]
                )
                for r in drafts
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
                )
                for r in blocked
            ],
        ),
        drifted=drifted,
        unverified=Section(
            total=unverified_total,
            items=[
                Item(
                    key=key(r["number"]),
                    title=r["title"],
                    who=r["completed_by"],
                    at=r["completed_at"],
                    commits=list(r["commits"]),
                    verified=False,
                )
                for r in unverified
            ],
        ),
    )
