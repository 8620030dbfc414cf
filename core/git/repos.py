"""The repo registry: repositories added by path or discovered under OB_REPO_ROOTS."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from core import events
from core.backlog import Backlog
from core.errors import Invalid, NotFound
from core.git.refs import RepoGone, detect_default_branch, git_dirs
from core.models import SYSTEM, Actor, EventKind

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
DISCOVER_DEPTH = 3
_SKIP_DIRS = {"node_modules", ".venv", "venv", "__pycache__", ".tox", "target", "dist", "build"}


class RepoInfo(BaseModel):
    id: int
    name: str
    path: str
    default_branch: str | None
    discovered: bool
    cursor_sha: str | None
    commits_seen: int
    last_scan_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    created_at: datetime


def repo_name_for(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._/-]+", "-", path.name).strip("-._/") or "repo"
    return name[:100]


def _inspect(path: Path, branch: str | None) -> str:
    """Check that `path` is a git repository; returns its default branch."""
    git_dirs(path)
    return branch or detect_default_branch(path)


async def add_repo(
    backlog: Backlog,
    path: str | os.PathLike[str],
    actor: Actor,
    *,
    name: str | None = None,
    branch: str | None = None,
    discovered: bool = False,
) -> RepoInfo:
    """Register (or update) a repository. Re-adding a known path updates its name/branch."""
    p = Path(path).expanduser().resolve()
    try:
        default_branch = await asyncio.to_thread(_inspect, p, branch)
    except RepoGone as err:
        raise Invalid(str(err)) from None
    name = (name or repo_name_for(p)).strip()
    if not NAME_RE.match(name):
        raise Invalid(
            f"repo name {name[:60]!r} is not valid: letters, digits, . _ / - (at most 100)"
        )
    async with backlog.transaction() as conn:
        by_path = await conn.fetchrow("select * from repos where path = $1 for update", str(p))
        by_name = await conn.fetchrow("select * from repos where name = $1 for update", name)
        if by_path is not None:
            if by_name is not None and by_name["id"] != by_path["id"]:
                raise Invalid(f"a repo named {name!r} exists at {by_name['path']}")
            row = await conn.fetchrow(
                "update repos set name = $2, default_branch = $3 where id = $1 returning *",
                by_path["id"],
                name,
                branch or by_path["default_branch"] or default_branch,
            )
            return RepoInfo(**dict(row))
        if by_name is not None:
            if discovered or Path(by_name["path"]).exists():
                raise Invalid(
                    f"a repo named {name!r} exists at {by_name['path']}; choose another --name"
                )
            # the registered path is gone: the repo moved here
            row = await conn.fetchrow(
                """update repos set path = $2, default_branch = $3, last_error = null
                   where id = $1 returning *""",
                by_name["id"],
                str(p),
                default_branch,
            )
            await events.record(
                conn, None, actor, EventKind.REPO_MOVED, {"repo": name, "path": str(p)}
            )
            return RepoInfo(**dict(row))
        row = await conn.fetchrow(
            """insert into repos (name, path, default_branch, discovered)
               values ($1, $2, $3, $4) returning *""",
            name,
            str(p),
            default_branch,
            discovered,
        )
        await events.record(
            conn,
            None,
            actor,
            EventKind.REPO_ADDED,
            {"repo": name, "path": str(p), "branch": default_branch, "discovered": discovered},
        )
        return RepoInfo(**dict(row))


async def list_repos(backlog: Backlog) -> list[RepoInfo]:
    rows = await backlog.pool.fetch("select * from repos order by name")
    return [RepoInfo(**dict(r)) for r in rows]


async def known_repo_names(backlog: Backlog, limit: int = 24) -> list[str]:
    """Registered repos and repos tasks name, alphabetically (the bot offers them as buttons)."""
    rows = await backlog.pool.fetch(
        "select name from (select name from repos union"
        " select distinct repo from tasks where repo is not null) r order by name limit $1",
        limit,
    )
    return [r["name"] for r in rows]


async def get_repo(backlog: Backlog, name: str) -> RepoInfo:
    row = await backlog.pool.fetchrow("select * from repos where name = $1", name)
    if row is None:
        raise NotFound(f"no repo named {name!r}; see `ob repo list` or add it with `ob repo add`")
    return RepoInfo(**dict(row))


def find_git_repos(roots: list[Path], depth: int = DISCOVER_DEPTH) -> list[Path]:
    """Git repositories under the roots (not descending into a repository)."""
    found: list[Path] = []

    def walk(d: Path, level: int) -> None:
        if (d / ".git").exists():
            found.append(d)
            return
        if level >= depth:
            return
        try:
            children = sorted(e for e in d.iterdir() if e.is_dir() and not e.is_symlink())
        except OSError:
            return
        for c in children:
            if not c.name.startswith(".") and c.name not in _SKIP_DIRS:
                walk(c, level + 1)

    for root in roots:
        root = root.expanduser()
        if root.is_dir():
            walk(root.resolve(), 0)
    return found


async def discover(backlog: Backlog, roots: list[Path]) -> list[RepoInfo]:
    """Register the repositories under the roots that are not registered yet."""
    if not roots:
        return []
    paths = await asyncio.to_thread(find_git_repos, roots)
    rows = await backlog.pool.fetch("select path, name from repos")
    known = {r["path"] for r in rows}
    names = {r["name"] for r in rows}
    added = []
    for p in paths:
        if str(p) in known:
            continue
        name = repo_name_for(p)
        if name in names:
            name = repo_name_for(Path(f"{p.parent.name}-{p.name}"))
        if name in names:
            continue
        try:
            added.append(await add_repo(backlog, p, SYSTEM, name=name, discovered=True))
        except Invalid:
            continue
        names.add(name)
    return added
