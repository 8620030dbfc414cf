"""Claim throughput: `python -m bench.claim [--tasks N] [--workers W]`.

One run, one PostgreSQL, W concurrent workers draining N ready tasks these ways:
  (a0) physical limit: the raw claim + fenced complete loop on a minimal queue table (id,
       status, priority, lease holder, expiry, epoch, one partial index) in the same database
  (a1) the audited baseline: a0 plus what every ob transition must write, each by the
       transition's own statement (CTEs): an event row per claim and per completion and an
       outbox row per completion (minimal event and outbox tables)
  (a)  the raw loop on the project's own tables (no events, no outbox)
  (b)  core: Leases.claim + Leases.complete (events, outbox, dependencies, expiry handling)
  (c)  gateway: claim + complete over HTTP against `ob serve` running as its own process
  and, when installed, peers: PgQueuer and procrastinate draining as many empty jobs with as
  many consumers (bench/peers.py).
Prints cycles/s, claim latency percentiles, PostgreSQL and Python CPU per cycle (PostgreSQL:
the processes serving the benchmark's database and the server's own, read from /proc; Python:
this process, plus `ob serve`'s for c), WAL bytes and row updates (with the share that were HOT)
per cycle, and the ratios against a1 (targets: b >= 0.7, c >= 0.45 with claim p99 < 25 ms,
both >= 2x each peer) and a0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from bench.common import Served, fresh_database, percentile, summary_ms
from bench.peers import pgqueuer_drain, procrastinate_drain
from core.agents import Agents
from core.backlog import Backlog
from core.db import create_pool
from core.leases import Leases
from core.models import Actor
from core.settings import load_settings

# The physical-limit proxy: a minimal queue table in the same database.
QUEUE_DDL = """
create table bench_queue (
    id               bigserial primary key,
    status           text not null,
    priority         smallint not null,
    lease_agent_id   bigint,
    lease_expires_at timestamptz,
    epoch            bigint not null default 0
);
create index bench_queue_ready_idx on bench_queue (priority, id) where status = 'open'
"""


QUEUE_CLAIM = """
update bench_queue set status = 'claimed', lease_agent_id = $1, epoch = epoch + 1,
       lease_expires_at = now() + interval '30 minutes'
where id = (select id from bench_queue where status = 'open'
            order by priority, id limit 1 for update skip locked)
returning id, epoch
"""
QUEUE_COMPLETE = """
update bench_queue set status = 'done', lease_agent_id = null, lease_expires_at = null
where id = $1 and status = 'claimed' and lease_agent_id = $2 and epoch = $3
  and lease_expires_at > now()
"""

# a1: the same loop, each transition writing its event (and a completion its outbox row) in
# its own statement, as every ob transition must.
AUDIT_DDL = """
create table bench_events (
    id bigserial primary key, task_id bigint, at timestamptz not null default now(),
    actor text not null, kind text not null, details jsonb not null default '{}'
);
create index bench_events_task_idx on bench_events (task_id, id);
create table bench_outbox (
    id bigserial primary key, kind text not null, task_id bigint, payload jsonb not null,
    created_at timestamptz not null default now(), delivered_at timestamptz
);
create index bench_outbox_pending_idx on bench_outbox (id) where delivered_at is null
"""
AUDITED_CLAIM = """
with c as (
    update bench_queue set status = 'claimed', lease_agent_id = $1, epoch = epoch + 1,
           lease_expires_at = now() + interval '30 minutes'
    where id = (select id from bench_queue where status = 'open'
                order by priority, id limit 1 for update skip locked)
    returning id, epoch, lease_expires_at
),
ev as (
    insert into bench_events (task_id, actor, kind, details)
    select id, 'agent:' || $1, 'claimed',
           jsonb_build_object('epoch', epoch, 'expires_at', lease_expires_at)
    from c
)
select id, epoch from c
"""
AUDITED_COMPLETE = """
with c as (
    update bench_queue set status = 'done', lease_agent_id = null, lease_expires_at = null
    where id = $1 and status = 'claimed' and lease_agent_id = $2 and epoch = $3
      and lease_expires_at > now()
    returning id, epoch
),
ev as (
    insert into bench_events (task_id, actor, kind, details)
    select id, 'agent:' || $2, 'completed', jsonb_build_object('epoch', epoch) from c
)
insert into bench_outbox (kind, task_id, payload)
select 'task_completed', id, jsonb_build_object('task', id, 'by', 'agent:' || $2) from c
"""

# The same loop on the project's tables: the claim takes the lease row, the completion ends
# the lease (the task stops being ready, as core's completion says) and marks the task done.
TASKS_CLAIM = """
update task_leases set lease_agent_id = $1, epoch = epoch + 1,
       lease_expires_at = now() + interval '30 minutes'
where task_id = (select task_id from task_leases where ready and lease_agent_id is null
                 order by priority, task_id limit 1 for update skip locked)
returning task_id as id, epoch
"""
TASKS_COMPLETE = """
with l as (
    update task_leases set lease_agent_id = null, lease_expires_at = null, ready = false
    where task_id = $1 and lease_agent_id = $2 and epoch = $3 and lease_expires_at > now()
    returning task_id
)
update tasks t set status = 'done' from l where t.id = l.task_id
"""


def cpu_seconds(pid: int) -> float | None:
    """A local process's CPU time so far (user + system), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The server processes whose CPU a run costs: the backends of this database and the server's
# own (WAL writer, checkpointer, ...). Backends of other databases are not counted.
_PG_PIDS = """
select pid from pg_stat_activity
where datname = current_database() or backend_type <> 'client backend'
"""


@dataclass
class Counters:
    """The WAL position, this database's row-update counts, and CPU seconds so far: of the
    server's processes (by pid) and of the Python processes under test."""

    wal: int = 0
    updates: int = 0
    hot: int = 0
    pg: dict[int, float] = field(default_factory=dict)
    py: float = 0.0  # this process
    served: float = 0.0  # `ob serve`, for c

    def __sub__(self, other: Counters) -> Counters:
        pg = {p: t - other.pg.get(p, 0.0) for p, t in self.pg.items()}
        return Counters(
            self.wal - other.wal,
            self.updates - other.updates,
            self.hot - other.hot,
            pg,
            self.py - other.py,
            self.served - other.served,
        )

    @property
    def pg_seconds(self) -> float | None:
        return sum(self.pg.values()) if self.pg else None


async def counters(pool: asyncpg.Pool, served: Served | None = None) -> Counters:
    """Read once every pool connection has flushed its statistics: a backend flushes them when
    it goes idle at least a second after its last flush (server processes flush as they exit).
    The WAL position is the cluster's: other databases' writes count too."""
    await asyncio.sleep(1.1)
    conns = [await pool.acquire() for _ in range(pool.get_size())]
    for conn in conns:
        await conn.execute("select 1")
        await pool.release(conn)
    row = await pool.fetchrow(
        """select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint as wal,
                  sum(n_tup_upd)::bigint as updates, sum(n_tup_hot_upd)::bigint as hot
           from pg_stat_user_tables"""
    )
    pg = {}
    for r in await pool.fetch(_PG_PIDS):
        seconds = cpu_seconds(r["pid"])
        if seconds is not None:
            pg[r["pid"]] = seconds
    served_cpu = (cpu_seconds(served.proc.pid) or 0.0) if served is not None else 0.0
    return Counters(row["wal"], row["updates"], row["hot"], pg, time.process_time(), served_cpu)


@dataclass
class Result:
    name: str
    cycles: int = 0
    seconds: float = 0.0
    claim_latency: list[float] = field(default_factory=list)
    cost: Counters = field(default_factory=Counters)

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        per = max(self.cycles, 1)
        hot = self.cost.hot / self.cost.updates if self.cost.updates else 0.0
        pg = self.cost.pg_seconds
        python = f"Python {self.cost.py / per * 1e6:4.0f} us"
        if self.cost.served:
            python = f"Python {self.cost.served / per * 1e6:4.0f} us + client{python[6:]}"
        cpu = (
            f"CPU/cycle PG {pg / per * 1e6:4.0f} us " if pg is not None else "CPU/cycle PG  n/a    "
        )
        cpu += python
        latency = f"claim {summary_ms(self.claim_latency)}  " if self.claim_latency else ""
        return (
            f"{self.name:<22} {self.rate:6.0f} cycles/s  ({self.cycles} in {self.seconds:5.1f} s)"
            f"  {latency}{cpu}  WAL {self.cost.wal / per:5.0f} B/cycle  "
            f"{self.cost.updates / per:3.1f} row updates/cycle ({hot:4.0%} HOT)"
        )


async def load_queue(pool: asyncpg.Pool, n: int) -> None:
    """A fresh minimal queue (a0) with its minimal event and outbox tables (a1)."""
    await pool.execute("drop table if exists bench_queue, bench_events, bench_outbox")
    await pool.execute(QUEUE_DDL)
    await pool.execute(AUDIT_DDL)
    await pool.execute(
        "insert into bench_queue (status, priority) select 'open', g % 4"
        " from generate_series(1, $1) g",
        n,
    )
    await pool.execute("analyze bench_queue")


# Tasks the size of real specs: a title, a repo, four steps, two risks, a paragraph of notes.
SPEC_COLUMNS = """
    'Migrate ingest worker ' || g || ' to asyncpg and retire the psycopg2 pool',
    'repo' || g % 10,
    array['swap psycopg2 for asyncpg in ingest/db.py', 'port the retry loop to the new pool',
          'run the 10k-row load test against staging', 'watch p99 latency for a day'],
    array['connection leak under cancellation', 'prepared statements behind pgbouncer'],
    repeat('Pool exhaustion alerts fired twice this week during the nightly ingest run. ', 6)
        || 'Ticket ' || g
"""


async def load(pool: asyncpg.Pool, n: int) -> None:
    await pool.execute(
        "truncate events, outbox, task_deps, task_leases, tasks restart identity cascade"
    )
    await pool.execute(
        f"""insert into tasks (title, repo, steps, risks, notes, status, lane, priority,
                               created_by, approved_by)
            select {SPEC_COLUMNS}, 'open', 'autonomous_safe', g % 4, 'operator:bench',
                   'operator:bench'
            from generate_series(1, $1) g""",
        n,
    )
    await pool.execute("analyze tasks, task_leases")


async def drain(
    pool: asyncpg.Pool,
    name: str,
    workers: int,
    cycle: Callable[[int, Result], Awaitable[bool]],
    served: Served | None = None,
) -> Result:
    """Run `workers` loops of `cycle` until each finds nothing; `served`: the `ob serve`
    under test, whose CPU counts too."""
    result = Result(name)

    async def worker(i: int) -> None:
        while await cycle(i, result):
            result.cycles += 1

    before = await counters(pool, served)
    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    result.seconds = time.perf_counter() - start
    result.cost = await counters(pool, served) - before
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


def raw_loop(
    pool: asyncpg.Pool, actors: list[Actor], claim: str, complete: str
) -> Callable[[int, Result], Awaitable[bool]]:
    async def cycle(i: int, r: Result) -> bool:
        agent_id = actors[i].agent_id
        async with pool.acquire() as conn:
            row = await timed(r, conn.fetchrow(claim, agent_id))
            if row is None:
                return False
            await conn.execute(complete, row["id"], agent_id, row["epoch"])
        return True

    return cycle


async def main(n_tasks: int, workers: int, with_http: bool = True, with_peers: bool = True) -> None:
    load_before = os.getloadavg()
    async with fresh_database() as url:
        settings = load_settings(database_url=url, _env_file=None)
        pool = await create_pool(url, max_size=workers + 4)
        backlog = Backlog(pool, settings)
        leases = Leases(backlog)
        tokens = [
            (await Agents(backlog).add(f"bench{i}", Actor.operator("bench")))[1]
            for i in range(workers)
        ]
        actors = [await Agents(backlog).authenticate(t) for t in tokens]
        results = []

        # (a0) the physical-limit proxy: a minimal queue table
        await load_queue(pool, n_tasks)
        queue = raw_loop(pool, actors, QUEUE_CLAIM, QUEUE_COMPLETE)
        results.append(await drain(pool, "a0 minimal queue", workers, queue))

        # (a1) the same, each transition writing its event and outbox rows
        await load_queue(pool, n_tasks)
        audited = raw_loop(pool, actors, AUDITED_CLAIM, AUDITED_COMPLETE)
        results.append(await drain(pool, "a1 audited queue", workers, audited))

        # (a) the same raw loop on the project's tables
        await load(pool, n_tasks)
        raw = raw_loop(pool, actors, TASKS_CLAIM, TASKS_COMPLETE)
        results.append(await drain(pool, "a  raw on tasks", workers, raw))

        # (b) core
        await load(pool, n_tasks)

        async def core(i: int, r: Result) -> bool:
            lease = await timed(r, leases.claim(actors[i]))
            if lease is None:
                return False
            await leases.complete(lease.key, actors[i], lease.epoch)
            return True

        results.append(await drain(pool, "b  core", workers, core))
        assert await pool.fetchval("select count(*) from tasks where status = 'done'") == n_tasks

        # (c) gateway over HTTP, `ob serve` in its own process
        if with_http:
            results.append(await gateway_run(url, pool, tokens, n_tasks, workers))

        # peers, when installed: the same number of empty jobs, as many consumers
        peers = []
        if with_peers:
            for run in (pgqueuer_drain, procrastinate_drain):
                before = await counters(pool)
                got = await run(url, n_tasks, workers)
                if got is not None:
                    peer = Result(got.name, got.jobs, got.seconds)
                    peer.cost = await counters(pool) - before
                    peer.cost.pg = {}  # its connections ended with the drain: not measured
                    peers.append(peer)
        await pool.close()

    report(results, peers, with_peers, n_tasks, workers, load_before, os.getloadavg())


async def gateway_run(
    url: str, pool: asyncpg.Pool, tokens: list[str], n_tasks: int, workers: int
) -> Result:
    await load(pool, n_tasks)
    served = Served(url)
    clients = [RawClient("127.0.0.1", served.port, t) for t in tokens]
    try:
        await served.ready()

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

        result = await drain(pool, "c  gateway HTTP", workers, http, served)
    finally:
        for c in clients:
            await c.close()
        await served.stop()
    assert await pool.fetchval("select count(*) from tasks where status = 'done'") == n_tasks
    return result


def report(
    results: list[Result],
    peers: list[Result],
    with_peers: bool,
    n_tasks: int,
    workers: int,
    load_before: tuple[float, ...],
    load_after: tuple[float, ...],
) -> None:
    loads = " -> ".join(" ".join(f"{x:.2f}" for x in la) for la in (load_before, load_after))
    print(
        f"\nclaim benchmark: {n_tasks} ready tasks, {workers} concurrent workers, one PostgreSQL"
        f"\n{os.cpu_count()} CPUs, load average (1, 5, 15 min) {loads}\n"
    )
    for r in [*results, *peers]:
        print(r.line())
    by = {r.name.split()[0]: r for r in results}
    a0, a1, b = by["a0"].rate, by["a1"].rate, by["b"].rate
    print(f"\nratio b/a1 = {b / a1:.2f}   (target >= 0.7)   b/a0 = {b / a0:.2f}")
    if "c" in by:
        c = by["c"]
        p99 = percentile([v * 1000 for v in c.claim_latency], 99)
        print(
            f"ratio c/a1 = {c.rate / a1:.2f}   (target >= 0.45, claim p99 {p99:.1f} ms, target"
            f" < 25)   c/a0 = {c.rate / a0:.2f}"
        )
    for p in peers:
        vs = f"b/peer = {b / p.rate:.2f}" + (
            f"   c/peer = {by['c'].rate / p.rate:.2f}" if "c" in by else ""
        )
        print(f"{p.name}: {vs}   (target >= 2)")
    if with_peers and not peers:
        print("peers: none installed (pip install pgqueuer procrastinate to compare)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--skip-http", action="store_true", help="Skip (c), the gateway run.")
    ap.add_argument("--skip-peers", action="store_true", help="Skip PgQueuer and procrastinate.")
    args = ap.parse_args()
    asyncio.run(main(args.tasks, args.workers, not args.skip_http, not args.skip_peers))
