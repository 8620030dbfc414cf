"""Claim throughput: `python -m bench.claim [--tasks N] [--workers W]`.

One run, one PostgreSQL, W concurrent workers draining N ready tasks three ways:
  (a) baseline: a raw asyncpg `SKIP LOCKED` claim + fenced complete loop (no events, no outbox)
  (b) core: Leases.claim + Leases.complete (events, outbox, dependencies, expiry handling)
  (c) gateway: claim + complete over HTTP against `ob serve` running as its own process
Prints cycles/s for each, the ratios b/a and c/a, and claim latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import httpx

from bench.common import fresh_database, summary_ms
from core.agents import add_agent, authenticate
from core.backlog import Backlog
from core.db import create_pool
from core.leases import Leases
from core.models import Actor
from core.settings import load_settings

BASELINE_CLAIM = """
update tasks set status = 'claimed', lease_agent_id = $1, epoch = epoch + 1,
       lease_expires_at = now() + interval '30 minutes'
where id = (select id from tasks
            where status = 'open' and lane in ('autonomous_safe', 'requires_investigation')
            order by priority, id limit 1 for update skip locked)
returning id, epoch
"""
BASELINE_COMPLETE = """
update tasks set status = 'done', lease_agent_id = null, lease_expires_at = null
where id = $1 and status = 'claimed' and lease_agent_id = $2 and epoch = $3
  and lease_expires_at > now()
"""


@dataclass
class Result:
    name: str
    cycles: int = 0
    seconds: float = 0.0
    claim_latency: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds if self.seconds else 0.0


async def load(pool: asyncpg.Pool, n: int) -> None:
    await pool.execute("truncate events, outbox, task_deps, tasks restart identity cascade")
    await pool.execute(
        """insert into tasks (title, status, lane, priority, created_by, approved_by)
           select 'task ' || g, 'open', 'autonomous_safe', g % 4, 'operator:bench', 'operator:bench'
           from generate_series(1, $1) g""",
        n,
    )
    await pool.execute("analyze tasks")


async def drain(name: str, workers: int, cycle: Callable[[int, Result], Awaitable[bool]]) -> Result:
    result = Result(name)

    async def worker(i: int) -> None:
        while await cycle(i, result):
            result.cycles += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    result.seconds = time.perf_counter() - start
    return result


async def timed(result: Result, coro: Awaitable) -> object:
    t = time.perf_counter()
    value = await coro
    result.claim_latency.append(time.perf_counter() - t)
    return value


class RawClient:
    """A minimal keep-alive HTTP/1.1 JSON client, so the load generator spends little of the
    machine's two cores and the gateway, not httpx, is what is measured."""

    def __init__(self, host: str, port: int, token: str):
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = json.dumps(body or {}).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, json.loads(await self.reader.readexactly(length))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main(n_tasks: int, workers: int, with_http: bool = True) -> None:
    async with fresh_database() as url:
        settings = load_settings(database_url=url, _env_file=None)
        pool = await create_pool(url, max_size=workers + 4)
        backlog = Backlog(pool, settings)
        leases = Leases(backlog)
        tokens = [
            (await add_agent(backlog, f"bench{i}", Actor.operator("bench")))[1]
            for i in range(workers)
        ]
        actors = [await authenticate(backlog, t) for t in tokens]
        results = []

        # (a) baseline
        await load(pool, n_tasks)

        async def raw(i: int, r: Result) -> bool:
            async with pool.acquire() as conn:
                row = await timed(r, conn.fetchrow(BASELINE_CLAIM, actors[i].agent_id))
                if row is None:
                    return False
                await conn.execute(BASELINE_COMPLETE, row["id"], actors[i].agent_id, row["epoch"])
            return True

        results.append(await drain("a  raw SKIP LOCKED", workers, raw))

        # (b) core
        await load(pool, n_tasks)

        async def core(i: int, r: Result) -> bool:
            lease = await timed(r, leases.claim(actors[i]))
            if lease is None:
                return False
            await leases.complete(lease.key, actors[i], lease.epoch)
            return True

        results.append(await drain("b  core", workers, core))
        assert await pool.fetchval("select count(*) from tasks where status = 'done'") == n_tasks

        # (c) gateway over HTTP, `ob serve` in its own process
        if with_http:
            results.append(await gateway_run(url, pool, tokens, n_tasks, workers))
        await pool.close()

    report(results, n_tasks, workers)


async def gateway_run(
    url: str, pool: asyncpg.Pool, tokens: list[str], n_tasks: int, workers: int
) -> Result:
    await load(pool, n_tasks)
    port = free_port()
    env = {**os.environ, "OB_DATABASE_URL": url, "OB_GATEWAY_PORT": str(port)}
    env.pop("OB_BOT_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        clients = [RawClient("127.0.0.1", port, t) for t in tokens]

        async def http(i: int, r: Result) -> bool:
            c = clients[i]
            _, res = await timed(r, c.post("/v1/claim"))
            lease = res["lease"]
            if lease is None:
                return False
            status, done = await c.post(
                f"/v1/tasks/{lease['key']}/complete", {"epoch": lease["epoch"]}
            )
            assert status == 200, done
            return True

        result = await drain("c  gateway HTTP", workers, http)
        for c in clients:
            await c.close()
    finally:
        proc.terminate()
        proc.wait(10)
    assert await pool.fetchval("select count(*) from tasks where status = 'done'") == n_tasks
    return result


def report(results: list[Result], n_tasks: int, workers: int) -> None:
    a = results[0].rate
    print(
        f"\nclaim benchmark: {n_tasks} ready tasks, {workers} concurrent workers, one PostgreSQL\n"
    )
    for r in results:
        print(
            f"{r.name:<20} {r.rate:8.0f} cycles/s  ({r.cycles} in {r.seconds:5.1f} s)  "
            f"claim {summary_ms(r.claim_latency)}"
        )
    print(f"\nratio b/a = {results[1].rate / a:.2f}   (target >= 0.8)")
    if len(results) > 2:
        c = results[2]
        print(
            f"ratio c/a = {c.rate / a:.2f}   gateway: {c.rate:.0f} cycles/s (target >= 400), "
            f"p99 claim {summary_ms(c.claim_latency).split('p99')[1].split('ms')[0].strip()} ms "
            "(target < 50)"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--skip-http", action="store_true", help="Skip (c), the gateway run.")
    args = ap.parse_args()
    asyncio.run(main(args.tasks, args.workers, not args.skip_http))
