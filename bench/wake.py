"""Waking waiting agents: `python -m bench.wake [--rounds N] [--waiters W]`.

One run, one PostgreSQL, `ob serve` in its own process (its gateway over HTTP). Each round, an
agent's draft is approved into the autonomous lane (core, as `ob approve` does: its transaction
commits inside the call) and the time from the start of that call to the agent's claim answer
is measured three ways:
  (a) raw LISTEN/NOTIFY: the round trip of a bare NOTIFY to a LISTEN connection, the floor
  (b) polling: an agent that claims, and with nothing ready sleeps 1 s and claims again
  (c) waiting: an agent whose claim waits (`wait_seconds`) and is woken by the approval
Prints p50/p99 of each and the ratios c/b and c/a; then the database connections `ob serve`
holds idle and with W (default 100) claims waiting, and how many of them are in use; and a
stampede check: 16 waiting agents, 4 approvals, how many claims answer.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import asyncpg

from bench.claim import RawClient
from bench.common import Served, fresh_database, percentile, summary_ms
from core.agents import Agents
from core.backlog import Backlog
from core.db import create_pool
from core.leases import Leases
from core.models import Actor, Lane
from core.settings import load_settings
from core.spec import make_spec

OP = Actor.operator("bench")
CONNECTIONS = "select count(*) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()"
IN_USE = CONNECTIONS + " and state <> 'idle'"


class Bench:
    def __init__(self, backlog: Backlog, served: Served, tokens: list[str], agents: list[Actor]):
        self.backlog = backlog
        self.leases = Leases(backlog)
        self.served = served
        self.tokens = tokens
        self.agents = agents
        self.approvals: list[float] = []  # how long the approve calls themselves took

    def client(self, i: int = 0) -> RawClient:
        return RawClient("127.0.0.1", self.served.port, self.tokens[i])

    async def approve_one(self) -> float:
        """File an agent's draft, then approve it; returns when the approval started."""
        draft = await self.backlog.file(make_spec(title="wake me"), self.agents[-1])
        start = time.perf_counter()
        await self.backlog.approve(draft.key, OP, Lane.AUTONOMOUS)
        self.approvals.append(time.perf_counter() - start)
        return start

    async def finish(self, lease: dict) -> None:
        """Complete the claimed task, so the next round starts with nothing ready."""
        holder = next(a for a in self.agents if a.name == lease["task"]["lease_holder"])
        await self.leases.complete(lease["key"], holder, lease["epoch"])

    async def rounds(self, n: int, one: Callable[[], Awaitable[float]]) -> list[float]:
        return [await one() for _ in range(n)]

    async def waiting(self) -> float:
        c = self.client()
        claim = asyncio.create_task(c.post("/v1/claim", {"wait_seconds": 60}))
        await asyncio.sleep(0.2)  # the claim found nothing and waits
        start = await self.approve_one()
        _, res = await claim
        took = time.perf_counter() - start
        await c.close()
        await self.finish(res["lease"])
        return took

    async def polling(self) -> float:
        c = self.client()
        found: asyncio.Future[tuple[float, dict]] = asyncio.get_running_loop().create_future()

        async def poll() -> None:
            while True:
                _, res = await c.post("/v1/claim", {})
                if res["lease"] is not None:
                    found.set_result((time.perf_counter(), res["lease"]))
                    return
                await asyncio.sleep(1.0)

        poller = asyncio.create_task(poll())
        await asyncio.sleep(random.uniform(0.05, 1.0))  # the approval lands at any phase
        start = await self.approve_one()
        at, lease = await found
        await poller
        await c.close()
        await self.finish(lease)
        return at - start


async def raw_notify(url: str, n: int) -> list[float]:
    listener = await asyncpg.connect(url)
    sender = await asyncpg.connect(url)
    got: asyncio.Queue[float] = asyncio.Queue()
    await listener.add_listener("bench_wake", lambda *_: got.put_nowait(time.perf_counter()))
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await sender.execute("select pg_notify('bench_wake', '')")
        out.append(await got.get() - start)
    await listener.close()
    await sender.close()
    return out


async def served(pool: asyncpg.Pool, db: str, sql: str) -> int:
    """Connections to the database other than this bench's own (ob serve's)."""
    async with pool.acquire() as conn:  # the others of the bench's pool are idle, not ob's
        return int(await conn.fetchval(sql, db)) - (pool.get_size() - 1)


async def connections(bench: Bench, pool: asyncpg.Pool, db: str, waiters: int) -> str:
    idle = await served(pool, db, CONNECTIONS)
    clients = [bench.client(i % len(bench.tokens)) for i in range(waiters)]
    claims = [asyncio.create_task(c.post("/v1/claim", {"wait_seconds": 60})) for c in clients]
    await asyncio.sleep(2.0)  # every claim has looked once and waits
    held = await served(pool, db, CONNECTIONS)
    busy = await pool.fetchval(IN_USE, db)
    waiting = sum(not c.done() for c in claims)
    for c in clients:
        await c.close()
    for t in claims:
        t.cancel()
    await asyncio.sleep(1.0)  # the server sees them hang up
    return (
        f"connections of ob serve (a pool of at most 20, and its listeners): {idle} before; "
        f"with {waiting} claims waiting {held}, of which {busy} in use"
    )


async def stampede(bench: Bench) -> str:
    clients = [bench.client(i) for i in range(16)]
    claims = [asyncio.create_task(c.post("/v1/claim", {"wait_seconds": 60})) for c in clients]
    await asyncio.sleep(1.0)
    for _ in range(4):
        await bench.approve_one()
    await asyncio.sleep(2.0)
    answered = [t.result()[1]["lease"] for t in claims if t.done()]
    keys = {lease["key"] for lease in answered if lease}
    for c in clients:
        await c.close()
    for t in claims:
        t.cancel()
    for lease in answered:
        if lease:
            await bench.finish(lease)
    return (
        f"16 waiting agents, 4 approvals: {len(answered)} claims answered, {len(keys)} distinct "
        f"tasks, {16 - len(answered)} still waiting"
    )


async def main(rounds: int, waiters: int) -> None:
    async with fresh_database() as url:
        settings = load_settings(database_url=url, _env_file=None)
        pool = await create_pool(url, max_size=4)
        backlog = Backlog(pool, settings)
        tokens = [(await Agents(backlog).add(f"bench{i}", OP))[1] for i in range(17)]
        agents = [await Agents(backlog).authenticate(t) for t in tokens]
        served = Served(url)
        try:
            await served.ready()
            bench = Bench(backlog, served, tokens, agents)
            raw = await raw_notify(url, rounds)
            await bench.rounds(3, bench.waiting)  # warm: plans, connections
            bench.approvals.clear()
            waited = await bench.rounds(rounds, bench.waiting)
            approvals = list(bench.approvals)
            polled = await bench.rounds(rounds, bench.polling)
            db = url.rsplit("/", 1)[1]
            conns = await connections(bench, pool, db, waiters)
            herd = await stampede(bench)
        finally:
            await served.stop()
            await pool.close()
    print(f"\nwake-up latency, approval (its commit) -> the claim's answer, {rounds} rounds each\n")
    print(f"a  raw LISTEN/NOTIFY round trip   {summary_ms(raw)}")
    print(f"b  polling client, every 1 s      {summary_ms(polled)}")
    print(f"c  waiting claim (wait_seconds)   {summary_ms(waited)}")
    print(f"   of which the approve call      {summary_ms(approvals)}")
    p50 = {k: percentile(v, 50) for k, v in (("a", raw), ("b", polled), ("c", waited))}
    print(
        f"\nratio c/b p50 = {p50['c'] / p50['b']:.3f} (waiting vs polling)   "
        f"c/a p50 = {p50['c'] / p50['a']:.1f} (waiting vs the bare NOTIFY floor)"
    )
    print(conns)
    print(herd)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--waiters", type=int, default=100)
    args = ap.parse_args()
    asyncio.run(main(args.rounds, args.waiters))
