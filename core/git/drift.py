"""Plan drift: how far a repo's default branch moved since a task's plan was approved.

Approving a task (or the operator filing one with a repo) records the repo's HEAD as the task's
`base_sha`. A claim (and `ob show`) then reports the drift — commits since the base, their
subjects (capped), files they touched that the steps name, and commits that already reference
the task — against the branch's tip as git has it now (read from the ref files: the
remote-tracking branch as the last fetch left it; no network on the claim path), and says how
fresh that is (`fetched_at`, the last good fetch). When the reconciler has read up to that tip,
the stored commits answer with no git process; otherwise one bounded `git log` counts from the
base. If the base is not on the branch (history was rewritten, force-pushed away, the object is
gone) the drift says so (`base_left_branch`, `commits_since` None, a `warning` naming
`ob replan`) instead of counting from some fallback. A claim for a task without repo or base
never touches git or these tables, and a failure becomes `{"error": ...}`, never a failed
claim.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from core import events
from core.backlog import require_operator
from core.errors import Invalid
from core.git.base import current_head
from core.git.gitlog import log_args, parse_log, run_git
from core.git.remotes import read_default_branch
from core.models import Actor, EventKind, Status, Task, format_key
from core.service import Service
from core.tasks import fetch_task, task_id_for_key

log = logging.getLogger(__name__)

MAX_SUBJECTS = 20
MAX_REFERENCES = 10
GIT_FALLBACK_COMMITS = 500
GIT_TIMEOUT = 5.0

_DRIFT = """
with b as (select pos from git_commits where repo_id = $1 and sha = $2),
s as (select g.sha, g.subject, g.files, g.pos
      from git_commits g, b where g.repo_id = $1 and g.pos > b.pos)
select (select pos from b) as base_pos,
       (select count(*) from s) as n,
       (select coalesce(array_agg(x.sha || ' ' || x.subject order by x.pos desc), '{}')
        from (select * from s order by pos desc limit $3) x) as subjects,
       (select coalesce(array_agg(distinct f.f order by f.f), '{}')
        from s, unnest(string_to_array(s.files, E'\\n')) as f(f)
        where f.f = any($4::text[]) or regexp_replace(f.f, '^.*/', '') = any($4::text[])
       ) as files
"""

_REFERENCES = """
select tc.sha, r.name as repo, tc.closes, tc.on_default, tc.agent, tc.subject
from task_commits tc join repos r on r.id = tc.repo_id
where tc.task_id = $1
order by tc.committed_at desc nulls last, tc.sha
limit $2
"""

_TOKEN_SPLIT = re.compile(r"[\s,;()\[\]{}<>\"'`]+")


def path_tokens(steps: list[str]) -> list[str]:
    """Words of the steps that look like file paths or file names (`ingest/db.py`)."""
    out = set()
    for step in steps:
        for w in _TOKEN_SPLIT.split(step):
            w = w.strip(".:!?*").removeprefix("./")
            if len(w) >= 3 and ("/" in w or re.search(r"\.[A-Za-z0-9]{1,8}$", w)):
                out.add(w)
    return sorted(out)[:200]


def _files_named(files: list[str], tokens: list[str]) -> list[str]:
    names = set(tokens)
    return sorted({f for f in files if f in names or f.rsplit("/", 1)[-1] in names})


async def drift_for(conn: asyncpg.Connection, task: Task, task_id: int) -> dict[str, Any] | None:
    """The drift of a task's plan, or None for a task without repo or base."""
    if not task.repo or not task.base_sha:
        return None
    try:
        return await _drift(conn, task, task_id)
    except Exception as err:  # never fail a claim over git
        log.warning("drift of %s failed: %s", task.key, err)
        return {"error": f"{type(err).__name__}: {str(err)[:300]}"}


async def _drift(conn: asyncpg.Connection, task: Task, task_id: int) -> dict[str, Any]:
    repo = await conn.fetchrow(
        "select id, name, path, default_branch, branch_pinned, cursor_sha, last_scan_at,"
        " last_fetch_at from repos where name = $1",
        task.repo,
    )
    if repo is None:
        return {"error": f"repo {task.repo!r} is not registered (`ob repo add PATH`)"}
    assert task.base_sha is not None
    now = await asyncio.wait_for(
        asyncio.to_thread(
            read_default_branch, repo["path"], repo["default_branch"], repo["branch_pinned"]
        ),
        GIT_TIMEOUT,
    )
    tip = now.tip
    tokens = path_tokens(task.steps)
    out: dict[str, Any] = {
        "repo": repo["name"],
        "branch": now.branch,
        "base_sha": task.base_sha,
        "head_sha": tip,
        "fetched_at": _iso(repo["last_fetch_at"]),  # how fresh the truth is (None: not fetched)
        "scanned_at": _iso(repo["last_scan_at"]),
    }
    refs = await conn.fetch(_REFERENCES, task_id, MAX_REFERENCES)
    if tip is None or task.base_sha == tip:
        out.update(commits_since=0, subjects=[], files_in_steps=[], source="git")
    else:
        row = None
        if tip == repo["cursor_sha"]:  # the reconciler has read up to the tip
            row = await conn.fetchrow(_DRIFT, repo["id"], task.base_sha, MAX_SUBJECTS, tokens)
        if row is not None and row["base_pos"] is not None:
            out.update(
                commits_since=row["n"],
                subjects=list(row["subjects"]),
                files_in_steps=list(row["files"]),
                source="reconciler",
            )
        else:
            out.update(await _drift_from_git(repo["path"], tip, task.base_sha, tokens))
    if out.get("base_left_branch"):
        branch = now.branch or "the default branch"
        out["warning"] = (
            f"the plan's base {task.base_sha[:10]} is no longer on {branch} (history was"
            f" rewritten); re-check the plan against {branch}, then `ob replan {task.key}`"
        )
    out.setdefault("base_left_branch", False)
    out["subjects_truncated"] = (out.get("commits_since") or 0) > len(out.get("subjects", []))
    out["references"] = [dict(r) for r in refs]
    out["already_referenced"] = bool(refs)
    return out


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


async def _drift_from_git(path: str, tip: str, base: str, tokens: list[str]) -> dict[str, Any]:
    """The commits from `base` to `tip`, from git (one bounded `git log`)."""

    def read() -> dict[str, Any]:
        # 0: an ancestor of the tip; 1: not (rewritten away); 128: no such commit (gone)
        rc, _ = run_git(path, "merge-base", "--is-ancestor", base, tip, check=False)
        if rc != 0:
            return {
                "base_left_branch": True,
                "commits_since": None,
                "subjects": [],
                "files_in_steps": [],
                "source": "git",
            }
        _, text = run_git(
            path,
            *log_args(files=True, topo=True),
            f"--max-count={GIT_FALLBACK_COMMITS}",
            f"{base}..{tip}",
        )
        commits = parse_log(text)
        files = [f for c in commits for f in c.files]
        return {
            "commits_since": len(commits),
            "commits_capped": len(commits) >= GIT_FALLBACK_COMMITS,
            "subjects": [f"{c.sha} {c.subject}" for c in commits[:MAX_SUBJECTS]],
            "files_in_steps": _files_named(files, tokens),
            "source": "git",
        }

    return await asyncio.wait_for(asyncio.to_thread(read), GIT_TIMEOUT)


class Drift(Service):
    """How far a task's plan drifted from its repo, and replanning it."""

    async def of_task(self, key: str) -> dict[str, Any] | None:
        """The drift of an unfinished task's plan now (`ob show`), or None (no repo or base, or
        the task is finished)."""
        async with self.pool.acquire() as conn:
            task_id = await task_id_for_key(conn, key, self.prefix)
            task = await fetch_task(conn, task_id, self.prefix)
            if task.status not in (Status.DRAFT, Status.OPEN, Status.CLAIMED):
                return None
            return await drift_for(conn, task, task_id)

    async def replan(self, key: str, actor: Actor) -> Task:
        """Reset a task's plan base to its repo's current HEAD (after the plan was revised)."""
        require_operator(actor, "replan tasks")
        async with self.pool.acquire() as conn, conn.transaction():
            task_id = await task_id_for_key(conn, key, self.prefix)
            row = await conn.fetchrow("select * from tasks where id = $1 for update", task_id)
            if not row["repo"]:
                raise Invalid(f"{key} has no repo; set one with `ob edit {key} --repo NAME`")
            head = await current_head(conn, row["repo"])
            if head is None:
                raise Invalid(
                    f"repo {row['repo']!r} is not registered or unreadable; `ob repo add PATH` first"
                )
            await conn.execute(
                "update tasks set base_sha = $2, updated_at = now() where id = $1", task_id, head
            )
            await events.record(
                conn, task_id, actor, EventKind.REPLANNED, {"from": row["base_sha"], "to": head}
            )
            return await fetch_task(conn, task_id, self.prefix)


class DriftedPlan(BaseModel):
    key: str
    title: str
    repo: str
    base_sha: str
    commits_since: int


class DriftedPlans(BaseModel):
    total: int
    items: list[DriftedPlan]


_DRIFTED = """
with d as (
    select t.number, t.title, t.repo, t.base_sha, t.priority,
           (select count(*) from git_commits g
            where g.repo_id = r.id and g.pos > b.pos) as commits_since
    from tasks t join repos r on r.name = t.repo
    join git_commits b on b.repo_id = r.id and b.sha = t.base_sha
    where t.status = 'open' and t.base_sha is not null
      and t.base_sha <> coalesce(r.cursor_sha, '')
)
select *, count(*) over () as total from d where commits_since > 0
order by commits_since desc, number
limit $1
"""


async def drifted_plans(conn: asyncpg.Connection, prefix: str, limit: int = 50) -> DriftedPlans:
    """Open tasks whose repo's default branch moved since their plan was approved (the digest's
    "drifted plans"), most drifted first."""
    rows = await conn.fetch(_DRIFTED, limit)
    return DriftedPlans(
        total=rows[0]["total"] if rows else 0,
        items=[
            DriftedPlan(
                key=format_key(prefix, r["number"]),
                title=r["title"],
                repo=r["repo"],
                base_sha=r["base_sha"],
                commits_since=r["commits_since"],
            )
            for r in rows
        ],
    )
