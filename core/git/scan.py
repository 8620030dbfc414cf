"""Scanning: reading a repository's new commits from git into PostgreSQL.

* the default branch: `git log --topo-order TIP --not CURSOR` (with the files each commit
  touched), streamed straight into `git_commits` with COPY; each scan's commits take a block of
  positions (POS_BLOCK), newest last, so positions keep branch order without asking git to
  count or reverse first. If the cursor object is gone altogether (rewritten, then
  garbage-collected), the branch is compared with what is stored, commit by commit (`resync`);
  if the cursor is not an ancestor of the tip (force-push, reset, another default branch), the
  commits that left the branch are `git rev-list CURSOR --not TIP`, and are deleted;
* the other branches: only tips not seen before, `--not` the default tip and every tip seen by
  earlier scans (`repos.seen_tips`), messages only. So a scan costs what is new: a no-op reads
  nothing, one new commit reads one commit, however many unmerged branches the repo has.

What matters of each commit (the task keys it names, what it reverts) is collected in a
ScanState as the commits stream by; the reconciler acts on it afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

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

POS_BLOCK = 1 << 32  # positions per scan: more than any one read can return
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


@dataclass(slots=True)
class Mention:
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
class ScanState:
    """What one scan of a repo collected from the commits git handed over."""

    prefix: str
    cursor: str | None
    seen: set[str]
    mentions: list[Mention] = field(default_factory=list)
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
                    Mention(
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


async def store_default(
    conn: asyncpg.Connection,
    repo_id: int,
    path: str,
    revs: list[str],
    start: int,
    st: ScanState,
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
            return await _copy(conn, repo_id, path, args, start, st, "git_commits", stdin)
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
    await _copy(conn, repo_id, path, args, start, st, "_ob_commits", stdin)
    status = await conn.execute(
        "insert into git_commits select * from _ob_commits on conflict do nothing"
    )
    await conn.execute("delete from _ob_commits")
    return int(status.rsplit(" ", 1)[1])


async def _copy(
    conn: asyncpg.Connection,
    repo_id: int,
    path: str,
    args: list[str],
    start: int,
    st: ScanState,
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


async def resync(
    conn: asyncpg.Connection,
    repo_id: int,
    path: str,
    tip: str,
    start: int,
    st: ScanState,
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
    n = await store_default(
        conn, repo_id, path, ["--no-walk=unsorted", "--stdin"], start, st, stdin=stdin
    )
    return n, dropped


async def read_other_branches(
    path: str, refs: dict[str, str], tip: str, cursor: str | None, st: ScanState
) -> None:
    """The other branches: tips not seen before, minus everything read already (messages
    only; what they mention is linked, never closed)."""
    fresh = sorted({sha for sha in refs.values() if sha != tip and sha not in st.seen})
    if not fresh:
        return
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


@dataclass
class DefaultRead:
    """What reading the default branch found."""

    new: int = 0  # commits stored
    dropped: list[str] = field(default_factory=list)  # stored commits no longer on the branch
    left: int = 0  # of those, how many were deleted
    rewritten: bool = False  # the cursor is not an ancestor of the tip
    resynced: bool = False  # the cursor object was gone: compared commit by commit


async def read_default(
    conn: asyncpg.Connection, repo_id: int, path: str, tip: str, start: int, st: ScanState
) -> tuple[ScanState, DefaultRead]:
    """Store the default branch's new commits from `st.cursor` (None: all of them, replacing
    what is stored) to `tip`, and delete the stored ones that left it; the scan state (a new
    one after a resync) and what was found."""
    out = DefaultRead()
    cursor = st.cursor
    if cursor is None:
        await conn.execute("delete from git_commits where repo_id = $1", repo_id)
        out.new = await store_default(conn, repo_id, path, [tip], start, st)
        return st, out
    if tip == cursor:
        return st, out
    try:
        out.new = await store_default(conn, repo_id, path, [tip, "--not", cursor], start, st)
        if not st.cursor_is_parent:  # the cursor is not an ancestor of the tip
            out.rewritten = True
            out.dropped = await asyncio.to_thread(rev_list, path, cursor, "--not", tip)
    except GitError as err:
        if not err.missing_object:
            raise
        st = ScanState(st.prefix, cursor, st.seen)
        out.rewritten = out.resynced = True
        out.new, out.dropped = await resync(conn, repo_id, path, tip, start, st)
    if out.dropped:
        status = await conn.execute(
            "delete from git_commits where repo_id = $1 and sha = any($2::text[])",
            repo_id,
            out.dropped,
        )
        out.left = int(status.rsplit(" ", 1)[1])
        await conn.execute(
            "update task_commits set on_default = false"
            " where repo_id = $1 and sha = any($2::text[]) and on_default",
            repo_id,
            out.dropped,
        )
    return st, out
