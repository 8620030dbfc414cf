"""Reconciliation: `python -m bench.reconcile [--repos N] [--commits C]`.

Builds N synthetic repositories of C commits each with `git fast-import` (each commit touches
one file; 5% of the messages name a task, a quarter of those with `Closes`), then measures:
  (a) baseline: raw `git log --name-only` of every repo's default branch, one after the other
      (and, for reference, with the reconciler's parallelism)
  (b) a full reconcile: parse, store every default-branch commit, link and close tasks
  (c) an incremental reconcile with no new commits
  (d) an incremental reconcile after 10 new commits in 10 repos
Prints the times and the ratio b/a (target <= 2) and (c) (target <= 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import fresh_database
from core.backlog import Backlog
from core.db import create_pool
from core.git.reconcile import Reconciler
from core.git.repos import add_repo
from core.models import Actor
from core.settings import load_settings

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
CONCURRENCY = 8


def _data(b: bytes) -> bytes:
    return b"data %d\n%s" % (len(b), b)


def build_repo(path: Path, commits: int, tasks: int, seed: int, start: int = 0) -> None:
    """`commits` new commits on main (appended when start > 0) through one git fast-import."""
    rnd = random.Random(seed)
    if start == 0:
        path.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=GIT_ENV)
    out: list[bytes] = []
    ts = 1_700_000_000 + start * 60
    for i in range(start, start + commits):
        n = rnd.randint(1, tasks + tasks // 4)  # some keys are unknown
        if rnd.random() < 0.05:
            verb = "Closes" if rnd.random() < 0.25 else "Refs"
            msg = f"change {i} of module {i % 40}\n\n{verb} OB-{n}\n"
        else:
            msg = f"change {i} of module {i % 40}\n\nsome body text for change {i}\n"
        out.append(b"commit refs/heads/main")
        out.append(b"author Bench <bench@example.com> %d +0000" % (ts + i * 60))
        out.append(b"committer Bench <bench@example.com> %d +0000" % (ts + i * 60))
        out.append(_data(msg.encode()))
        if i == start and start > 0:
            out.append(b"from refs/heads/main^0")
        out.append(b"M 644 inline src/m%d.py" % (i % 40))
        out.append(_data(b"# version %d\n" % i))
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=path,
        input=b"\n".join(out) + b"\n",
        check=True,
        env=GIT_ENV,
    )


def raw_log(path: Path) -> int:
    out = subprocess.run(
        ["git", "log", "--name-only", "main"], cwd=path, capture_output=True, check=True
    ).stdout
    return len(out)


async def main(n_repos: int, n_commits: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="ob-bench-repos-"))
    try:
        await run(root, n_repos, n_commits)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def run(root: Path, n_repos: int, n_commits: int) -> None:
    n_tasks = max(100, n_repos * n_commits // 100)
    t = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as ex:
        list(
            ex.map(
                lambda i: build_repo(root / f"repo{i:03d}", n_commits, n_tasks, i),
                range(n_repos),
            )
        )
    print(f"built {n_repos} repos x {n_commits} commits in {time.perf_counter() - t:.1f} s")

    # (a) baseline: raw git log, serially, then with the reconciler's parallelism
    paths = sorted(root.iterdir())
    t = time.perf_counter()
    for p in paths:
        raw_log(p)
    a = time.perf_counter() - t
    t = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as ex:
        list(ex.map(raw_log, paths))
    a_par = time.perf_counter() - t

    async with fresh_database() as url:
        settings = load_settings(database_url=url, _env_file=None)
        pool = await create_pool(url, max_size=CONCURRENCY + 4)
        await pool.execute(
            """insert into tasks (title, status, lane, priority, created_by, approved_by)
               select 'task ' || g, 'open', 'autonomous_safe', g % 4, 'operator:bench',
                      'operator:bench'
               from generate_series(1, $1) g""",
            n_tasks,
        )
        backlog = Backlog(pool, settings)
        for p in paths:
            await add_repo(backlog, p, Actor.operator("bench"))
        rec = Reconciler(backlog, concurrency=CONCURRENCY)

        t = time.perf_counter()
        full = await rec.run(discover_roots=False)
        b = time.perf_counter() - t
        assert not full.errors, full.errors[0].error
        stored = await pool.fetchval("select count(*) from git_commits")

        t = time.perf_counter()
        idle = await rec.run(discover_roots=False)
        c = time.perf_counter() - t
        assert all(r.status == "unchanged" for r in idle.repos)

        for i, p in enumerate(paths[:10]):
            build_repo(p, 1, n_tasks, 10_000 + i, start=n_commits)
        t = time.perf_counter()
        inc = await rec.run(discover_roots=False)
        d = time.perf_counter() - t
        assert inc.total("new_on_default") == min(10, n_repos), [
            vars(r) for r in inc.repos if r.commits_read
        ]
        await pool.close()

    print(
        f"\nreconcile benchmark: {n_repos} repos x {n_commits} commits, {n_tasks} tasks, "
        f"{CONCURRENCY} parallel git readers, one PostgreSQL\n"
    )
    print(f"(a)  raw git log --name-only, serial   {a:7.2f} s")
    print(f"     raw git log, {CONCURRENCY} in parallel       {a_par:7.2f} s   (reference)")
    print(
        f"(b)  full reconcile                    {b:7.2f} s   "
        f"({stored} commits stored, {full.total('linked')} linked, "
        f"{full.total('closed')} closed, {full.total('unknown_keys')} unknown keys)"
    )
    print(f"(c)  incremental, no new commits       {c:7.3f} s   (target <= 1 s)")
    print(f"(d)  incremental, 10 new in 10 repos   {d:7.3f} s")
    print(f"\nratio b/a = {b / a:.2f}   (target <= 2)")
    print(f"ratio b/a(parallel) = {b / a_par:.2f}   (same parallelism on both sides)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repos", type=int, default=100)
    ap.add_argument("--commits", type=int, default=2000)
    args = ap.parse_args()
    asyncio.run(main(args.repos, args.commits))
