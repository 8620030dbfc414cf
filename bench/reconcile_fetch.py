"""The fetch profile of `python -m bench.reconcile --profile fetch`: is the truth cheap to keep?

--fetch-repos repos (100), each a local bare "origin" of --fetch-commits commits, with two
clones: the operator's, registered with ob, and a baseline copy. Measured in the same run,
--fetch-rounds times, interleaved:

  (a) the baseline: raw `git fetch --prune origin` of every baseline clone, CONCURRENCY at a
      time (what fetching the same repos costs without ob);
  (b) an ob round: `Reconciler.run()` (fetch, read the refs, reconcile) of every registered
      clone at the same parallelism; ratio b/a (target <= 1.5), first with nothing new, then
      with one new commit in one origin (ob reads 1 commit and closes its task);
  (c) push-to-closed through the webhook: a commit `Closes OB-n` lands in an origin, a signed
      GitHub push webhook is posted to the gateway (over HTTP), and the time until the task is
      closed and its notice written (target: within 2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import statistics
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bench.common import fresh_database
from core.backlog import Backlog
from core.db import create_pool
from core.git.reconcile import Reconciler
from core.git.refresh import Refresher
from core.git.repos import Repos
from core.models import Actor, Lane
from core.settings import load_settings
from core.spec import make_spec
from gateway.app import create_app
from gateway.server import serving

SECRET = "bench-forge-secret"
OP = Actor.operator("bench")


def _git(cwd: Path, *args: str, env: dict[str, str]) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, check=True, text=True
    ).stdout.strip()


def build(root: Path, n: int, commits: int, env: dict[str, str]) -> list[tuple[Path, Path, Path]]:
    """(origin, operator's clone, baseline clone) for each of n repos."""
    from bench.reconcile import build_simple

    def one(i: int) -> tuple[Path, Path, Path]:
        work = root / f"seed{i:03d}"
        build_simple(work, commits, 100, i)
        origin = root / f"origin{i:03d}.git"
        _git(root, "clone", "-q", "--bare", str(work), str(origin), env=env)
        mine, base = root / f"repo{i:03d}", root / f"base{i:03d}"
        for clone in (mine, base):
            _git(root, "clone", "-q", str(origin), str(clone), env=env)
        return origin, mine, base

    with ThreadPoolExecutor(8) as ex:
        return list(ex.map(one, range(n)))


def raw_fetch_all(clones: list[Path], concurrency: int) -> float:
    def fetch(p: Path) -> None:
        subprocess.run(["git", "fetch", "--prune", "--quiet", "origin"], cwd=p, check=True)

    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(fetch, clones))
    return time.perf_counter() - t


async def ob_round(rec: Reconciler) -> tuple[float, dict[str, int]]:
    t = time.perf_counter()
    summary = await rec.run(discover_roots=False)
    seconds = time.perf_counter() - t
    if summary.errors or summary.fetch_errors:
        raise SystemExit(f"round failed: {(summary.errors or summary.fetch_errors)[0]}")
    counts = {
        "fetched": sum(r.fetched for r in summary.repos),
        "read": summary.commits_read,
        "closed": summary.total("closed"),
    }
    return seconds, counts


def github_push(origin: Path) -> bytes:
    return json.dumps(
        {"ref": "refs/heads/main", "repository": {"name": origin.stem, "clone_url": str(origin)}}
    ).encode()


async def webhook_latency(
    backlog: Backlog, repos: list[tuple[Path, Path, Path]], names: list[str], tries: int
) -> list[float]:
    from bench.reconcile import add_commit

    hooked = Backlog(
        backlog.pool, backlog.settings.model_copy(update={"forge_secret": SecretStr(SECRET)})
    )
    refresher = Refresher(hooked)
    stop = asyncio.Event()
    loop = asyncio.create_task(refresher.run(stop))
    out = []
    try:
        async with (
            serving(partial(create_app, hooked, refresher=refresher), "127.0.0.1", 0) as gw,
            httpx.AsyncClient(timeout=30) as http,
        ):
            for k in range(tries):
                i = (k * 37 + 11) % len(repos)
                origin = repos[i][0]
                task = await hooked.file(
                    make_spec(title=f"webhook {k}", repo=names[i]), OP, lane=Lane.AUTONOMOUS
                )
                await asyncio.to_thread(add_commit, origin, f"Fix\n\nCloses {task.key}\n")
                body = github_push(origin)
                sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                t = time.perf_counter()
                r = await http.post(
                    f"{gw.url}/v1/hooks/github",
                    content=body,
                    headers={
                        "X-GitHub-Event": "push",
                        "X-GitHub-Delivery": str(uuid.uuid4()),
                        "X-Hub-Signature-256": f"sha256={sig}",
                        "Content-Type": "application/json",
                    },
                )
                if r.status_code != 202:
                    raise SystemExit(f"webhook answered {r.status_code}: {r.text}")
                while not await hooked.pool.fetchval(
                    "select exists (select 1 from outbox o join tasks t on t.id = o.task_id"
                    " where t.number = $1 and o.kind = 'task_closed_by_commit')",
                    task.number,
                ):
                    if time.perf_counter() - t > 60:
                        raise SystemExit(f"{task.key} was not closed within 60 s")
                    await asyncio.sleep(0.005)
                out.append(time.perf_counter() - t)
    finally:
        stop.set()
        await loop
    return out


async def fetch_profile(root: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    from bench.reconcile import CONCURRENCY, add_commit

    for chatty in ("httpx", "mcp"):  # one line per webhook request otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)

    t = time.perf_counter()
    repos = await asyncio.to_thread(build, root, args.fetch_repos, args.fetch_commits, env)
    print(
        f"\nfetch profile: built {len(repos)} bare origins x {args.fetch_commits} commits with"
        f" two clones each in {time.perf_counter() - t:.1f} s"
    )
    async with fresh_database() as url:
        settings = load_settings(database_url=url, _env_file=None)
        pool = await create_pool(url, max_size=CONCURRENCY + 8)
        try:
            backlog = Backlog(pool, settings)
            names = []
            for _, mine, _ in repos:
                names.append((await Repos(backlog).add(mine, OP)).name)
            rec = Reconciler(backlog, concurrency=CONCURRENCY)
            first, counts = await ob_round(rec)
            print(f"  first ob round (fetch + full read): {first:.2f} s, {counts}")
            bases = [b for _, _, b in repos]
            raw_fetch_all(bases, CONCURRENCY)  # warm, like the ob clones

            async def paired(label: str, r: int) -> dict[str, Any]:
                """(a) then (b), once; printed."""
                a = raw_fetch_all(bases, CONCURRENCY)
                b, counts = await ob_round(rec)
                print(
                    f"  {label}, round {r + 1}: raw git fetch {a:.3f} s, ob round {b:.3f} s"
                    f" {counts}, b/a {b / a:.2f}"
                )
                return {"a": a, "b": b, **counts}

            rows = [await paired("nothing new", r) for r in range(args.fetch_rounds)]
            one: list[dict[str, Any]] = []
            for r in range(args.fetch_rounds):
                i = (r * 13 + 5) % len(repos)
                task = await backlog.file(
                    make_spec(title=f"one commit {r}", repo=names[i]), OP, lane=Lane.AUTONOMOUS
                )
                await asyncio.to_thread(add_commit, repos[i][0], f"Fix\n\nCloses {task.key}\n")
                one.append(await paired("one new commit", r))
            lat = await webhook_latency(backlog, repos, names, args.fetch_rounds)
        finally:
            await pool.close()

    def med(xs: list[dict[str, Any]], k: str) -> float:
        return statistics.median(x[k] for x in xs)

    print(
        f"\nfetch profile summary ({len(repos)} repos, {CONCURRENCY}-way, median of"
        f" {args.fetch_rounds}):\n"
        f"  nothing new:    raw git fetch --prune {med(rows, 'a'):.3f} s, ob round"
        f" {med(rows, 'b'):.3f} s, ratio {med(rows, 'b') / med(rows, 'a'):.2f} (target <= 1.5)\n"
        f"  one new commit: raw git fetch --prune {med(one, 'a'):.3f} s, ob round"
        f" {med(one, 'b'):.3f} s, ratio {med(one, 'b') / med(one, 'a'):.2f}; commits read"
        f" {med(one, 'read'):.0f}, closed {med(one, 'closed'):.0f}\n"
        f"  push to closed through the webhook: p50 {statistics.median(lat) * 1000:.0f} ms,"
        f" max {max(lat) * 1000:.0f} ms over {len(lat)} pushes (target <= 2000 ms)"
    )
