"""Reconciliation: `python -m bench.reconcile [--profile simple|realistic|both] [--path REPO]`.

Two synthetic profiles, built with `git fast-import`:

* simple: --repos N x --commits C, one branch, one file per commit (5% of the messages name
  a task, a quarter of those with `Closes`);
* realistic (default: one repo of 80,000 commits, like git/git's master): --real-repos repos
  of --real-commits commits on main touching 1-10 files each, feature branches merged with
  --no-ff, 0.5% reverts, and --branches unmerged branches of 1-15 commits each.

For each it measures, in the same run:
  (a) the baseline: raw `git log --name-only <default branch>` of every repo, one after the
      other;
  (b) a full reconcile (a fresh process, so its peak memory is its own; its git children's
      peak is sampled from /proc every 20 ms): parse, store every default-branch commit, read
      the other branches, link and close tasks; --rounds times, interleaved with (a), ratio
      b/a per round (with several repos also against the raw logs run with the reconciler's
      parallelism, which is the ratio the summary reports);
  (c) an incremental reconcile with nothing new, and (d) after one new commit on main in one
      repo: time and commits read (the target: 0 and 1, whatever the number of branches);
and, with --path, the same for an existing repository (e.g. a clone of git/git; it is read in
place, and the commit (d) adds to its default branch is removed again afterwards).
Then (e) the TODO.md import of 1,000 and 5,000 specs (linear: the ratio is at most ~5), and
the same file imported again (every spec matched by title and compared, nothing filed).

`--profile fetch` (bench/reconcile_fetch.py): 100 repos with local bare remotes; an ob round
(fetch + reconcile) against raw `git fetch --prune` of the same repos at the same parallelism,
with nothing new and with one new commit, and push-to-closed through a forge webhook.
Timings on a busy machine are noisy; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import fresh_database
from core.backlog import Backlog
from core.db import create_pool
from core.git.reconcile import Reconciler
from core.git.repos import Repos
from core.git.todo import TodoFiles
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
OP = Actor.operator("bench")


def _data(b: bytes) -> bytes:
    return b"data %d\n%s" % (len(b), b)


def _message(rnd: random.Random, i: int, tasks: int) -> str:
    n = rnd.randint(1, tasks + tasks // 4)  # some keys are unknown
    if rnd.random() < 0.05:
        verb = "Closes" if rnd.random() < 0.25 else "Refs"
        return f"change {i} of module {i % 40}\n\n{verb} OB-{n}\n"
    return f"change {i} of module {i % 40}\n\nsome body text for change {i}\n"


def _fast_import(path: Path, lines: list[bytes]) -> None:
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=path,
        input=b"\n".join(lines) + b"\n",
        check=True,
        env=GIT_ENV,
    )


def build_simple(path: Path, commits: int, tasks: int, seed: int, start: int = 0) -> None:
    """`commits` new commits on main (appended when start > 0), one file each."""
    rnd = random.Random(seed)
    if start == 0:
        path.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=GIT_ENV)
    out: list[bytes] = []
    ts = 1_700_000_000 + start * 60
    for i in range(start, start + commits):
        out.append(b"commit refs/heads/main")
        out.append(b"author Bench <bench@example.com> %d +0000" % (ts + i * 60))
        out.append(b"committer Bench <bench@example.com> %d +0000" % (ts + i * 60))
        out.append(_data(_message(rnd, i, tasks).encode()))
        if i == start and start > 0:
            out.append(b"from refs/heads/main^0")
        out.append(b"M 644 inline src/m%d.py" % (i % 40))
        out.append(_data(b"# version %d\n" % i))
    _fast_import(path, out)


def build_realistic(path: Path, commits: int, branches: int, tasks: int, seed: int) -> None:
    """Main with multi-file commits, merged feature branches and reverts; `branches`
    unmerged branches off recent main commits."""
    rnd = random.Random(seed)
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=GIT_ENV)
    files = [f"src/pkg{d}/mod{f}.py".encode() for d in range(30) for f in range(20)]
    out: list[bytes] = []
    mark = 0
    ts = 1_600_000_000
    main: list[int] = []
    sha_of_mark: list[int] = []  # marks of plain main commits, to revert (by mark, see below)

    def commit(
        ref: bytes, parent: int | None, msg: str, merge: int | None = None, n: int = 0
    ) -> int:
        nonlocal mark, ts
        mark += 1
        ts += 60
        out.extend([b"commit " + ref, b"mark :%d" % mark])
        out.append(b"committer Bench <bench@example.com> %d +0000" % ts)
        out.append(_data(msg.encode()))
        if parent:
            out.append(b"from :%d" % parent)
        if merge:
            out.append(b"merge :%d" % merge)
        for f in rnd.sample(files, n or rnd.choice((1, 1, 2, 2, 3, 4, 6, 10))):
            out.extend([b"M 644 inline " + f, _data(b"v%d\n" % mark)])
        return mark

    head: int | None = None
    i = 0
    while i < commits:
        r = rnd.random()
        if r < 0.05 and head:  # a feature branch, merged with --no-ff
            b = head
            for j in range(rnd.randint(1, 5)):
                b = commit(b"refs/heads/tmp", b, _message(rnd, i, tasks) + f"feature {j}\n")
                i += 1
            head = commit(b"refs/heads/main", head, f"Merge branch 'feature-{i}'\n", merge=b, n=1)
        elif r < 0.055 and sha_of_mark:  # a revert (git writes the reverted SHA; a mark here)
            target = rnd.choice(sha_of_mark[-500:])
            head = commit(
                b"refs/heads/main", head, f'Revert "change"\n\nThis reverts commit {target:040x}.\n'
            )
        else:
            head = commit(b"refs/heads/main", head, _message(rnd, i, tasks))
            sha_of_mark.append(head)
        i += 1
        main.append(head)
    for u in range(branches):
        b = rnd.choice(main[-2000:])
        for j in range(rnd.randint(1, 15)):
            b = commit(b"refs/heads/wip/%d" % u, b, _message(rnd, j, tasks) + f"wip {u}\n")
    out.append(b"reset refs/heads/tmp\nfrom 0000000000000000000000000000000000000000\n")
    _fast_import(path, out)
    subprocess.run(["git", "branch", "-q", "-D", "tmp"], cwd=path, capture_output=True)


def add_commit(path: Path, message: str) -> None:
    """One new commit on the default branch, through plumbing (the work tree is not touched)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, env=GIT_ENV, capture_output=True, check=True, text=True
        ).stdout.strip()

    branch = git("symbolic-ref", "--short", "HEAD")
    new = git("commit-tree", "-p", branch, "-m", message, f"{branch}^{{tree}}")
    git("update-ref", f"refs/heads/{branch}", new)


def default_branch(path: Path) -> str:
    return subprocess.run(
        ["git", "symbolic-ref", "--short", "HEAD"],
        cwd=path,
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()


def _hwm(pid: int | str = "self") -> int:
    """Peak RSS (KiB) of a live process, from /proc (Linux; 0 elsewhere). Unlike ru_maxrss it
    does not include what the parent held when it forked the process."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class ChildPeaks(threading.Thread):
    """Samples the peak RSS of this process's child processes (git) every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            for children in Path("/proc/self/task").glob("*/children"):
                try:
                    pids = children.read_text().split()
                except OSError:
                    continue
                for pid in pids:
                    self.peak = max(self.peak, _hwm(pid))


def raw_log(path: Path) -> tuple[float, float, int]:
    """Seconds, CPU seconds and peak RSS (KiB) of a raw `git log --name-only` of the default
    branch."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        ["git", "log", "--name-only", default_branch(path)],
        cwd=path,
        stdout=subprocess.DEVNULL,
    )
    peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, _hwm(proc.pid))
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"git log failed in {path}")
    return time.perf_counter() - t, usage.ru_utime + usage.ru_stime, peak


def baseline(paths: list[Path]) -> tuple[float, float, int]:
    total, cpu, rss = 0.0, 0.0, 0
    for p in paths:
        s, c, r = raw_log(p)
        total += s
        cpu += c
        rss = max(rss, r)
    return total, cpu, rss


def baseline_parallel(paths: list[Path]) -> float:
    """The same raw logs with the reconciler's parallelism (for several repos)."""
    t = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as ex:
        list(ex.map(raw_log, paths))
    return time.perf_counter() - t


# ------------------------------------------------------------------ the full scan, apart


async def _child_full(url: str) -> dict[str, Any]:
    settings = load_settings(database_url=url, _env_file=None)
    pool = await create_pool(url, max_size=CONCURRENCY + 4)
    try:
        rec = Reconciler(Backlog(pool, settings), concurrency=CONCURRENCY)
        me = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = me.ru_utime + me.ru_stime
        peaks = ChildPeaks()
        peaks.start()
        t = time.perf_counter()
        summary = await rec.run(discover_roots=False)
        seconds = time.perf_counter() - t
        peaks.stop.set()
        if summary.errors:
            raise SystemExit(summary.errors[0].error)
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime - cpu0,
            "seconds": seconds,
            "commits_read": summary.commits_read,
            "stored": summary.total("new_on_default"),
            "linked": summary.total("linked"),
            "closed": summary.total("closed"),
            "unknown": summary.total("unknown_keys"),
            "python_rss_kib": _hwm(),
            "git_rss_kib": peaks.peak,
        }
    finally:
        await pool.close()


async def full_scan(pool: Any, url: str) -> dict[str, Any]:
    """A full reconcile of every registered repo in a fresh process (forgetting what earlier
    rounds stored), so that its peak memory, and its git children's, are measured alone."""
    await pool.execute(
        "update repos set cursor_sha = null, ref_tips = '{}', seen_tips = '{}', next_pos = 0,"
        " commits_seen = 0"
    )
    await pool.execute("truncate git_commits")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.reconcile",
        "--child-full",
        url,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError("the full reconcile failed")
    return dict(json.loads(out))


# ------------------------------------------------------------------ one profile


async def measure(name: str, paths: list[Path], n_tasks: int, rounds: int) -> dict[str, Any]:
    async with fresh_database() as url:
        settings = load_settings(database_url=url, _env_file=None)
        pool = await create_pool(url, max_size=CONCURRENCY + 4)
        backlog = Backlog(pool, settings)
        await pool.execute(
            """insert into tasks (title, status, lane, priority, created_by, approved_by)
               select 'task ' || g, 'open', 'autonomous_safe', g % 4, 'operator:bench',
                      'operator:bench'
               from generate_series(1, $1) g""",
            n_tasks,
        )
        for p in paths:
            await Repos(backlog).add(p, OP)
        pairs = []
        for _ in range(rounds):
            a, a_cpu, git_rss = baseline(paths)
            a_par = baseline_parallel(paths) if len(paths) > 1 else a
            b = await full_scan(pool, url)
            pairs.append((a, a_cpu, b, git_rss, a_par))
        rec = Reconciler(backlog, concurrency=CONCURRENCY)
        t = time.perf_counter()
        idle = await rec.run(discover_roots=False)
        c = time.perf_counter() - t
        add_commit(paths[0], "one new commit\n\nRefs OB-1\n")
        t = time.perf_counter()
        one = await rec.run(discover_roots=False)
        d = time.perf_counter() - t
        assert not idle.errors and not one.errors
        await pool.close()
    print(f"\n== {name}: {len(paths)} repo(s), {n_tasks} tasks, {CONCURRENCY} parallel readers")
    for i, (a, a_cpu, b, git_rss, a_par) in enumerate(pairs, 1):
        print(
            f"  round {i}: (a) raw git log {a:6.2f} s, {a_cpu:6.2f} s CPU (git"
            f" {git_rss / 1024:3.0f} MiB)   (b) full reconcile {b['seconds']:6.2f} s,"
            f" {b['cpu']:6.2f} s CPU   ratio b/a {b['seconds'] / a:4.2f} (CPU"
            f" {b['cpu'] / a_cpu:4.2f})"
        )
        if len(paths) > 1:
            print(
                f"           raw git logs, {CONCURRENCY} in parallel {a_par:6.2f} s"
                f"   ratio b/a(parallel) {b['seconds'] / a_par:4.2f}"
            )
    b = pairs[0][2]
    print(
        f"  (b) read {b['commits_read']} commits, stored {b['stored']} on default branches,"
        f" {b['linked']} linked, {b['closed']} closed, {b['unknown']} unknown keys;"
        f" peak RSS: python {b['python_rss_kib'] / 1024:.0f} MiB,"
        f" largest git child {b['git_rss_kib'] / 1024:.0f} MiB"
    )
    print(
        f"  (c) incremental, nothing new:    {c * 1000:7.1f} ms, {idle.commits_read} commits read"
    )
    print(f"  (d) incremental, 1 new commit:   {d * 1000:7.1f} ms, {one.commits_read} commits read")
    # several repos: against the same parallelism; one repo: against its one git log.
    # The median round: on a busy machine single rounds swing both ways.
    ratio = statistics.median(b["seconds"] / a_par for _, _, b, _, a_par in pairs)
    cpu = statistics.median(b["cpu"] / a_cpu for _, a_cpu, b, _, _ in pairs)
    return {"ratio": ratio, "cpu": cpu, "noop": idle.commits_read, "one": one.commits_read}


async def bench_todo() -> None:
    """TODO.md import: 1,000 and 5,000 `## Task N` specs into an empty backlog, then again."""
    times, sizes, again = {}, {}, {}
    for n in (1_000, 5_000):
        text = "# TODO\n\n" + "\n".join(
            f"## Task {i}\npriority: P2\nsteps:\n- first step of {i}\n- second step\n"
            for i in range(1, n + 1)
        )
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "TODO.md"
            path.write_text(text)
            sizes[n] = len(text.encode())
            async with fresh_database() as url:
                settings = load_settings(database_url=url, _env_file=None)
                pool = await create_pool(url, max_size=4)
                t = time.perf_counter()
                res = await TodoFiles(Backlog(pool, settings)).import_file(path, OP)
                times[n] = time.perf_counter() - t
                assert len(res.created) == n
                t = time.perf_counter()  # again: every spec matched and compared, none filed
                res = await TodoFiles(Backlog(pool, settings)).import_file(path, OP)
                again[n] = time.perf_counter() - t
                assert len(res.existing) == n
                await pool.close()
    print("\n== TODO.md import (drafts, one transaction, batched)")
    for n, s in times.items():
        print(
            f"  {n:5d} specs ({sizes[n] / 1e6:.2f} MB): {s:6.2f} s  ({s / n * 1000:.2f} ms/spec);"
            f" again (all in the backlog, synced): {again[n]:6.2f} s"
        )
    print(f"  ratio 5,000 / 1,000 = {times[5_000] / times[1_000]:.1f}   (linear: <= 5)")


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="ob-bench-repos-"))
    results = {}
    try:
        if args.profile in ("simple", "both"):
            n_tasks = max(100, args.repos * args.commits // 100)
            t = time.perf_counter()
            with ThreadPoolExecutor(CONCURRENCY) as ex:
                list(
                    ex.map(
                        lambda i: build_simple(root / f"simple{i:03d}", args.commits, n_tasks, i),
                        range(args.repos),
                    )
                )
            print(
                f"built {args.repos} simple repos x {args.commits} commits"
                f" in {time.perf_counter() - t:.1f} s"
            )
            paths = sorted(root.glob("simple*"))
            results["simple"] = await measure("simple", paths, n_tasks, args.rounds)
        if args.profile in ("realistic", "both"):
            n_tasks = max(100, args.real_repos * args.real_commits // 100)
            t = time.perf_counter()
            with ThreadPoolExecutor(2) as ex:
                list(
                    ex.map(
                        lambda i: build_realistic(
                            root / f"real{i:02d}", args.real_commits, args.branches, n_tasks, i
                        ),
                        range(args.real_repos),
                    )
                )
            print(
                f"built {args.real_repos} realistic repos x {args.real_commits} commits,"
                f" {args.branches} unmerged branches each, in {time.perf_counter() - t:.1f} s"
            )
            paths = sorted(root.glob("real*"))
            results["realistic"] = await measure("realistic", paths, n_tasks, args.rounds)
        if args.path:
            # a copy of the refs only would not do; the repository is read where it is, and
            # one commit is added to it and removed again afterwards
            p = Path(args.path).resolve()
            branch = default_branch(p)
            before = subprocess.run(
                ["git", "rev-parse", branch], cwd=p, capture_output=True, text=True, check=True
            ).stdout.strip()
            try:
                results[p.name] = await measure(f"{p.name} ({p})", [p], 1000, args.rounds)
            finally:
                subprocess.run(["git", "update-ref", f"refs/heads/{branch}", before], cwd=p)
        if args.profile == "fetch":
            from bench.reconcile_fetch import fetch_profile

            await fetch_profile(root, args, GIT_ENV)
            return
        if not args.no_todo:
            await bench_todo()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        "\nsummary (median round): "
        + ", ".join(
            f"{k}: b/a {v['ratio']:.2f} (CPU {v['cpu']:.2f}), no-op reads {v['noop']},"
            f" one new commit reads {v['one']}"
            for k, v in results.items()
        )
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--profile", choices=("simple", "realistic", "both", "fetch"), default="both")
    ap.add_argument("--repos", type=int, default=100, help="simple profile: repos")
    ap.add_argument("--commits", type=int, default=2000, help="simple profile: commits each")
    ap.add_argument("--real-repos", type=int, default=1, help="realistic profile: repos")
    ap.add_argument("--real-commits", type=int, default=80_000, help="realistic: commits each")
    ap.add_argument("--branches", type=int, default=300, help="realistic: unmerged branches")
    ap.add_argument("--rounds", type=int, default=2, help="paired (a)/(b) rounds")
    ap.add_argument("--path", help="also measure this existing repository (it is not copied)")
    ap.add_argument("--no-todo", action="store_true", help="skip the TODO.md import part")
    ap.add_argument("--fetch-repos", type=int, default=100, help="fetch profile: repos")
    ap.add_argument("--fetch-commits", type=int, default=200, help="fetch: commits each")
    ap.add_argument("--fetch-rounds", type=int, default=5, help="fetch: rounds of each kind")
    ap.add_argument("--child-full", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_full:
        print(json.dumps(asyncio.run(_child_full(args.child_full))))
    else:
        asyncio.run(main(args))
