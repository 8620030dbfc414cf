"""Operator views on a large backlog: `python -m bench.views [--tasks N] [--runs R]`.

One run, one PostgreSQL, N tasks (default 100,000: most done, open work in every lane, drafts,
claimed tasks held by 8 agents, dependency chains; titles and notes with searchable words):
  `ob list`            open work by priority (TaskFilter())
  `ob list -q WORD`    text search in open work, a common and a rare word
  `/find WORD`         the bot's search, done and rejected tasks included, 25 rows
  gateway ready list   `GET /v1/tasks` (open, agent lanes, not blocked, 50 rows)
  digest               core.digest.Digests.build
Prints p50/p99 per view against the targets (list and find p99 <= 50 ms, digest <= 100 ms).
The process settles its heap after loading as `ob serve` does after start-up (gc.freeze);
`--no-settle` shows the full-collection pauses that otherwise land in p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

from bench.bot import load_digest_table
from bench.common import fresh_database, percentile, summary_ms
from cli.serve import settle_heap
from core.backlog import Backlog
from core.db import create_pool
from core.digest import Digests
from core.models import AGENT_LANES, Status
from core.settings import load_settings
from core.tasks import TaskFilter

COMMON, RARE = "billing", "w1234"


async def timings(call: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    await call()  # warm: plans and caches
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
    return out


async def main(n_tasks: int, runs: int, settle: bool) -> None:
    load_before = os.getloadavg()
    async with fresh_database() as url:
        settings = load_settings(database_url=url, _env_file=None)
        pool = await create_pool(url, max_size=4)
        backlog = Backlog(pool, settings)
        await load_digest_table(backlog, n_tasks)
        if settle:
            settle_heap()
        views: dict[str, tuple[Callable[[], Awaitable[object]], float]] = {
            "ob list": (lambda: backlog.list(TaskFilter()), 0.05),
            f"ob list -q {COMMON}": (lambda: backlog.list(TaskFilter(text=COMMON)), 0.05),
            f"ob list -q {RARE}": (lambda: backlog.list(TaskFilter(text=RARE)), 0.05),
            f"/find {COMMON}": (
                lambda: backlog.list(TaskFilter(text=COMMON, include_closed=True, limit=25)),
                0.05,
            ),
            f"/find {RARE}": (
                lambda: backlog.list(TaskFilter(text=RARE, include_closed=True, limit=25)),
                0.05,
            ),
            "GET /v1/tasks (core)": (
                lambda: backlog.list(
                    TaskFilter(
                        status=[Status.OPEN], lane=list(AGENT_LANES), blocked=False, limit=50
                    )
                ),
                0.05,
            ),
            "digest": (lambda: Digests(backlog).build(), 0.1),
        }
        results = {
            name: (await timings(call, runs), target) for name, (call, target) in views.items()
        }
        rows = {
            name: len(await call()) if name != "digest" else 1 for name, (call, _) in views.items()
        }
        await pool.close()
    loads = " -> ".join(" ".join(f"{x:.2f}" for x in la) for la in (load_before, os.getloadavg()))
    print(
        f"\nviews on {n_tasks:,} tasks, {runs} runs each, heap {'settled' if settle else 'not settled'};"
        f" load average {loads}\n"
    )
    for name, (times, target) in results.items():
        met = "met" if percentile(times, 99) <= target else "MISSED"
        print(
            f"{name:<24} {rows[name]:4} rows  {summary_ms(times)}  "
            f"(target p99 <= {target * 1000:.0f} ms: {met})"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--no-settle", dest="settle", action="store_false")
    args = ap.parse_args()
    asyncio.run(main(args.tasks, args.runs, args.settle))
