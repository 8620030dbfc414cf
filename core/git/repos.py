"""The repo registry: repositories added by path, by URL (ob keeps a bare clone under its data
dir) or discovered under OB_REPO_ROOTS (one clone of each remote), and removed."""

from __future__ import annotations

import asyncio
import difflib
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
from pydantic import BaseModel

from core import events
from core.backlog import require_operator
from core.errors import Invalid, NotFound
from core.git.fetch import CloneError, clone_bare
from core.git.refs import RepoGone, detect_default_branch, git_dirs
from core.git.remotes import Remote, default_remote, normalise_url
from core.models import SYSTEM, Actor, EventKind, Task
from core.service import Service

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
_BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)[^\x00-\x20~^:?*\[\\]{1,200}$")
DISCOVER_DEPTH = 3
_SKIP_DIRS = {"node_modules", ".venv", "venv", "__pycache__", ".tox", "target", "dist", "build"}


class RepoInfo(BaseModel):
    id: int
    name: str
    path: str
    default_branch: str | None
    branch_pinned: bool = False  # set with --branch; otherwise the repository's own is followed
    discovered: bool
    cursor_sha: str | None
    commits_seen: int
    last_scan_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    created_at: datetime
    fetch_enabled: bool = True  # its remote is fetched before each scan (`--no-fetch`: not)
    managed: bool = False  # ob's own bare clone under the data dir (`ob repo add URL`)
    remote: str | None = None  # the default branch's remote (None: the repo has none)
    remote_url: str | None = None
    last_fetch_at: datetime | None = None  # the last good fetch
    fetch_error: str | None = None  # why the last fetch failed (None once one succeeds)
    fetch_error_at: datetime | None = None


def repo_name_for(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._/-]+", "-", path.name).strip("-._/") or "repo"
    return name[:100]


class SkippedFolder(BaseModel):
    """A folder under OB_REPO_ROOTS that looks like a repository but was not registered."""

    path: str
    reason: str
    first_seen: datetime | None = None
    last_seen: datetime | None = None


@dataclass
class Discovery:
    added: list[RepoInfo] = field(default_factory=list)
    skipped: list[SkippedFolder] = field(default_factory=list)


def _inspect(path: Path, branch: str | None) -> tuple[str, Remote | None]:
    """Check that `path` is a git repository; returns its default branch and that branch's
    remote."""
    git_dirs(path)
    default = branch or detect_default_branch(path)
    return default, default_remote(path, default)


async def _set_fetch(
    conn: asyncpg.Connection, row: asyncpg.Record, enabled: bool, actor: Actor
) -> asyncpg.Record | None:
    """The repo row after turning fetching on or off (an event), or None if unchanged. Off
    clears the last fetch failure: nothing will retry it."""
    if row["fetch_enabled"] == enabled:
        return None
    new = await conn.fetchrow(
        "update repos set fetch_enabled = $2,"
        " fetch_error = case when $2 then fetch_error end,"
        " fetch_error_at = case when $2 then fetch_error_at end"
        " where id = $1 returning *",
        row["id"],
        enabled,
    )
    await events.record(
        conn, None, actor, EventKind.REPO_FETCH_SET, {"repo": row["name"], "fetch": enabled}
    )
    return new


class RepoRemoved(BaseModel):
    name: str
    path: str
    unfinished: int  # tasks that still name the repo


def _remotes(paths: list[Path]) -> dict[Path, Remote]:
    """Each repository's remote (that of its default branch), read from its git config."""
    out = {}
    for p in paths:
        try:
            remote = default_remote(p, None)
        except (RepoGone, OSError):
            continue
        if remote is not None and remote.key:
            out[p] = remote
    return out


class StaleRepo(BaseModel):
    """A repo whose fetch is failing, or whose last good fetch is older than OB_TRUTH_MAX_AGE:
    ob plans against old news there."""

    name: str
    last_fetch_at: datetime | None  # None: never fetched
    fetch_error: str | None  # why the last fetch failed (None: it did not)
    fetch_error_at: datetime | None
    stale: bool  # the last good fetch is older than OB_TRUTH_MAX_AGE


class TruthAge(BaseModel):
    """How fresh the truth is (`ob status`, the digest): how many repos ob fetches, and those
    whose fetch fails or whose last good fetch is too old, oldest first."""

    max_age: int  # seconds (OB_TRUTH_MAX_AGE)
    fetched: int  # repos with a remote that ob fetches
    stale_total: int
    failing_total: int
    repos: list[StaleRepo]

    @property
    def stale(self) -> list[StaleRepo]:
        return [r for r in self.repos if r.stale]


_FETCHED = "select count(*) from repos where fetch_enabled and remote is not null"
_TRUTH = """
with r as (
    select name, last_fetch_at, fetch_error, fetch_error_at,
           coalesce(last_fetch_at, created_at) < now() - make_interval(secs => $1) as stale
    from repos where fetch_enabled and remote is not null
)
select *, count(*) filter (where stale) over () as stale_total,
       count(*) filter (where fetch_error is not null) over () as failing_total
from r where stale or fetch_error is not null
order by last_fetch_at nulls first, name
limit $2
"""


async def truth_age(
    db: asyncpg.Pool | asyncpg.Connection, max_age: int, limit: int = 20
) -> TruthAge:
    """Repos whose fetch fails, or whose last good fetch (or registration, for one never
    fetched) is older than `max_age` seconds."""
    rows = await db.fetch(_TRUTH, max_age, limit)
    fetched = await db.fetchval(_FETCHED)
    fields = ("name", "last_fetch_at", "fetch_error", "fetch_error_at", "stale")
    return TruthAge(
        max_age=max_age,
        fetched=fetched,
        stale_total=rows[0]["stale_total"] if rows else 0,
        failing_total=rows[0]["failing_total"] if rows else 0,
        repos=[StaleRepo(**{f: r[f] for f in fields}) for r in rows],
    )


def find_git_repos(
    roots: list[Path], depth: int = DISCOVER_DEPTH, problems: list[tuple[str, str]] | None = None
) -> list[Path]:
    """Git repositories under the roots (not descending into a repository). Folders that
    cannot be listed, and roots that do not exist, go to `problems` as (path, reason)."""
    found: list[Path] = []

    def walk(d: Path, level: int) -> None:
        if (d / ".git").exists() or (d / ".git").is_symlink():
            found.append(d)
            return
        if level >= depth:
            return
        try:
            children = sorted(e for e in d.iterdir() if e.is_dir() and not e.is_symlink())
        except OSError as err:
            if problems is not None:
                problems.append((str(d), f"cannot list the folder: {err.strerror or err}"))
            return
        for c in children:
            if not c.name.startswith(".") and c.name not in _SKIP_DIRS:
                walk(c, level + 1)

    for root in roots:
        root = root.expanduser()
        if root.is_dir():
            walk(root.resolve(), 0)
        elif problems is not None:
            problems.append((str(root), "OB_REPO_ROOTS names a folder that does not exist"))
    return found


# Another registration of a remote (following that branch; any branch when None).
_SAME_REMOTE = """
select name, path, default_branch from repos
where remote_key = $1 and name <> $2 and ($3::text is null or default_branch = $3)
order by name limit 1
"""


def _registered_already(url: str, twin: asyncpg.Record) -> Invalid:
    """One registration per remote and branch, as discovery keeps it: a second would read every
    commit twice, and ask the operator about each closing one as another repo's."""
    name = twin["name"]
    return Invalid(
        f"{url} is registered already as {name!r} ({twin['path']}, following"
        f" {twin['default_branch']}): use {name!r}, or `ob repo rm {name}` first to register it"
        " here instead, or --branch to follow another branch"
    )


class Repos(Service):
    """The repo registry: add (a path, a URL, what OB_REPO_ROOTS holds), list, remove."""

    async def add(
        self,
        path: str | os.PathLike[str],
        actor: Actor,
        *,
        name: str | None = None,
        branch: str | None = None,
        follow: bool = False,
        fetch: bool | None = None,
        discovered: bool = False,
        managed: bool = False,
    ) -> RepoInfo:
        """Register (or update) a repository. Re-adding a known path updates its name/branch.

        `branch` pins the default branch; without it ob follows the repository's own default
        (origin/HEAD, a bare repository's HEAD, see refs.follow_default_branch) at every scan.
        `follow` drops an earlier pin. `fetch` False: ob never fetches its remote (True turns
        fetching back on; None leaves it as it is, on for a new repo)."""
        if branch is not None and follow:
            raise Invalid(
                "give either --branch (pin a branch) or --follow (follow the repository's)"
            )
        branch = branch.strip() if branch else None
        if branch is not None and not _BRANCH_RE.match(branch):
            raise Invalid(f"{branch[:60]!r} is not a branch name")
        p = Path(path).expanduser().resolve()
        try:
            default_branch, remote = await asyncio.to_thread(_inspect, p, branch)
        except RepoGone as err:
            raise Invalid(str(err)) from None
        pinned = branch is not None
        name = (name or repo_name_for(p)).strip()
        if not NAME_RE.match(name):
            raise Invalid(
                f"repo name {name[:60]!r} is not valid: letters, digits, . _ / - (at most 100)"
            )
        remote_cols = (remote.name, remote.url, remote.key) if remote else (None, None, None)
        async with self.backlog.transaction() as conn:
            by_path = await conn.fetchrow("select * from repos where path = $1 for update", str(p))
            by_name = await conn.fetchrow("select * from repos where name = $1 for update", name)
            if by_path is not None:
                if by_name is not None and by_name["id"] != by_path["id"]:
                    raise Invalid(f"a repo named {name!r} exists at {by_name['path']}")
                if pinned or follow:
                    new_branch, new_pin = default_branch, pinned
                else:  # unchanged
                    new_branch = by_path["default_branch"] or default_branch
                    new_pin = by_path["branch_pinned"]
                row = await conn.fetchrow(
                    "update repos set name = $2, default_branch = $3, branch_pinned = $4,"
                    " last_error = case when $5 then null else last_error end,"
                    " remote = $6, remote_url = $7, remote_key = $8"
                    " where id = $1 returning *",
                    by_path["id"],
                    name,
                    new_branch,
                    new_pin,
                    new_branch != by_path["default_branch"],
                    *remote_cols,
                )
                if (new_branch, new_pin) != (by_path["default_branch"], by_path["branch_pinned"]):
                    await events.record(
                        conn,
                        None,
                        actor,
                        EventKind.REPO_BRANCH_SET,
                        {
                            "repo": name,
                            "from": by_path["default_branch"],
                            "to": new_branch,
                            "pinned": new_pin,
                        },
                    )
                if fetch is not None:
                    row = await _set_fetch(conn, row, fetch, actor) or row
                return RepoInfo(**dict(row))
            if by_name is not None:
                if discovered or Path(by_name["path"]).exists():
                    raise Invalid(
                        f"a repo named {name!r} exists at {by_name['path']}; choose another --name"
                    )
                # the registered path is gone: the repo moved here
                row = await conn.fetchrow(
                    """update repos set path = $2, default_branch = $3, branch_pinned = $4,
                              last_error = null, remote = $5, remote_url = $6, remote_key = $7,
                              managed = $8
                       where id = $1 returning *""",
                    by_name["id"],
                    str(p),
                    default_branch,
                    pinned,
                    *remote_cols,
                    managed,
                )
                await events.record(
                    conn, None, actor, EventKind.REPO_MOVED, {"repo": name, "path": str(p)}
                )
                if fetch is not None:
                    row = await _set_fetch(conn, row, fetch, actor) or row
                return RepoInfo(**dict(row))
            if remote is not None and remote.key and not discovered:
                twin = await conn.fetchrow(_SAME_REMOTE, remote.key, name, default_branch)
                if twin is not None:
                    raise _registered_already(remote.url or remote.key, twin)
            row = await conn.fetchrow(
                """insert into repos (name, path, default_branch, branch_pinned, discovered,
                                      fetch_enabled, managed, remote, remote_url, remote_key)
                   values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning *""",
                name,
                str(p),
                default_branch,
                pinned,
                discovered,
                fetch is not False,
                managed,
                *remote_cols,
            )
            await conn.execute("delete from repo_skips where path = $1", str(p))
            await conn.execute("delete from repo_removals where path = $1", str(p))
            await events.record(
                conn,
                None,
                actor,
                EventKind.REPO_ADDED,
                {
                    "repo": name,
                    "path": str(p),
                    "branch": default_branch,
                    "pinned": pinned,
                    "discovered": discovered,
                    "fetch": fetch is not False,
                    "remote": remote.url if remote else None,
                },
            )
            return RepoInfo(**dict(row))

    async def add_remote(
        self,
        url: str,
        actor: Actor,
        *,
        name: str | None = None,
        branch: str | None = None,
        follow: bool = False,
        fetch: bool | None = None,
    ) -> RepoInfo:
        """Register a repository the operator does not keep locally: ob keeps a bare clone of
        `url` under its data dir (clones/NAME.git) and fetches it like any other repo."""
        require_operator(actor, "add repositories")
        key = normalise_url(url)
        name = (name or repo_name_for(Path(key.rsplit("/", 1)[-1] or "repo"))).strip()
        if not NAME_RE.match(name):
            raise Invalid(
                f"repo name {name[:60]!r} is not valid: letters, digits, . _ / - (at most 100)"
            )
        target = (self.settings.data_dir / "clones" / f"{name}.git").resolve()
        twin = await self.pool.fetchrow(_SAME_REMOTE, key, name, branch)
        if twin is not None:  # before cloning: a second clone is refused anyway
            raise _registered_already(url, twin)
        known = await self.pool.fetchrow("select path, managed from repos where name = $1", name)
        if known is not None and Path(known["path"]) != target:
            raise Invalid(f"a repo named {name!r} exists at {known['path']}; choose another --name")
        if not target.exists():
            try:
                await clone_bare(url, target, self.settings.fetch_timeout * 10)
            except CloneError as err:
                raise Invalid(str(err)) from None
        else:
            remote = await asyncio.to_thread(default_remote, target, None)
            if remote is None or remote.key != key:
                raise Invalid(
                    f"{target} holds a clone of {remote.url if remote else 'nothing'}, not {url};"
                    " choose another --name"
                )
        return await self.add(
            target, actor, name=name, branch=branch, follow=follow, fetch=fetch, managed=True
        )

    async def set_fetch(self, name: str, enabled: bool, actor: Actor) -> RepoInfo:
        """Turn fetching a repo's remote on or off (`ob repo set NAME --fetch/--no-fetch`)."""
        require_operator(actor, "change repositories")
        async with self.backlog.transaction() as conn:
            row = await conn.fetchrow("select * from repos where name = $1 for update", name)
            if row is None:
                raise NotFound(f"no repo named {name!r}; see `ob repo list`")
            return RepoInfo(**dict(await _set_fetch(conn, row, enabled, actor) or row))

    async def remove(self, name: str, actor: Actor) -> RepoRemoved:
        """Take a repository out of the registry: it is no longer scanned (nor found again under
        OB_REPO_ROOTS), the commits read from it are forgotten, its tasks keep its name. `ob repo
        add PATH` registers it again."""
        async with self.backlog.transaction() as conn:
            row = await conn.fetchrow(
                "delete from repos where name = $1 returning name, path", name
            )
            if row is None:
                raise NotFound(f"no repo named {name[:100]!r}; see `ob repo list`")
            await conn.execute(
                """insert into repo_removals (path, name, removed_by) values ($1, $2, $3)
                   on conflict (path) do update
                       set name = excluded.name, removed_by = excluded.removed_by,
                           removed_at = now()""",
                row["path"],
                row["name"],
                str(actor),
            )
            unfinished = await conn.fetchval(
                "select count(*) from tasks where repo = $1 and status in ('draft', 'open')", name
            )
            details = {"repo": row["name"], "path": row["path"], "unfinished": unfinished}
            await events.record(conn, None, actor, EventKind.REPO_REMOVED, details)
        return RepoRemoved(name=row["name"], path=row["path"], unfinished=unfinished)

    async def unregistered(self, task: Task) -> str | None:
        """A warning when the task names a repo nobody registered (git cannot verify it or measure
        its drift), naming the closest registered one; None when all is well."""
        if task.repo is None:
            return None
        unknown = await self.unregistered_name(task.repo)
        if unknown is None:
            return None
        return (
            f"{unknown}: git will not verify {task.key} or show its drift; `ob edit {task.key} -r"
            " NAME` fixes the name, `ob repo add PATH` registers it"
        )

    async def unregistered_name(self, repo: str) -> str | None:
        """`no repo named 'x' is registered (did you mean y?)`, or None when `repo` is one."""
        names = [r["name"] for r in await self.pool.fetch("select name from repos")]
        if repo in names:
            return None
        close = difflib.get_close_matches(repo, names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"no repo named {repo!r} is registered{hint}"

    async def all(self) -> list[RepoInfo]:
        rows = await self.pool.fetch("select * from repos order by name")
        return [RepoInfo(**dict(r)) for r in rows]

    async def truth(self, limit: int = 20) -> TruthAge:
        """The truth's age against OB_TRUTH_MAX_AGE (`ob status`)."""
        return await truth_age(self.pool, self.settings.truth_max_age, limit)

    async def known_names(self, limit: int = 24) -> list[str]:
        """Registered repos and repos tasks name, alphabetically (the bot offers them as buttons)."""
        rows = await self.pool.fetch(
            "select name from (select name from repos union"
            " select distinct repo from tasks where repo is not null) r order by name limit $1",
            limit,
        )
        return [r["name"] for r in rows]

    async def get(self, name: str) -> RepoInfo:
        row = await self.pool.fetchrow("select * from repos where name = $1", name)
        if row is None:
            raise NotFound(
                f"no repo named {name!r}; see `ob repo list` or add it with `ob repo add`"
            )
        return RepoInfo(**dict(row))

    async def discover(self, roots: list[Path]) -> Discovery:
        """Register the repositories under the roots that are not registered yet, and record
        (in `repo_skips`, shown by `ob repo list`) every folder that could not be, and why."""
        out = Discovery()
        if not roots:  # nothing to discover; earlier skips no longer apply
            await self.pool.execute("delete from repo_skips")
            return out
        problems: list[tuple[str, str]] = []
        paths = await asyncio.to_thread(find_git_repos, roots, DISCOVER_DEPTH, problems)
        rows = await self.pool.fetch("select path, name from repos")
        known = {r["path"]: r["name"] for r in rows}
        names = set(known.values())
        removed = {
            r["path"]: r
            for r in await self.pool.fetch("select path, name, removed_at from repo_removals")
        }
        new = [p for p in paths if str(p) not in known]
        # a repository is registered once, however many clones of it the roots hold
        remotes = await asyncio.to_thread(_remotes, [Path(p) for p in known] + new) if new else {}
        registered = {
            remotes[Path(p)].key: (Path(p), n) for p, n in known.items() if Path(p) in remotes
        }
        for p in new:
            if str(p) in removed:
                r = removed[str(p)]
                problems.append(
                    (
                        str(p),
                        f"removed with `ob repo rm {r['name']}` on {r['removed_at']:%Y-%m-%d};"
                        f" `ob repo add {p}` registers it again",
                    )
                )
                continue
            if p in remotes and remotes[p].key in registered:
                first, first_name = registered[remotes[p].key]
                problems.append(
                    (
                        str(p),
                        f"another clone of {remotes[p].url} (registered as {first_name!r} at"
                        f" {first}); `ob repo add {p} --name NAME` registers this one too",
                    )
                )
                continue
            name = repo_name_for(p)
            if name in names:
                name = repo_name_for(Path(f"{p.parent.name}-{p.name}"))
            if name in names:
                problems.append(
                    (
                        str(p),
                        f"the name {repo_name_for(p)!r} (and {name!r}) is taken; register it with"
                        f" `ob repo add {p} --name NAME`",
                    )
                )
                continue
            try:
                out.added.append(await self.add(p, SYSTEM, name=name, discovered=True))
            except Invalid as err:
                problems.append((str(p), str(err)))
                continue
            names.add(name)
            if p in remotes:
                registered[remotes[p].key] = (p, name)
        out.skipped = await self._record_skips(problems)
        return out

    async def _record_skips(self, problems: list[tuple[str, str]]) -> list[SkippedFolder]:
        """Replace the recorded skips with this discovery's; a new one (or a new reason) is an
        event."""
        paths = [p for p, _ in problems]
        reasons = [r[:1000] for _, r in problems]
        async with self.backlog.transaction() as conn:
            rows = await conn.fetch(
                """
                with cur as (
                    select * from unnest($1::text[], $2::text[]) as c(path, reason)
                ),
                gone as (
                    delete from repo_skips s where not exists (select 1 from cur where cur.path = s.path)
                ),
                prev as (select path, reason from repo_skips)
                insert into repo_skips as s (path, reason)
                select path, reason from cur
                on conflict (path) do update
                    set reason = excluded.reason, last_seen = now(),
                        first_seen = case when s.reason = excluded.reason then s.first_seen
                                          else now() end
                returning s.path, s.reason, s.first_seen, s.last_seen,
                          (select p.reason from prev p where p.path = s.path) as before
                """,
                paths,
                reasons,
            )
            fresh = [r for r in rows if r["before"] != r["reason"]]
            if fresh:
                await conn.execute(
                    """insert into events (task_id, actor, kind, details)
                       select null, 'system', 'repo_skipped',
                              jsonb_build_object('path', p, 'reason', r)
                       from unnest($1::text[], $2::text[]) as x(p, r)""",
                    [r["path"] for r in fresh],
                    [r["reason"] for r in fresh],
                )
        return [
            SkippedFolder(
                path=r["path"],
                reason=r["reason"],
                first_seen=r["first_seen"],
                last_seen=r["last_seen"],
            )
            for r in sorted(rows, key=lambda r: r["path"])
        ]

    async def skipped(self) -> list[SkippedFolder]:
        """Folders under OB_REPO_ROOTS the last discovery could not register, and why."""
        rows = await self.pool.fetch(
            "select path, reason, first_seen, last_seen from repo_skips order by path"
        )
        return [SkippedFolder(**dict(r)) for r in rows]
