"""Reconciliation: read each registered repository's new commits and hold the backlog to them.

Per repo: read the branch tips from the ref files (no git process) and work out the default
branch (the pinned one, else the repository's own: see refs.follow_default_branch); if nothing
moved since the last scan, stop there. Otherwise, under a row lock on the repo (two reconcilers
never read the same repo at once), in one transaction:

1. the default branch's new commits into `git_commits` (scan.py); if the cursor is not an
   ancestor of the tip (force-push, reset, another default branch), the commits that left the
   branch are `git rev-list CURSOR --not TIP`;
2. the other branches' new commits, messages only (scan.py);
3. reverts (reverts.py), links and closes (closing.py), evidence that was reverted or left the
   branch, plan bases that left it (evidence.py);
4. move the cursor, remember the tips.

A failing repo (path gone, branch gone, git error) gets `last_error` and is skipped; the others
go on. Afterwards completed tasks whose commits are all on their repo's default branch, and not
reverted, become verified (evidence.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import asyncpg

from core import events
from core.backlog import Backlog
from core.deps import announce_unblocked
from core.git.closing import link_and_close
from core.git.evidence import UnverifiedReport, bases_lost, lose_evidence, unverified_report, verify
from core.git.fetch import fetch_remote
from core.git.gitlog import GitError
from core.git.refs import BranchGone, RepoGone, shallow_commits
from core.git.remotes import Scanned, default_remote, read_default_branch
from core.git.repos import Repos, SkippedFolder
from core.git.reverts import Reverts
from core.git.scan import POS_BLOCK, ScanState, read_default, read_other_branches
from core.models import EventKind, OutboxKind
from core.notices import DefaultBranchChanged
from core.service import Service

log = logging.getLogger(__name__)

MAX_SEEN_TIPS = 10_000  # tips remembered per repo (older ones may be read again, harmlessly)


@dataclass
class RepoResult:
    name: str
    status: str = "ok"  # ok | unchanged | empty | busy | error
    branch: str | None = None
    branch_changed_from: str | None = None  # the default branch moved from this one
    fetched: bool = False  # its remote was fetched (fetch_error says why not, when it failed)
    fetch_error: str | None = None
    commits_read: int = 0  # commits git handed over, default branch and other branches
    new_on_default: int = 0
    left_default: int = 0  # stored default-branch commits no longer on the branch
    reverts: int = 0  # new revert commits on the default branch
    linked: int = 0
    closed: int = 0
    closed_while_claimed: int = 0
    reverified: int = 0  # done tasks a closing commit verified (again)
    asked: int = 0  # another repo's tasks its commits say they close: the operator is asked
    evidence_lost: int = 0
    unknown_keys: int = 0
    rewritten: bool = False
    resynced: bool = False  # the old cursor was gone: compared with git commit by commit
    deepened: bool = False  # a shallow clone got more history: the branch was read again
    error: str | None = None
    seconds: float = 0.0

    def restart(self) -> None:
        """Forget the counts of a scan that was rolled back (the fetch's outcome stays)."""
        keep = {"name", "branch", "fetched", "fetch_error", "deepened"}
        for f in fields(self):
            if f.name not in keep:
                setattr(self, f.name, f.default)


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

    @property
    def fetch_errors(self) -> list[RepoResult]:
        return [r for r in self.repos if r.fetch_error]


ProgressFn = Callable[[RepoResult], None]

_REPOS = """
select id, name, path, default_branch, branch_pinned, cursor_sha, ref_tips, fetch_enabled,
       remote, remote_url, shallow
from repos where $1::text[] is null or name = any($1::text[]) order by name
"""

# $2-$4 the remote (name, url, normalised url); $5 fetched; $6 why a fetch failed
_FETCHED = """
update repos set remote = $2, remote_url = $3, remote_key = $4,
    last_fetch_at = case when $5 then now() else last_fetch_at end,
    fetch_error = case when $5 then null else coalesce($6, fetch_error) end,
    fetch_error_at = case when $5 then null when $6::text is not null then now()
                          else fetch_error_at end
where id = $1
"""

_UPDATE_REPO = """
update repos set cursor_sha = $2, ref_tips = $3, default_branch = $4, next_pos = $5,
       commits_seen = $6, seen_tips = $7, shallow = $8, last_scan_at = now(), last_error = null,
       last_error_at = null
where id = $1
"""

# A scheduled round is run by the process that claims it: none ran in the last $2 seconds.
_CLAIM_ROUND = """
insert into scheduled_rounds as r (name, worker, started_at) values ($1, $3, now())
on conflict (name) do update set worker = excluded.worker, started_at = now()
    where r.started_at < now() - make_interval(secs => $2)
returning worker
"""

REPO_LOCK = 0x0B_61_7  # pg_advisory_lock(REPO_LOCK, repo id): one process fetches and reads it
LOCK_POLL = 0.1  # seconds between tries of a caller that waits for a repo's lock


# ------------------------------------------------------------------------- the job


class Reconciler(Service):
    """Fetches and reads the registered repositories (`fetch_concurrency` at a time, each under
    its advisory lock, so two `ob serve` processes never fetch or read the same repo at once)
    and holds the backlog to what git says."""

    def __init__(self, backlog: Backlog, *, concurrency: int | None = None):
        super().__init__(backlog)
        self.concurrency = concurrency or self.settings.fetch_concurrency

    async def scheduled(self, worker: str, round_seconds: float) -> ReconcileSummary | None:
        """A scheduled round, run only if no process ran one in the last `round_seconds` (with
        several `ob serve` processes, one of them runs each round); None when another did."""
        claimed = await self.pool.fetchval(_CLAIM_ROUND, "reconcile", round_seconds, worker)
        return None if claimed is None else await self.run()

    async def run(
        self,
        repos: list[str] | None = None,
        *,
        fetch: bool = True,
        wait: bool = False,
        on_start: Callable[[list[str]], None] | None = None,
        on_progress: ProgressFn | None = None,
        discover_roots: bool = True,
    ) -> ReconcileSummary:
        """Fetch (unless `fetch` is False, or a repo opted out) and read every repo, or the
        named ones. A repo another process is working on is skipped ("busy"), or with `wait`
        (a forge's push webhook: this push must be read) waited for."""
        t0 = time.perf_counter()
        summary = ReconcileSummary()
        if discover_roots and not repos:
            try:
                found = await Repos(self.backlog).discover(self.settings.repo_roots)
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
        rows = await self.pool.fetch(_REPOS, repos)
        if on_start:
            on_start([r["name"] for r in rows])
        emails = await self._agent_emails()
        sem = asyncio.Semaphore(self.concurrency)
        unchanged: list[int] = []

        async def one(row: asyncpg.Record) -> RepoResult:
            async with sem:
                res = await self._repo(row, emails, unchanged, fetch=fetch, wait=wait)
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
                for a in ("closed", "closed_while_claimed", "reverified", "evidence_lost", "asked")
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
        return await verify(self.pool, self.prefix)

    async def _agent_emails(self) -> dict[str, str]:
        rows = await self.pool.fetch(
            "select name, unnest(git_emails) as email from agents where revoked_at is null"
        )
        return {r["email"].lower(): r["name"] for r in rows}

    async def _repo(
        self,
        row: asyncpg.Record,
        emails: dict[str, str],
        unchanged: list[int],
        *,
        fetch: bool,
        wait: bool,
    ) -> RepoResult:
        res = RepoResult(row["name"])
        t0 = time.perf_counter()
        try:
            async with self._locked(row["id"], wait) as conn:
                if conn is None:
                    res.status = "busy"  # another process is fetching or reading it right now
                    return res
                if fetch and row["fetch_enabled"]:
                    await self._fetch(conn, row, res)
                await self._read(conn, row, emails, unchanged, res)
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

    @asynccontextmanager
    async def _locked(self, repo_id: int, wait: bool) -> AsyncIterator[asyncpg.Connection | None]:
        """A connection holding the repo's advisory lock, or None when another process holds
        it. A waiting caller tries again (without holding a connection meanwhile) until a fetch
        and a scan could have finished twice over."""
        deadline = time.monotonic() + 2 * self.settings.fetch_timeout + 60
        while True:
            async with self.pool.acquire() as conn:
                if await conn.fetchval("select pg_try_advisory_lock($1, $2)", REPO_LOCK, repo_id):
                    try:
                        yield conn
                    finally:
                        await conn.execute("select pg_advisory_unlock($1, $2)", REPO_LOCK, repo_id)
                    return
            if not wait or time.monotonic() > deadline:
                yield None
                return
            await asyncio.sleep(LOCK_POLL)

    async def _fetch(self, conn: asyncpg.Connection, row: asyncpg.Record, res: RepoResult) -> None:
        """Fetch the default branch's remote; a failure is recorded (reason, time) and the repo
        is read as it is."""
        remote = await asyncio.to_thread(default_remote, row["path"], row["default_branch"])
        if remote is None:
            return
        outcome = await fetch_remote(row["path"], remote.name, self.settings.fetch_timeout)
        res.fetched, res.fetch_error = outcome.ok, outcome.error
        if outcome.error:
            log.warning("fetch %s: %s", row["name"], outcome.error)
        await conn.execute(
            _FETCHED, row["id"], remote.name, remote.url, remote.key, outcome.ok, outcome.error
        )

    async def _read(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        emails: dict[str, str],
        unchanged: list[int],
        res: RepoResult,
    ) -> None:
        """Read the repo's refs; scan it unless nothing moved since the last scan."""

        def look() -> tuple[Scanned, list[str]]:
            now = read_default_branch(row["path"], row["default_branch"], row["branch_pinned"])
            return now, shallow_commits(row["path"])

        now, shallow = await asyncio.to_thread(look)
        res.branch = now.branch
        name, url, key = now.remote if now.remote else (None, None, None)
        if not res.fetched and (name, url) != (row["remote"], row["remote_url"]):
            await conn.execute(_FETCHED, row["id"], name, url, key, False, None)
        if now.tip is None:
            res.status = "empty"  # an empty repository: its first commit will be read
            unchanged.append(row["id"])
            return
        res.deepened = bool(set(row["shallow"]) - set(shallow))
        if (
            now.tip == row["cursor_sha"]
            and now.refs == (row["ref_tips"] or {})
            and now.branch == row["default_branch"]
            and shallow == list(row["shallow"])
        ):
            res.status = "unchanged"
            unchanged.append(row["id"])
            return
        for attempt in range(3):
            try:
                await self._scan(conn, row, now, shallow, emails, res)
                return
            except asyncpg.DeadlockDetectedError:
                # two repos closing the same tasks at once; the loser reads again
                if attempt == 2:
                    raise
                res.restart()
                await asyncio.sleep(0.05 * (attempt + 1))

    async def _scan(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        now: Scanned,
        shallow: list[str],
        emails: dict[str, str],
        res: RepoResult,
    ) -> None:
        repo_id, name, path = row["id"], row["name"], row["path"]
        branch, refs, tip = now.branch, now.refs, now.tip
        assert tip is not None  # an empty repository is not scanned
        async with conn.transaction():
            locked = await conn.fetchrow(
                "select cursor_sha, next_pos, commits_seen, seen_tips, default_branch from repos"
                " where id = $1 for update skip locked",
                repo_id,
            )
            if locked is None:
                res.status = "busy"  # another reconciler is reading this repo right now
                return
            # a deepened shallow clone is read again in full: its new history is older than
            # everything stored (the commit count then matches `git rev-list --count`)
            cursor: str | None = None if res.deepened else locked["cursor_sha"]
            seen = list(locked["seen_tips"] or [])
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
                    payload=DefaultBranchChanged(
                        repo=name, from_branch=old_branch, to_branch=branch
                    ),
                )

            # 1. the default branch
            st = ScanState(self.prefix, cursor, set(seen))
            st, read = await read_default(conn, repo_id, path, tip, locked["next_pos"], st)
            res.new_on_default, res.left_default = read.new, read.left
            res.rewritten, res.resynced, dropped = read.rewritten, read.resynced, read.dropped
            if cursor is None:
                commits_seen = read.new
            else:
                commits_seen = locked["commits_seen"] - read.left + read.new
            next_pos = locked["next_pos"] + (POS_BLOCK if read.new else 0)

            # 2. the other branches: tips not seen before, minus everything read already
            await read_other_branches(path, refs, tip, cursor, st)

            # 3. reverts, links, closes, evidence, plan bases
            rv = Reverts(conn, repo_id)
            if dropped:
                await rv.apply_dropped(dropped)
            if st.reverts:
                res.reverts = len(st.reverts)
                await rv.apply_new(list(reversed(st.reverts)))  # oldest first
            await rv.flush()
            linked = await link_and_close(conn, self.prefix, repo_id, name, st, rv.killed, emails)
            for attr, n in vars(linked).items():
                setattr(res, attr, n)
            suspects = sorted(set(dropped) | rv.killed)
            if suspects:
                res.evidence_lost = await lose_evidence(
                    conn, self.prefix, repo_id, name, branch, suspects
                )
            if dropped:
                await bases_lost(conn, name, branch, dropped)
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
                shallow,
            )


def _describe(err: Exception, path: str) -> str:
    if isinstance(err, BranchGone):
        return str(err)
    if isinstance(err, RepoGone):
        return f"{err}; fix the path with `ob repo add PATH --name NAME`"
    if isinstance(err, GitError):
        return f"git failed in {path}: {err.stderr.replace(chr(10), ' ')[:300] or err}"
    return f"{type(err).__name__}: {str(err)[:300]}"
