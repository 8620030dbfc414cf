"""Reverts on the default branch: which stored commits' changes are still on the branch.

A default-branch commit whose message says `This reverts commit X.` marks X reverted
(`git_commits.reverted_by`) while it is itself live; a revert of that revert brings X back, a
revert of that one takes it away again, and so on down the chain. A revert that leaves the
branch (a rewrite) no longer reverts anything. The reconciler applies the new reverts of a scan
in order, oldest first, and learns which commits were taken away (`killed`: their evidence is
gone) and brought back (`revived`: verification can return).
"""

from __future__ import annotations

import asyncpg

MAX_REVERT_CHAIN = 16  # a revert of a revert of a ... is followed this deep


class Reverts:
    """The revert state of a repo's default-branch commits: X is reverted by R while R is
    live; a revert of R brings X back (and so on down a chain)."""

    def __init__(self, conn: asyncpg.Connection, repo_id: int):
        self.conn = conn
        self.repo_id = repo_id
        self.rows: dict[str, tuple[list[str], str | None]] = {}  # sha -> (reverts, reverted_by)
        self.resolved: dict[str, str | None] = {}
        self.changed: dict[str, str | None] = {}
        self.killed: set[str] = set()
        self.revived: set[str] = set()

    async def load(self, shas: set[str]) -> None:
        """Load the rows of `shas` and, down the chains, of what they revert."""
        todo = {s for s in shas if s not in self.rows}
        for _ in range(MAX_REVERT_CHAIN):
            if not todo:
                return
            rows = await self.conn.fetch(
                "select sha, reverts, reverted_by from git_commits"
                " where repo_id = $1 and sha = any($2::text[])",
                self.repo_id,
                sorted(todo),
            )
            for r in rows:
                self.rows[r["sha"]] = (list(r["reverts"] or []), r["reverted_by"])
            targets = {t for r in rows for t in (r["reverts"] or [])}
            await self.resolve(targets)
            todo = {
                full
                for t in targets
                if (full := self.resolved.get(t)) is not None and full not in self.rows
            }

    async def resolve(self, targets: set[str]) -> None:
        """Full SHAs of stored default-branch commits named by SHA or prefix."""
        short = sorted(t for t in targets if t not in self.resolved)
        if not short:
            return
        rows = await self.conn.fetch(
            """select p.p, (select g.sha from git_commits g
                            where g.repo_id = $1 and g.sha >= (p.p collate "C")
                              and g.sha < ((p.p || 'z') collate "C")
                            order by g.sha limit 1) as sha
               from unnest($2::text[]) as p(p)""",
            self.repo_id,
            short,
        )
        for r in rows:
            self.resolved[r["p"]] = r["sha"]

    def _targets(self, sha: str) -> list[str]:
        row = self.rows.get(sha)
        out = []
        for t in row[0] if row else []:
            full = self.resolved.get(t)
            if full is not None and full in self.rows:
                out.append(full)
        return out

    def _by(self, sha: str) -> str | None:
        return self.changed[sha] if sha in self.changed else self.rows[sha][1]

    def kill(self, sha: str, by: str, depth: int = 0) -> None:
        if sha not in self.rows or depth > MAX_REVERT_CHAIN or self._by(sha) == by:
            return
        self.changed[sha] = by
        self.killed.add(sha)
        self.revived.discard(sha)
        for target in self._targets(sha):  # a dead revert no longer reverts anything
            if self._by(target) == sha:
                self.revive(target, depth + 1)

    def revive(self, sha: str, depth: int = 0) -> None:
        if sha not in self.rows or depth > MAX_REVERT_CHAIN or self._by(sha) is None:
            return
        self.changed[sha] = None
        self.revived.add(sha)
        self.killed.discard(sha)
        for target in self._targets(sha):  # a live revert reverts again
            self.kill(target, sha, depth + 1)

    async def apply_new(self, reverts: list[tuple[str, list[str]]]) -> None:
        """New revert commits on the default branch, oldest first."""
        await self.load({sha for sha, _ in reverts})
        for sha, _ in reverts:
            if sha in self.rows and self._by(sha) is None:
                for target in self._targets(sha):
                    self.kill(target, sha)

    async def apply_dropped(self, dropped: list[str]) -> None:
        """Reverts that left the branch no longer revert anything."""
        rows = await self.conn.fetch(
            "select sha from git_commits where repo_id = $1 and reverted_by = any($2::text[])",
            self.repo_id,
            dropped,
        )
        await self.load({r["sha"] for r in rows})
        for r in rows:
            self.revive(r["sha"])

    async def flush(self) -> None:
        if not self.changed:
            return
        shas = sorted(self.changed)
        await self.conn.execute(
            """update git_commits g set reverted_by = c.by
               from unnest($2::text[], $3::text[]) as c(sha, by)
               where g.repo_id = $1 and g.sha = c.sha""",
            self.repo_id,
            shas,
            [self.changed[s] for s in shas],
        )
