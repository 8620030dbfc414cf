"""Evidence: which done tasks git confirms, and which lost their confirmation.

* verification: a completed task whose commits are all on its repo's default branch (and not
  reverted there) becomes verified (`verified` event + outbox row);
* evidence lost: a done, verified task whose commits were reverted or left the default branch
  loses its verification (it stays done, and shows among the unverified completions):
  `evidence_lost` event + outbox row. It is verified again when git shows the evidence again;
* plan bases that left the branch get a `plan_base_lost` event (the drift says so, too);
* the one definition of "unverified" (`ob list --unverified`, the digest).
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from pydantic import BaseModel

from core.models import Task, format_key
from core.notices import EvidenceLost
from core.settings import Settings
from core.tasks import BLOCKED_COLUMN, TASK_COLUMNS, TASK_FROM, task_from_row

# the repo a task's evidence is in: the task's own, unless the operator confirmed that another
# repo's commit closes it (null: any repo, for a task without one)
_EVIDENCE_REPO = "coalesce(t.evidence_repo, t.repo)"

# a stored default-branch commit matching a SHA or prefix c.sha, in the evidence's repo, whose
# change is still on the branch (not reverted)
_LIVE = f"""
exists (select 1 from git_commits g join repos r on r.id = g.repo_id
        where ({_EVIDENCE_REPO} is null or r.name = {_EVIDENCE_REPO})
          and g.sha >= (c.sha collate "C") and g.sha < ((c.sha || 'z') collate "C")
          and g.reverted_by is null)
"""

# $1 key prefix
_VERIFY = f"""
with cand as (
    select t.id from tasks t
    where t.status = 'done' and t.verified_at is null and t.commits <> '{{}}'
      and not exists (select 1 from unnest(t.commits) as c(sha) where not {_LIVE})
    for update of t skip locked
),
upd as (
    update tasks t set verified_at = now(), evidence_lost = null, updated_at = now()
    from cand where t.id = cand.id
    returning t.id, t.number, t.repo, t.commits, t.completed_by
),
ev as (
    insert into events (task_id, actor, kind, details)
    select id, 'git', 'verified', jsonb_build_object('commits', commits, 'repo', repo)
    from upd
),
ob as (
    insert into outbox (kind, task_id, payload)
    select 'task_verified', id,
           jsonb_build_object('key', task_key($1, number), 'repo', repo, 'commits', commits,
                              'by', completed_by)
    from upd
)
select number from upd order by number
"""

# Done, verified tasks whose evidence is in repo $3 (or in any repo) with a commit among $1 (SHAs that left the
# branch or were reverted; tasks name commits by SHA or prefix, so every prefix of 7-40 digits
# of a suspect is joined, by hash), and for each of their commits: still live? reverted by what
# (in repo $2)?
_EVIDENCE = f"""
with s as (
    select distinct left(x.sha, n) as p
    from unnest($1::text[]) as x(sha), generate_series(7, 40) as n
),
hit as (
    select distinct t.id
    from tasks t cross join lateral unnest(t.commits) as c(sha) join s on s.p = c.sha
    where t.status = 'done' and t.verified_at is not null
      and ({_EVIDENCE_REPO} is null or {_EVIDENCE_REPO} = $3)
),
t as (
    select t.id, t.number, t.repo, t.evidence_repo, t.commits
    from tasks t where t.id in (select id from hit)
    order by t.id
    for no key update of t
)
select t.id, t.number, c.sha, {_LIVE} as live,
       (select g.reverted_by from git_commits g
        where g.repo_id = $2 and g.sha >= (c.sha collate "C")
          and g.sha < ((c.sha || 'z') collate "C") and g.reverted_by is not null
        limit 1) as reverted_by
from t cross join lateral unnest(t.commits) with ordinality as c(sha, ord)
order by t.id, c.ord
"""

# $1 task ids, $2 evidence_lost details (json), $3 payloads
_LOSE = """
with l as (
    select * from unnest($1::bigint[], $2::text[], $3::jsonb[]) as l(task_id, details, payload)
),
upd as (
    update tasks t set verified_at = null, updated_at = now(),
                       evidence_lost = l.details::jsonb || jsonb_build_object('at', now())
    from l where t.id = l.task_id
    returning t.id
),
ev as (
    insert into events (task_id, actor, kind, details)
    select l.task_id, 'git', 'evidence_lost', l.details::jsonb from l join upd on upd.id = l.task_id
)
insert into outbox (kind, task_id, payload)
select 'evidence_lost', l.task_id, l.payload from l join upd on upd.id = l.task_id
"""

# $1 repo name, $2 branch, $3 SHAs that left the branch
_BASES_LOST = """
insert into events (task_id, actor, kind, details)
select t.id, 'git', 'plan_base_lost',
       jsonb_build_object('repo', $1::text, 'branch', $2::text, 'base_sha', t.base_sha)
from tasks t
where t.repo = $1 and t.status in ('draft', 'open', 'claimed')
  and t.base_sha = any($3::text[])
"""


async def lose_evidence(
    conn: asyncpg.Connection,
    prefix: str,
    repo_id: int,
    repo: str,
    branch: str,
    suspects: list[str],
) -> int:
    """Done, verified tasks whose evidence was reverted or left the branch lose their
    verification: `evidence_lost` event and outbox row, in this transaction."""
    rows = await conn.fetch(_EVIDENCE, suspects, repo_id, repo)
    tasks: dict[int, tuple[int, list[tuple[str, str | None]]]] = {}
    for r in rows:
        _, lost = tasks.setdefault(r["id"], (r["number"], []))
        if not r["live"]:
            lost.append((r["sha"], r["reverted_by"]))
    ids, details, payloads = [], [], []
    for task_id, (number, lost) in tasks.items():
        if not lost:
            continue
        reverted_by = next((by for _, by in lost if by), None)
        notice = EvidenceLost(
            key=format_key(prefix, number),
            repo=repo,
            branch=branch,
            reason="reverted" if reverted_by else "left_default_branch",
            commits=[sha for sha, _ in lost],
            reverted_by=reverted_by,
        )
        ids.append(task_id)
        payloads.append(notice.dump())
        details.append(json.dumps(notice.model_dump(exclude={"key"})))
    if ids:
        await conn.execute(_LOSE, ids, details, payloads)
    return len(ids)


async def verify(pool: asyncpg.Pool, prefix: str) -> list[str]:
    """Mark completed tasks verified whose commits are all on the default branch (and not
    reverted there); their keys."""
    rows = await pool.fetch(_VERIFY, prefix)
    return [format_key(prefix, r["number"]) for r in rows]


async def bases_lost(conn: asyncpg.Connection, repo: str, branch: str, dropped: list[str]) -> None:
    """Unfinished tasks of the repo whose plan base left the branch: `plan_base_lost`."""
    await conn.execute(_BASES_LOST, repo, branch, dropped)


class Unverified(BaseModel):
    task: Task
    flagged: bool  # unverified for longer than OB_UNVERIFIED_DAYS
    evidence: str  # "no commits" | "commits not on the default branch yet" | "... reverted ..."


def _evidence_text(task: Task, lost: dict[str, Any] | None) -> str:
    if lost:
        shas = ", ".join(str(s)[:10] for s in lost.get("commits", [])[:5])
        if lost.get("reason") == "reverted":
            return f"evidence reverted: {shas} by {str(lost.get('reverted_by'))[:10]}"
        return f"evidence left {lost.get('branch') or 'the default branch'}: {shas}"
    return "commits not on the default branch yet" if task.commits else "no commits"


class UnverifiedReport(BaseModel):
    """Done tasks git has not confirmed: how many, how many past OB_UNVERIFIED_DAYS, and the
    oldest of them."""

    total: int
    flagged: int
    days: int
    items: list[Unverified]


_UNVERIFIED = f"""
select {TASK_COLUMNS}, {BLOCKED_COLUMN}, t.evidence_lost,
       t.completed_at < now() - make_interval(days => $1::int) as flagged
from {TASK_FROM}
where t.status = 'done' and t.verified_at is null
order by t.completed_at, t.id limit $2  -- tasks_unverified_idx, then incremental sort
"""
_UNVERIFIED_COUNT = """
select count(*) as total,
       count(*) filter (where completed_at < now() - make_interval(days => $1::int)) as flagged
from tasks where status = 'done' and verified_at is null
"""


async def unverified_report(
    conn: asyncpg.Connection, settings: Settings, limit: int = 200
) -> UnverifiedReport:
    """The one definition of "unverified" (`ob list --unverified` and the digest), oldest
    first."""
    counts = await conn.fetchrow(_UNVERIFIED_COUNT, settings.unverified_days)
    rows = await conn.fetch(_UNVERIFIED, settings.unverified_days, limit)
    items = []
    for r in rows:
        data = dict(r)
        flagged = bool(data.pop("flagged"))
        lost = data.pop("evidence_lost", None)
        task = task_from_row(data, settings.key_prefix)
        items.append(Unverified(task=task, flagged=flagged, evidence=_evidence_text(task, lost)))
    return UnverifiedReport(
        total=counts["total"],
        flagged=counts["flagged"],
        days=settings.unverified_days,
        items=items,
    )
