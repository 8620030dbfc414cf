"""Reconciliation: read each registered repository's new commits and hold the backlog to them.

Per repo: read the branch tips from the ref files (no git process) and work out the default
branch (the pinned one, else the repository's own: see refs.follow_default_branch); if nothing
moved since the last scan, stop there. Otherwise, under a row lock on the repo (two reconcilers
never read the same repo at once), in one transaction:

* the default branch: `git log --topo-order TIP --not CURSOR` (with the files each commit
  touched), streamed straight into `git_commits` with COPY; each scan's commits take a block of
  positions (POS_BLOCK), newest last, so positions keep branch order without asking git to
  count or reverse first. If the cursor is
  not an ancestor of the tip (force-push, reset, another default branch), the commits that left
  the branch are `git rev-list CURSOR --not TIP`; if the cursor object is gone altogether, the
  branch is compared with what is stored, commit by commit (`resync`);
* the other branches: only tips not seen before, `--not` the default tip and every tip seen by
  earlier scans (`repos.seen_tips`), messages only. So a scan costs what is new: a no-op reads
  nothing, one new commit reads one commit, however many unmerged branches the repo has;
* reverts: a default-branch commit that says `This reverts commit X.` marks X reverted
  (`git_commits.reverted_by`); a revert of that revert brings X back. A revert never closes a
  task; it links to the tasks it names (as a revert);
* link every commit that names a task (`commit_linked`), on any branch, in any repo; close
  tasks named by a closing reference on the default branch (`closed_by_commit` + outbox
  `task_closed_by_commit`; an agent holding the task loses its lease: `closed_while_claimed`);
  a done task without confirmed evidence is verified by such a commit (`verified`);
* evidence: a done, verified task whose commits were reverted or left the default branch
  loses its verification (it stays done, and shows among the unverified completions):
  `evidence_lost` event + outbox row. It is verified again when git shows the evidence again
  (the commits come back, the revert is reverted, or a new closing commit lands);
* plan bases that left the branch get a `plan_base_lost` event (the drift says so, too);
* move the cursor, remember the tips.

`task_commits`' primary key makes linking idempotent. A failing repo (path gone, branch gone,
git error) gets `last_error` and is skipped; the others go on. Afterwards completed tasks whose
commits are all on their repo's default branch, and not reverted, become verified.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from core import events
from core.backlog import Backlog
from core.deps import announce_unblocked
from core.git.gitlog import (
    Commit,
    GitError,
    agent_trailer,
    log_args,
    rev_list,
    reverted_shas,
    stream_log,
)
from core.git.keys import find_keys
from core.git.refs import BranchGone, RepoGone, scanned_branch
from core.git.repos import SkippedFolder, discover_repos
from core.git.reverts import Reverts
from core.models import EventKind, OutboxKind, Task, format_key
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

POS_BLOCK = 1 << 32  # positions per scan: more than any one read can return
MAX_SEEN_TIPS = 10_000  # tips remembered per repo (older ones may be read again, harmlessly)
GIT_COMMIT_COLUMNS = [
    "repo_id",
    "sha",
    "pos",
    "committed_at",
    "author_email",
    "subject",
    "files",
    "reverts",
]


@dataclass
class RepoResult:
    name: str
    status: str = "ok"  # ok | unchanged | busy | error
    branch: str | None = None
    branch_changed_from: str | None = None  # the default branch moved from this one
    commits_read: int = 0  # commits git handed over, default branch and other branches
    new_on_default: int = 0
    left_default: int = 0  # stored default-branch commits no longer on the branch
    reverts: int = 0  # new revert commits on the default branch
    linked: int = 0
    closed: int = 0
    closed_while_claimed: int = 0
    reverified: int = 0  # done tasks a closing commit verified (again)
    evidence_lost: int = 0
    unknown_keys: int = 0
    rewritten: bool = False
    resynced: bool = False  # the old cursor was gone: compared with git commit by commit
    error: str | None = None
    seconds: float = 0.0


@dataclass
class ReconcileSummary:
    repos: list[RepoResult] = field(default_factory=list)
    discovered: list[str] = field(default_factory=list)
    skipped: list[SkippedFolder] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def total(self, attr: str) -> int:
        return sum(getattr(r, attr) for r in self.repos)

    @property
    def commits_read(self) -> int:
        return self.total("commits_read")

    @property
    def errors(self) -> list[RepoResult]:
        return [r for r in self.repos if r.error]


ProgressFn = Callable[[RepoResult], None]

# ---------------------------------------------------------------------------- SQL

_KNOWN = "select number from tasks where number = any($1::bigint[])"

_LINK = """
with m as (
    select * from unnest($2::bigint[], $3::text[], $4::bool[], $5::bool[], $6::text[],
                         $7::text[], $8::text[], $9::timestamptz[], $10::text[])
        as m(number, sha, closes, on_default, agent, author_email, subject, committed_at, reverts)
)
insert into task_commits as tc (task_id, repo_id, sha, closes, on_default, agent, author_email,
                                subject, committed_at, reverts)
select t.id, $1, m.sha, m.closes, m.on_default, m.agent, m.author_email, m.subject,
       m.committed_at, string_to_array(m.reverts, ',')
from m join tasks t on t.number = m.number
on conflict (task_id, repo_id, sha) do update
    set on_default = true, closes = excluded.closes
    where not tc.on_default and excluded.on_default
returning tc.task_id, tc.sha, tc.closes, tc.on_default, tc.agent, tc.author_email, tc.subject,
          tc.reverts, (xmax = 0) as fresh
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
        evidence_lost = null,
        status_at = now(),
        updated_at = now()
    from c join prev p on p.id = c.task_id
    where t.id = c.task_id
    returning t.id, t.number, t.title, p.status as prev_status, p.holder, p.epoch as prev_epoch,
              c.sha, c.agent, c.author_email, c.subject
),
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
),
ob as (
    insert into outbox (kind, task_id, payload)
    select 'task_closed_by_commit', u.id,
           jsonb_build_object('key', task_key($7, u.number), 'title', u.title, 'sha', u.sha,
                              'repo', $6::text, 'agent', u.agent, 'author', u.author_email,
                              'subject', u.subject, 'held_by', u.holder,
                              'text', 'closed by commit ' || left(u.sha, 7) || ' in ' || $6::text
                                      || coalesce(', by ' || u.agent, ''))
    from upd u
    union all
    select 'closed_while_claimed', u.id,
           jsonb_build_object('key', task_key($7, u.number), 'title', u.title,
                              'holder', u.holder, 'sha', u.sha, 'repo', $6::text)
    from upd u where u.prev_status = 'claimed'
)
select id, prev_status from upd
"""

# A done task git has not confirmed (an agent's commits not on the branch, no commits, or
# evidence lost): a closing commit on the default branch becomes its evidence.
# $1 task ids, $2 shas, $3 agents, $4 subjects, $5 repo, $6 key prefix
_REVERIFY = """
with c as (
    select * from unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
        as c(task_id, sha, agent, subject)
),
prev as (
    select t.id, t.commits from tasks t join c on c.task_id = t.id
    where t.status = 'done' and t.verified_at is null
    order by t.id
    for no key update of t
),
upd as (
    update tasks t set commits = array[c.sha], verified_at = now(), evidence_lost = null,
                       updated_at = now()
    from c join prev p on p.id = c.task_id
    where t.id = c.task_id
    returning t.id, t.number, t.title, t.repo, t.completed_by, p.commits as before, c.sha,
              c.agent, c.subject
),
ev as (
    insert into events (task_id, actor, kind, details)
    select id, case when agent is null then 'git' else 'git:' || agent end, 'verified',
           jsonb_build_object('commits', array[sha], 'repo', $5::text, 'closing_commit', sha,
                              'subject', subject, 'replaced', before)
    from upd
),
ob as (
    insert into outbox (kind, task_id, payload)
    select 'task_verified', id,
           jsonb_build_object('key', task_key($6, number), 'title', title, 'repo', $5::text,
                              'commits', array[sha], 'by', completed_by, 'replaced', before)
    from upd
)
select id from upd
"""

_LINKED_EVENTS = """
insert into events (task_id, actor, kind, details)
select task_id, actor, 'commit_linked', details::jsonb
from unnest($1::bigint[], $2::text[], $3::text[]) as e(task_id, actor, details)
"""

# a stored default-branch commit matching a SHA or prefix c.sha, in the task's repo (any repo
# for a task without one), whose change is still on the branch (not reverted)
_LIVE = """
exists (select 1 from git_commits g join repos r on r.id = g.repo_id
        where (t.repo is null or r.name = t.repo)
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
           jsonb_build_object('key', task_key($1, number), 'title', title, 'repo', repo,
                              'commits', commits, 'by', completed_by)
    from upd
)
select number from upd order by number
"""

# Done, verified tasks with a commit among $1 (SHAs that left the branch or were reverted),
# and for each of their commits: still live? reverted by what (in repo $2)?
# Done, verified tasks of repo $3 (or of none) with a commit among $1 (SHAs that left the
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
      and (t.repo is null or t.repo = $3)
),
t as (
    select t.id, t.number, t.title, t.repo, t.commits, t.completed_by
    from tasks t where t.id in (select id from hit)
    order by t.id
    for no key update of t
)
select t.id, t.number, t.title, t.completed_by, c.sha, {_LIVE} as live,
       (select g.reverted_by from git_commits g
        where g.repo_id = $2 and g.sha >= (c.sha collate "C")
          and g.sha < ((c.sha || 'z') collate "C") and g.reverted_by is not null
        limit 1) as reverted_by
from t cross join lateral unnest(t.commits) with ordinality as c(sha, ord)
order by t.id, c.ord
"""

# $1 task ids, $2 evidence_lost details (json), $3 payloads (json)
_LOSE = """
with l as (
    select * from unnest($1::bigint[], $2::text[], $3::text[]) as l(task_id, details, payload)
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
select 'evidence_lost', l.task_id, l.payload::jsonb from l join upd on upd.id = l.task_id
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

_UPDATE_REPO = """
update repos set cursor_sha = $2, ref_tips = $3, default_branch = $4, next_pos = $5,
       commits_seen = $6, seen_tips = $7, last_scan_at = now(), last_error = null,
       last_error_at = null
where id = $1
"""

# ------------------------------------------------------------------------- scanning


@dataclass(slots=True)
class _Mention:
    number: int
    closes: bool
    sha: str
    on_default: bool
    seq: int  # default branch: git's order, newest first (a larger seq is older)
    agent: str | None
    author_email: str
    subject: str
    committed_at: datetime
    reverts: list[str] | None


@dataclass
class _ScanState:
    """What one scan of a repo collected from the commits git handed over."""

    prefix: str
    cursor: str | None
    seen: set[str]
    mentions: list[_Mention] = field(default_factory=list)
    reverts: list[tuple[str, list[str]]] = field(default_factory=list)  # default, newest first
    cursor_is_parent: bool = False
    merged_tips: set[str] = field(default_factory=set)  # seen tips now on the default branch
    read: int = 0
    seq: int = 0

    def __post_init__(self) -> None:
        self.key_mark = f"{self.prefix.lower()}-"  # no key without it

    def see(self, c: Commit, on_default: bool) -> list[str] | None:
        """Collect what matters of one commit; returns the SHAs it reverts (or None)."""
        self.read += 1
        if on_default:
            self.seq += 1
            if c.sha in self.seen:
                self.merged_tips.add(c.sha)
            if self.cursor is not None and self.cursor in c.parents:
                self.cursor_is_parent = True
        low = c.message.lower()
        if not (self.key_mark in low or "revert" in low or "reapply" in low):
            return None  # most commits: nothing more to do
        reverts = reverted_shas(c.message)
        if on_default and reverts:
            self.reverts.append((c.sha, reverts))
        keys = find_keys(c.message, self.prefix)
        if keys:
            agent = agent_trailer(c.message)
            for number, closes in keys.items():
                self.mentions.append(
                    _Mention(
                        number=number,
                        closes=closes and reverts is None,
                        sha=c.sha,
                        on_default=on_default,
                        seq=self.seq,
                        agent=agent,
                        author_email=c.author_email,
                        subject=c.subject,
                        committed_at=c.committed_at,
                        reverts=reverts,
                    )
                )
        return reverts


# ------------------------------------------------------------------------- the job


class Reconciler:
    def __init__(self, backlog: Backlog, *, concurrency: int = 8):
        self.backlog = backlog
        self.pool = backlog.pool
        self.settings = backlog.settings
        self.prefix = backlog.prefix
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
        if discover_roots and not repos:
            try:
                found = await discover_repos(self.backlog, self.settings.repo_roots)
                summary.discovered = [r.name for r in found.added]
                summary.skipped = found.skipped
            except Exception as err:  # discovery must not stop reconciliation
                log.warning("repo discovery failed: %s", err)
                summary.skipped = [
                    SkippedFolder(
                        path=", ".join(map(str, self.settings.repo_roots)),
                        reason=f"discovery failed: {type(err).__name__}: {err}"[:500],
                    )
                ]
        rows = await self.pool.fetch(
            "select id, name, path, default_branch, branch_pinned, cursor_sha, ref_tips"
            " from repos where $1::text[] is null or name = any($1::text[]) order by name",
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
        if summary.total("closed"):  # after the commits: tasks the closed ones made ready
            await announce_unblocked(self.pool, self.prefix, None)
        if (
            summary.verified
            or any(
                summary.total(a)
                for a in ("closed", "closed_while_claimed", "reverified", "evidence_lost")
            )
            or any(r.branch_changed_from for r in summary.repos)
        ):
            await self.backlog.wake()  # outbox rows were committed
        summary.seconds = time.perf_counter() - t0
        return summary

    async def unverified(self, limit: int = 200) -> UnverifiedReport:
        """Done tasks git has not confirmed yet (`ob list --unverified`)."""
        async with self.pool.acquire() as conn:
            return await unverified_report(conn, self.settings, limit)

    async def verify(self) -> list[str]:
        """Mark completed tasks verified whose commits are all on the default branch (and not
        reverted there)."""
        rows = await self.pool.fetch(_VERIFY, self.prefix)
        return [format_key(self.prefix, r["number"]) for r in rows]

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
            branch, refs, tip = await asyncio.to_thread(
                scanned_branch, row["path"], row["default_branch"], row["branch_pinned"]
            )
            res.branch = branch
            if (
                tip == row["cursor_sha"]
                and refs == (row["ref_tips"] or {})
                and branch == row["default_branch"]
            ):
                res.status = "unchanged"
                unchanged.append(row["id"])
                return res
            for attempt in range(3):
                try:
                    await self._scan(row, branch, refs, tip, emails, res)
                    break
                except asyncpg.DeadlockDetectedError:
                    # two repos closing the same tasks at once; the loser reads again
                    if attempt == 2:
                        raise
                    res = RepoResult(row["name"], branch=branch)
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
        repo_id, name, path = row["id"], row["name"], row["path"]
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchrow(
                "select cursor_sha, next_pos, commits_seen, seen_tips, default_branch from repos"
                " where id = $1 for update skip locked",
                repo_id,
            )
            if locked is None:
                res.status = "busy"  # another reconciler is reading this repo right now
                return
            cursor: str | None = locked["cursor_sha"]
            seen = list(locked["seen_tips"] or [])
            st = _ScanState(self.prefix, cursor, set(seen))
            old_branch = locked["default_branch"]
            if old_branch and old_branch != branch:
                res.branch_changed_from = old_branch
                await events.record(
                    conn,
                    None,
                    "git",
                    EventKind.DEFAULT_BRANCH_CHANGED,
                    {"repo": name, "from": old_branch, "to": branch, "path": path},
                    notify=OutboxKind.DEFAULT_BRANCH_CHANGED,
                    payload={
                        "repo": name,
                        "from": old_branch,
                        "to": branch,
                        "path": path,
                        "text": f"{name}: the default branch is now {branch} (was {old_branch})",
                    },
                )

            # 1. the default branch
            next_pos, commits_seen = locked["next_pos"], locked["commits_seen"]
            dropped: list[str] = []
            if cursor is None:
                await conn.execute("delete from git_commits where repo_id = $1", repo_id)
                res.new_on_default = await self._store_default(
                    conn, repo_id, path, [tip], next_pos, st
                )
                commits_seen = res.new_on_default
            elif tip != cursor:
                try:
                    res.new_on_default = await self._store_default(
                        conn, repo_id, path, [tip, "--not", cursor], next_pos, st
                    )
                    if not st.cursor_is_parent:  # the cursor is not an ancestor of the tip
                        res.rewritten = True
                        dropped = await asyncio.to_thread(rev_list, path, cursor, "--not", tip)
                except GitError as err:
                    if not err.missing_object:
                        raise
                    st = _ScanState(self.prefix, cursor, set(seen))
                    res.rewritten = res.resynced = True
                    res.new_on_default, dropped = await self._resync(
                        conn, repo_id, path, tip, next_pos, st
                    )
                if dropped:
                    status = await conn.execute(
                        "delete from git_commits where repo_id = $1 and sha = any($2::text[])",
                        repo_id,
                        dropped,
                    )
                    res.left_default = int(status.rsplit(" ", 1)[1])
                    await conn.execute(
                        "update task_commits set on_default = false"
                        " where repo_id = $1 and sha = any($2::text[]) and on_default",
                        repo_id,
                        dropped,
                    )
                commits_seen = commits_seen - res.left_default + res.new_on_default
            if res.new_on_default:
                next_pos += POS_BLOCK

            # 2. the other branches: tips not seen before, minus everything read already
            fresh = sorted({sha for sha in refs.values() if sha != tip and sha not in st.seen})
            if fresh:
                negatives = sorted(({tip, *st.seen} | ({cursor} if cursor else set())) - set(fresh))
                args = [
                    *log_args(files=False),
                    "--ignore-missing",
                    *fresh,
                    *(f"^{s}" for s in negatives),
                ]
                async for batch in stream_log(path, args):
                    for c in batch:
                        st.see(c, on_default=False)

            # 3. reverts, links, closes, evidence, plan bases
            rv = Reverts(conn, repo_id)
            if dropped:
                await rv.apply_dropped(dropped)
            if st.reverts:
                res.reverts = len(st.reverts)
                await rv.apply_new(list(reversed(st.reverts)))  # oldest first
            await rv.flush()
            await self._mentions(conn, row, st, rv.killed, emails, res)
            suspects = sorted(set(dropped) | rv.killed)
            if suspects:
                res.evidence_lost = await self._evidence(conn, repo_id, name, branch, suspects)
            if dropped:
                await conn.execute(_BASES_LOST, name, branch, dropped)
            if res.rewritten:  # commits left the branch, or it was reset to an ancestor
                rewrite: dict[str, Any] = {
                    "repo": name,
                    "branch": branch,
                    "old": cursor,
                    "new": tip,
                    "left_default": res.left_default,
                    "resynced": res.resynced,
                }
                if dropped:
                    rewrite["left_shas"] = dropped[:50]
                await events.record(conn, None, "git", EventKind.HISTORY_REWRITTEN, rewrite)

            # 4. the cursor and the tips
            tips = sorted(set(refs.values()) - {tip})
            keep = [s for s in seen if s not in st.merged_tips and s != tip]
            if res.rewritten and cursor:
                keep.insert(0, cursor)  # everything it reaches was read
            new_seen = list(dict.fromkeys([*tips, *keep]))[:MAX_SEEN_TIPS]
            res.commits_read = st.read
            await conn.execute(
                _UPDATE_REPO,
                repo_id,
                tip,
                refs,
                branch,
                next_pos,
                commits_seen,
                new_seen,
            )

    async def _store_default(
        self,
        conn: asyncpg.Connection,
        repo_id: int,
        path: str,
        revs: list[str],
        start: int,
        st: _ScanState,
        *,
        stdin: bytes | None = None,
    ) -> int:
        """Stream the default branch's new commits (newest first) into git_commits, at
        positions start + POS_BLOCK - 1 downwards. None of them can be stored already (git lists
        only what the cursor cannot reach), so COPY goes straight into the table; if one is (a
        state older versions of ob could leave), the read is repeated through a staging
        table."""
        args = [*log_args(files=True, topo=stdin is None), *revs]
        try:
            async with conn.transaction():  # a savepoint
                return await self._copy(conn, repo_id, path, args, start, st, "git_commits", stdin)
        except asyncpg.UniqueViolationError:
            pass
        st.mentions.clear()
        st.reverts.clear()
        st.merged_tips.clear()
        st.read = st.seq = 0
        st.cursor_is_parent = False
        await conn.execute(
            "create temp table if not exists _ob_commits (like git_commits) on commit delete rows"
        )
        await self._copy(conn, repo_id, path, args, start, st, "_ob_commits", stdin)
        status = await conn.execute(
            "insert into git_commits select * from _ob_commits on conflict do nothing"
        )
        await conn.execute("delete from _ob_commits")
        return int(status.rsplit(" ", 1)[1])

    async def _copy(
        self,
        conn: asyncpg.Connection,
        repo_id: int,
        path: str,
        args: list[str],
        start: int,
        st: _ScanState,
        table: str,
        stdin: bytes | None,
    ) -> int:
        count = 0
        top = start + POS_BLOCK - 1
        stream = stream_log(path, args, stdin=stdin)

        async def records() -> AsyncIterator[tuple[Any, ...]]:
            nonlocal count
            async for batch in stream:
                for c in batch:
                    reverts = st.see(c, on_default=True)
                    yield (
                        repo_id,
                        c.sha,
                        top - count,
                        c.committed_at,
                        c.author_email,
                        c.subject,
                        c.file_lines,
                        reverts,
                    )
                    count += 1

        try:
            await conn.copy_records_to_table(table, records=records(), columns=GIT_COMMIT_COLUMNS)
        finally:
            await stream.aclose()  # a failed COPY stops git at once
        return count

    async def _resync(
        self,
        conn: asyncpg.Connection,
        repo_id: int,
        path: str,
        tip: str,
        start: int,
        st: _ScanState,
    ) -> tuple[int, list[str]]:
        """The old cursor object is gone (rewritten, then garbage-collected): compare the
        branch with what is stored; read the commits that are new, drop those that left."""
        on_branch = await asyncio.to_thread(rev_list, path, "--topo-order", tip)
        stored = {
            r["sha"]
            for r in await conn.fetch("select sha from git_commits where repo_id = $1", repo_id)
        }
        members = set(on_branch)
        dropped = sorted(s for s in stored if s not in members)
        new = [s for s in on_branch if s not in stored]
        if not new:
            return 0, dropped
        stdin = "".join(f"{s}\n" for s in new).encode()
        n = await self._store_default(
            conn, repo_id, path, ["--no-walk=unsorted", "--stdin"], start, st, stdin=stdin
        )
        return n, dropped

    async def _mentions(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        st: _ScanState,
        reverted: set[str],
        emails: dict[str, str],
        res: RepoResult,
    ) -> None:
        found = st.mentions
        if not found:
            return
        numbers = sorted({m.number for m in found})
        known = {r["number"] for r in await conn.fetch(_KNOWN, numbers)}
        res.unknown_keys = sum(1 for m in found if m.number not in known)
        found = [m for m in found if m.number in known]
        if not found:
            return
        links = await conn.fetch(
            _LINK,
            row["id"],
            [m.number for m in found],
            [m.sha for m in found],
            [m.closes for m in found],
            [m.on_default for m in found],
            [m.agent or emails.get(m.author_email) for m in found],
            [m.author_email for m in found],
            [m.subject for m in found],
            [m.committed_at for m in found],
            [",".join(m.reverts) if m.reverts is not None else None for m in found],
        )
        # one closing commit per task (the oldest new one whose change is still on the
        # branch); everything else is a link
        seq = {m.sha: m.seq for m in found if m.on_default}
        closing: dict[int, asyncpg.Record] = {}
        for link in links:
            if link["closes"] and link["on_default"] and link["sha"] not in reverted:
                cur = closing.get(link["task_id"])
                if cur is None or seq.get(link["sha"], 0) > seq.get(cur["sha"], 0):
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
            rest = [c for c in cs if c["task_id"] not in ids]
            again: set[int] = set()
            if rest:
                again = {
                    r["id"]
                    for r in await conn.fetch(
                        _REVERIFY,
                        [c["task_id"] for c in rest],
                        [c["sha"] for c in rest],
                        [c["agent"] for c in rest],
                        [c["subject"] for c in rest],
                        row["name"],
                        self.prefix,
                    )
                }
                res.reverified = len(again)
            closed = {(c["task_id"], c["sha"]) for c in cs if c["task_id"] in ids | again}
        ev_ids, ev_actors, ev_details = [], [], []
        for link in links:
            if (link["task_id"], link["sha"]) in closed or not (
                link["fresh"] or (link["closes"] and link["on_default"])
            ):
                continue
            ev_ids.append(link["task_id"])
            ev_actors.append("git:" + link["agent"] if link["agent"] else "git")
            details: dict[str, Any] = {
                "sha": link["sha"],
                "repo": row["name"],
                "on_default_branch": link["on_default"],
                "closes": link["closes"],
                "agent": link["agent"],
                "author": link["author_email"],
                "subject": link["subject"],
            }
            if link["reverts"] is not None:
                details["revert"] = True
                details["reverts"] = list(link["reverts"])
            if link["sha"] in reverted:
                details["reverted"] = True
            ev_details.append(json.dumps(details))
        if ev_ids:
            await conn.execute(_LINKED_EVENTS, ev_ids, ev_actors, ev_details)
        res.linked = len(ev_ids)

    async def _evidence(
        self,
        conn: asyncpg.Connection,
        repo_id: int,
        repo: str,
        branch: str,
        suspects: list[str],
    ) -> int:
        """Done, verified tasks whose evidence was reverted or left the branch lose their
        verification: `evidence_lost` event and outbox row, in this transaction."""
        rows = await conn.fetch(_EVIDENCE, suspects, repo_id, repo)
        tasks: dict[int, dict[str, Any]] = {}
        for r in rows:
            t = tasks.setdefault(
                r["id"],
                {
                    "number": r["number"],
                    "title": r["title"],
                    "completed_by": r["completed_by"] or "",
                    "lost": [],
                },
            )
            if not r["live"]:
                t["lost"].append((r["sha"], r["reverted_by"]))
        ids, details, payloads = [], [], []
        for task_id, t in tasks.items():
            if not t["lost"]:
                continue
            shas = [sha for sha, _ in t["lost"]]
            reverted_by: str | None = next((by for _, by in t["lost"] if by), None)
            reason = "reverted" if reverted_by else "left_default_branch"
            key = format_key(self.prefix, t["number"])
            what = "closing commit" if t["completed_by"].startswith("git:") else "commit"
            what += "s" if len(shas) > 1 else ""
            short = ", ".join(s[:7] for s in shas[:5])
            if reverted_by:
                text = f"{key}'s {what} {short} was reverted on {branch} by {reverted_by[:7]}"
            else:
                text = f"{key}'s {what} {short} left {branch} (history rewritten)"
            d = {
                "repo": repo,
                "branch": branch,
                "reason": reason,
                "commits": shas,
                "reverted_by": reverted_by,
            }
            ids.append(task_id)
            details.append(json.dumps(d))
            payloads.append(
                json.dumps(
                    {
                        "key": key,
                        "title": t["title"],
                        **d,
                        "status": "done",
                        "verified": False,
                        "text": text + "; it is done but no longer verified",
                    }
                )
            )
        if ids:
            await conn.execute(_LOSE, ids, details, payloads)
        return len(ids)


def _describe(err: Exception, path: str) -> str:
    if isinstance(err, BranchGone):
        return str(err)
    if isinstance(err, RepoGone):
        return f"{err}; fix the path with `ob repo add PATH --name NAME`"
    if isinstance(err, GitError):
        return f"git failed in {path}: {err.stderr.replace(chr(10), ' ')[:300] or err}"
    return f"{type(err).__name__}: {str(err)[:300]}"


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
