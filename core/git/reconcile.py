"""Reconciliation: read each registered repository's new commits and hold the backlog to them.

Per repo: read the branch tips from the ref files (no git process); if nothing moved since the
last scan, stop there. Otherwise run one `git log` (see gitlog.py) under a row lock on the repo
(two reconcilers never read the same repo at once), then in one transaction:

* store the new default-branch commits (subject, files) for verification and plan drift;
* link every commit that names a task (`commit_linked`), on any branch, in any repo;
* close tasks named by a closing reference on the default branch (`closed_by_commit` + outbox
  `task_closed_by_commit`; an agent holding the task loses its lease: `closed_while_claimed`);
* move the cursor.

`task_commits`' primary key makes all of it idempotent. A failing repo (path gone, git error)
gets `last_error` and is skipped; the others go on. Afterwards completed tasks whose commits
are all on their repo's default branch become verified.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic import BaseModel

from core import events
from core.deps import UNBLOCKED, unblocked_events, unblocked_outbox
from core.git.gitlog import LogScan, read_log
from core.git.keys import find_keys
from core.git.refs import RepoGone, branch_ref, detect_default_branch, read_refs
from core.git.repos import discover
from core.models import Task
from core.settings import Settings
from core.tasks import (
    BLOCKED_COLUMN,
    LEASE_JOIN,
    STATUS_SQL,
    TASK_COLUMNS,
    TASK_FROM,
    task_from_row,
)

log = logging.getLogger(__name__)


@dataclass
class RepoResult:
    name: str
    status: str = "ok"  # ok | unchanged | busy | error
    commits_read: int = 0
    new_on_default: int = 0
    linked: int = 0
    closed: int = 0
    closed_while_claimed: int = 0
    unknown_keys: int = 0
    rewritten: bool = False
    error: str | None = None
    seconds: float = 0.0


@dataclass
class ReconcileSummary:
    repos: list[RepoResult] = field(default_factory=list)
    discovered: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def total(self, attr: str) -> int:
        return sum(getattr(r, attr) for r in self.repos)

    @property
    def errors(self) -> list[RepoResult]:
        return [r for r in self.repos if r.error]


ProgressFn = Callable[[RepoResult], None]

# ---------------------------------------------------------------------------- SQL

_KNOWN = "select number from tasks where number = any($1::bigint[])"

_LINK = """
with m as (
    select * from unnest($2::bigint[], $3::text[], $4::bool[], $5::bool[], $6::text[],
                         $7::text[], $8::text[], $9::timestamptz[])
        as m(number, sha, closes, on_default, agent, author_email, subject, committed_at)
)
insert into task_commits as tc (task_id, repo_id, sha, closes, on_default, agent, author_email,
                                subject, committed_at)
select t.id, $1, m.sha, m.closes, m.on_default, m.agent, m.author_email, m.subject, m.committed_at
from m join tasks t on t.number = m.number
on conflict (task_id, repo_id, sha) do update
    set on_default = true, closes = excluded.closes
    where not tc.on_default and excluded.on_default
returning tc.task_id, tc.sha, tc.closes, tc.on_default, tc.agent, tc.author_email, tc.subject,
          (xmax = 0) as fresh
"""

# $1 task ids, $2 shas, $3 agents, $4 author emails, $5 subjects, $6 repo, $7 key prefix
_CLOSE = f"""
with c as (
    select * from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
        as c(task_id, sha, agent, author_email, subject)
),
prev as (
    select t.id, {STATUS_SQL} as status, l.epoch, a.name as holder
    from tasks t join c on c.task_id = t.id {LEASE_JOIN}
    where t.status in ('draft', 'open')
    order by t.id
    for no key update of t, l
),
-- a holder loses its lease as the task closes (sql/005's trigger; the epoch grows)
upd as (
    update tasks t set
        status = 'done',
        completed_by = 'git:' || coalesce(c.agent, c.author_email),
        completed_at = now(),
        commits = case when c.sha = any(t.commits) then t.commits else t.commits || c.sha end,
        verified_at = now(),
        status_at = now(),
        updated_at = now()
    from c join prev p on p.id = c.task_id
    where t.id = c.task_id
    returning t.id, t.number, t.title, p.status as prev_status, p.holder, p.epoch as prev_epoch,
              c.sha, c.agent, c.author_email, c.subject
),
{UNBLOCKED},
ev as (
    insert into events (task_id, actor, kind, details)
    select u.id, case when u.agent is null then 'git' else 'git:' || u.agent end, v.kind, v.details
    from upd u cross join lateral (values
        (1, 'closed_by_commit',
         jsonb_build_object('sha', u.sha, 'repo', $6::text, 'agent', u.agent,
                            'author', u.author_email, 'subject', u.subject,
                            'previous_status', u.prev_status, 'verified', true)),
        (2, case when u.prev_status = 'claimed' then 'closed_while_claimed' end,
         jsonb_build_object('holder', u.holder, 'epoch', u.prev_epoch, 'sha', u.sha,
                            'repo', $6::text))
    ) as v(ord, kind, details)
    where v.kind is not null
    union all
    {unblocked_events("$7")}
),
ob as (
    insert into outbox (kind, task_id, payload)
    select 'task_closed_by_commit', u.id,
           jsonb_build_object('key', $7::text || '-' || u.number, 'title', u.title, 'sha', u.sha,
                              'repo', $6::text, 'agent', u.agent, 'author', u.author_email,
                              'subject', u.subject, 'held_by', u.holder,
                              'text', 'closed by commit ' || left(u.sha, 7) || ' in ' || $6::text
                                      || coalesce(', by ' || u.agent, ''))
    from upd u
    union all
    select 'closed_while_claimed', u.id,
           jsonb_build_object('key', $7::text || '-' || u.number, 'title', u.title,
                              'holder', u.holder, 'sha', u.sha, 'repo', $6::text)
    from upd u where u.prev_status = 'claimed'
    union all
    {unblocked_outbox("$7")}
)
select id, prev_status from upd
"""

_LINKED_EVENTS = """
insert into events (task_id, actor, kind, details)
select task_id, actor, 'commit_linked', details::jsonb
from unnest($1::bigint[], $2::text[], $3::text[]) as e(task_id, actor, details)
"""

# $1 key prefix
_VERIFY = """
with cand as (
    select t.id from tasks t
    where t.status = 'done' and t.verified_at is null and t.commits <> '{}'
      and not exists (
          select 1 from unnest(t.commits) as c(sha)
          where not exists (
              select 1 from git_commits g join repos r on r.id = g.repo_id
              where (t.repo is null or r.name = t.repo)
                and g.sha >= (c.sha collate "C") and g.sha < ((c.sha || 'z') collate "C")))
    for update of t skip locked
),
upd as (
    update tasks t set verified_at = now(), updated_at = now()
    from cand where t.id = cand.id
    returning t.id, t.number, t.title, t.repo, t.commits, t.completed_by
),
ev as (
    insert into events (task_id, actor, kind, details)
    select id, 'git', 'verified', jsonb_build_object('commits', commits, 'repo', repo)
    from upd
),
ob as (
    insert into outbox (kind, task_id, payload)
    select 'task_verified', id,
           jsonb_build_object('key', $1::text || '-' || number, 'title', title, 'repo', repo,
                              'commits', commits, 'by', completed_by)
    from upd
)
select number from upd order by number
"""

# ------------------------------------------------------------------------- reading


@dataclass
class _Work:
    """What the thread-side read of a repo produced."""

    branch: str
    refs: dict[str, str]
    default_tip: str | None
    scan: LogScan | None = None


def _read_refs(path: str, branch: str | None) -> tuple[str, dict[str, str]]:
    refs = read_refs(path)
    return branch or detect_default_branch(path), refs


# ------------------------------------------------------------------------- the job


class Reconciler:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, *, concurrency: int = 8):
        self.pool = pool
        self.settings = settings
        self.prefix = settings.key_prefix
        self.concurrency = concurrency

    async def run(
        self,
        repos: list[str] | None = None,
        *,
        on_start: Callable[[list[str]], None] | None = None,
        on_progress: ProgressFn | None = None,
        discover_roots: bool = True,
    ) -> ReconcileSummary:
        t0 = time.perf_counter()
        summary = ReconcileSummary()
        if discover_roots and self.settings.repo_roots and not repos:
            try:
                added = await discover(self.pool, self.settings.repo_roots)
                summary.discovered = [r.name for r in added]
            except Exception as err:  # discovery must not stop reconciliation
                log.warning("repo discovery failed: %s", err)
        rows = await self.pool.fetch(
            "select id, name, path, default_branch, cursor_sha, ref_tips from repos"
            " where $1::text[] is null or name = any($1::text[]) order by name",
            repos,
        )
        if on_start:
            on_start([r["name"] for r in rows])
        emails = await self._agent_emails()
        sem = asyncio.Semaphore(self.concurrency)
        unchanged: list[int] = []

        async def one(row: asyncpg.Record) -> RepoResult:
            async with sem:
                res = await self._repo(row, emails, unchanged)
            if on_progress:
                on_progress(res)
            return res

        summary.repos = list(await asyncio.gather(*(one(r) for r in rows)))
        if unchanged:
            await self.pool.execute(
                "update repos set last_scan_at = now(), last_error = null, last_error_at = null"
                " where id = any($1::bigint[])",
                unchanged,
            )
        summary.verified = await self.verify()
        if summary.verified or summary.total("closed") or summary.total("closed_while_claimed"):
            await events.Waker(self.pool).wake()  # outbox rows were committed
        summary.seconds = time.perf_counter() - t0
        return summary

    async def verify(self) -> list[str]:
        """Mark completed tasks verified whose commits are all on the default branch."""
        rows = await self.pool.fetch(_VERIFY, self.prefix)
        return [f"{self.prefix}-{r['number']}" for r in rows]

    async def _agent_emails(self) -> dict[str, str]:
        rows = await self.pool.fetch(
            "select name, unnest(git_emails) as email from agents where revoked_at is null"
        )
        return {r["email"].lower(): r["name"] for r in rows}

    async def _repo(
        self, row: asyncpg.Record, emails: dict[str, str], unchanged: list[int]
    ) -> RepoResult:
        res = RepoResult(row["name"])
        t0 = time.perf_counter()
        try:
            branch, refs = await asyncio.to_thread(_read_refs, row["path"], row["default_branch"])
            ref = branch_ref(refs, branch)
            if ref is None:
                raise RepoGone(f"the default branch {branch!r} does not exist in {row['path']}")
            tip = refs[ref]
            if tip == row["cursor_sha"] and refs == (row["ref_tips"] or {}):
                res.status = "unchanged"
                unchanged.append(row["id"])
                return res
            for attempt in range(3):
                res.linked = res.closed = res.closed_while_claimed = res.unknown_keys = 0
                try:
                    await self._scan(row, branch, refs, tip, emails, res)
                    break
                except asyncpg.DeadlockDetectedError:
                    # two repos closing the same tasks at once; the loser reads again
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))
        except Exception as err:  # one broken repo never stops the others
            res.status, res.error = "error", _describe(err, row["path"])
            log.warning("reconcile %s: %s", row["name"], res.error)
            await self.pool.execute(
                "update repos set last_error = $2, last_error_at = now() where id = $1",
                row["id"],
                res.error,
            )
        finally:
            res.seconds = time.perf_counter() - t0
        return res

    async def _scan(
        self,
        row: asyncpg.Record,
        branch: str,
        refs: dict[str, str],
        tip: str,
        emails: dict[str, str],
        res: RepoResult,
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchrow(
                "select cursor_sha, next_pos from repos where id = $1 for update skip locked",
                row["id"],
            )
            if locked is None:
                res.status = "busy"  # another reconciler is reading this repo right now
                return
            cursor = locked["cursor_sha"]
            others = [sha for name, sha in refs.items() if sha != tip]
            scan = await asyncio.to_thread(read_log, row["path"], tip, others, cursor)
            res.commits_read = len(scan.commits)
            res.rewritten = scan.rewritten
            next_pos = locked["next_pos"]
            if scan.rewritten:
                await self._drop_rewritten(conn, row["id"], scan)
                await conn.execute(
                    "insert into events (task_id, actor, kind, details) values (null, 'git',"
                    " 'history_rewritten', $1)",
                    {"repo": row["name"], "old": cursor, "new": tip, "windowed": scan.windowed},
                )
            new_default = list(reversed(scan.default_commits))  # oldest first
            if cursor is None:  # a full scan rebuilds the repo's commits
                await conn.execute("delete from git_commits where repo_id = $1", row["id"])
            res.new_on_default = await self._store_commits(
                conn, row["id"], new_default, next_pos, direct=not scan.windowed
            )
            await self._mentions(conn, row, scan, emails, res)
            await conn.execute(
                """update repos set cursor_sha = $2, ref_tips = $3, default_branch = $4,
                       next_pos = $5, commits_seen = commits_seen + $6, last_scan_at = now(),
                       last_error = null, last_error_at = null
                   where id = $1""",
                row["id"],
                tip,
                refs,
                branch,
                next_pos + len(new_default),
                res.new_on_default,
            )

    async def _drop_rewritten(self, conn: asyncpg.Connection, repo_id: int, scan: LogScan) -> None:
        """Forget stored default-branch commits the rewritten history no longer contains:
        everything after the newest commit both histories share."""
        keep = await conn.fetchval(
            "select max(pos) from git_commits where repo_id = $1 and sha = any($2::text[])",
            repo_id,
            list(scan.boundary),
        )
        await conn.execute(
            "delete from git_commits where repo_id = $1 and ($2::bigint is null or pos > $2)",
            repo_id,
            keep,
        )

    async def _store_commits(
        self,
        conn: asyncpg.Connection,
        repo_id: int,
        commits: list[Any],
        start: int,
        *,
        direct: bool,
    ) -> int:
        """Store new default-branch commits. Outside a window rescan none of them can be
        stored already (git listed only what the cursor cannot reach), so COPY goes straight
        into the table; a window overlaps what is stored and goes through a staging table."""
        if not commits:
            return 0
        records = [
            (repo_id, c.sha, start + i, c.committed_at, c.author_email, c.subject, c.files)
            for i, c in enumerate(commits)
        ]
        if direct:
            try:
                async with conn.transaction():  # a savepoint: on a surprise, stage instead
                    await conn.copy_records_to_table("git_commits", records=records)
                return len(records)
            except asyncpg.UniqueViolationError:
                pass
        await conn.execute(
            "create temp table if not exists _ob_commits (like git_commits) on commit delete rows"
        )
        await conn.copy_records_to_table("_ob_commits", records=records)
        status = await conn.execute(
            "insert into git_commits select * from _ob_commits on conflict do nothing"
        )
        return int(status.rsplit(" ", 1)[1])

    async def _mentions(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        scan: LogScan,
        emails: dict[str, str],
        res: RepoResult,
    ) -> None:
        found: list[tuple[int, Any, bool]] = []
        for c in scan.commits:
            for number, closes in find_keys(c.message, self.prefix).items():
                found.append((number, c, closes))
        if not found:
            return
        numbers = sorted({n for n, _, _ in found})
        known = {r["number"] for r in await conn.fetch(_KNOWN, numbers)}
        res.unknown_keys = sum(1 for n, _, _ in found if n not in known)
        found = [f for f in found if f[0] in known]
        if not found:
            return

        def agent_of(c: Any) -> str | None:
            return c.agent or emails.get(c.author_email)

        links = await conn.fetch(
            _LINK,
            row["id"],
            [n for n, _, _ in found],
            [c.sha for _, c, _ in found],
            [closes for _, _, closes in found],
            [c.on_default for _, c, _ in found],
            [agent_of(c) for _, c, _ in found],
            [c.author_email for _, c, _ in found],
            [c.subject for _, c, _ in found],
            [c.committed_at for _, c, _ in found],
        )
        # one closing commit per task (the oldest new one); everything else is a link
        order = {c.sha: i for i, c in enumerate(scan.commits)}  # newest first
        closing: dict[int, asyncpg.Record] = {}
        for link in links:
            if link["closes"] and link["on_default"]:
                cur = closing.get(link["task_id"])
                if cur is None or order.get(link["sha"], 0) > order.get(cur["sha"], 0):
                    closing[link["task_id"]] = link
        closed: set[tuple[int, str]] = set()
        if closing:
            cs = sorted(closing.values(), key=lambda c: c["task_id"])
            done = await conn.fetch(
                _CLOSE,
                [c["task_id"] for c in cs],
                [c["sha"] for c in cs],
                [c["agent"] for c in cs],
                [c["author_email"] for c in cs],
                [c["subject"] for c in cs],
                row["name"],
                self.prefix,
            )
            ids = {d["id"] for d in done}
            res.closed = len(ids)
            res.closed_while_claimed = sum(1 for d in done if d["prev_status"] == "claimed")
            closed = {(c["task_id"], c["sha"]) for c in cs if c["task_id"] in ids}
        ev_ids, ev_actors, ev_details = [], [], []
        for link in links:
            if (link["task_id"], link["sha"]) in closed or not (
                link["fresh"] or (link["closes"] and link["on_default"])
            ):
                continue
            ev_ids.append(link["task_id"])
            ev_actors.append("git:" + link["agent"] if link["agent"] else "git")
            ev_details.append(
                json.dumps(
                    {
                        "sha": link["sha"],
                        "repo": row["name"],
                        "on_default_branch": link["on_default"],
                        "closes": link["closes"],
                        "agent": link["agent"],
                        "author": link["author_email"],
                        "subject": link["subject"],
                    }
                )
            )
        if ev_ids:
            await conn.execute(_LINKED_EVENTS, ev_ids, ev_actors, ev_details)
        res.linked = len(ev_ids)


def _describe(err: Exception, path: str) -> str:
    import git

    if isinstance(err, RepoGone):
        return f"{err}; fix the path with `ob repo add PATH --name NAME`"
    if isinstance(err, git.GitCommandError):
        stderr = (err.stderr or "").strip().replace("\n", " ")[:300]
        return f"git failed in {path}: {stderr or err}"
    return f"{type(err).__name__}: {str(err)[:300]}"


async def reconcile(
    pool: asyncpg.Pool, settings: Settings, repos: list[str] | None = None, **kw: Any
) -> ReconcileSummary:
    return await Reconciler(pool, settings).run(repos, **kw)


class Unverified(BaseModel):
    task: Task
    flagged: bool  # unverified for longer than OB_UNVERIFIED_DAYS
    evidence: str  # "no commits" | "commits not on the default branch yet"


async def unverified(pool: asyncpg.Pool, settings: Settings, limit: int = 200) -> list[Unverified]:
    """Done tasks git has not confirmed, oldest first."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"""select {TASK_COLUMNS}, {BLOCKED_COLUMN},
                   t.completed_at < now() - make_interval(days => $1::int) as flagged
                from {TASK_FROM}
                where t.status = 'done' and t.verified_at is null
                order by t.completed_at nulls first, t.id limit $2""",
            settings.unverified_days,
            limit,
        )
    out = []
    for r in rows:
        data = dict(r)
        flagged = bool(data.pop("flagged"))
        task = task_from_row(data, settings.key_prefix)
        out.append(
            Unverified(
                task=task,
                flagged=flagged,
                evidence="commits not on the default branch yet" if task.commits else "no commits",
            )
        )
    return out
