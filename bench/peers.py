"""Peer job queues for the claim benchmark: PgQueuer and procrastinate, when installed.

Each drain enqueues `n_jobs` jobs in bulk (not timed), then measures the wall time `workers`
concurrent consumers take to run them all through the library's own dequeue and completion
path, each job's handler an empty async function: from the first job taken (the first
handler call) to the moment the database shows every job finished. Nothing else is measured;
the caller measures CPU around the call. Each peer installs its schema in a schema of its
own (`peer_pgqueuer`, `peer_procrastinate`, reached through search_path), so nothing clashes
with the project's tables, and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from importlib import metadata

import asyncpg

PGQUEUER_SCHEMA = "peer_pgqueuer"
PROCRASTINATE_SCHEMA = "peer_procrastinate"
ENTRYPOINT = "peer_noop"
ENQUEUE_CHUNK = 10_000
POLL_SECONDS = 0.002


@dataclass
class PeerRun:
    name: str  # the library, its installed version and its configuration
    jobs: int  # jobs completed
    seconds: float  # first job taken -> last job finished

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


class _Handled:
    """Counts handler calls; notes the first and signals the n-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0
        self.first: float | None = None
        self.all = asyncio.Event()

    def hit(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.calls += 1
        if self.calls >= self.n:
            self.all.set()


async def _wait_finished(
    handled: _Handled,
    finished: Callable[[], Awaitable[int]],
    consumers: list[asyncio.Task[None]],
) -> float:
    """Wait until the database shows all `handled.n` jobs finished; returns that moment.

    Until every handler has run, nothing touches the database (no polling load during the
    drain); from then on the finished count is polled every POLL_SECONDS. Raises if a consumer
    dies or progress stalls for a minute."""
    last, stalled_since = -1, time.perf_counter()
    while not handled.all.is_set():
        for task in consumers:
            if task.done():
                raise RuntimeError(f"a consumer ended during the drain: {task!r}")
        if handled.calls != last:
            last, stalled_since = handled.calls, time.perf_counter()
        elif time.perf_counter() - stalled_since > 60:
            raise RuntimeError(f"drain stalled at {handled.calls} of {handled.n} jobs")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handled.all.wait(), 0.5)
    deadline = time.perf_counter() + 60
    while (count := await finished()) < handled.n:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {count} of {handled.n} jobs finished")
        await asyncio.sleep(POLL_SECONDS)
    return time.perf_counter()


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """The named loggers at WARNING for the duration, restored afterwards."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


async def _fresh_schema(admin: asyncpg.Connection, schema: str) -> None:
    await admin.execute(f"drop schema if exists {schema} cascade")
    await admin.execute(f"create schema {schema}")


def _validate(n_jobs: int, workers: int) -> None:
    if n_jobs < 1 or workers < 1:
        raise ValueError(f"need at least one job and one worker, got {n_jobs} and {workers}")


def _check(name: str, n_jobs: int, handled: _Handled, finished: int, distinct: int) -> None:
    if not (handled.calls == finished == distinct == n_jobs):
        raise RuntimeError(
            f"{name}: {n_jobs} jobs enqueued, handler ran {handled.calls} times, "
            f"{finished} finished ({distinct} distinct)"
        )


async def pgqueuer_drain(url: str, n_jobs: int, workers: int) -> PeerRun | None:
    """Drain `n_jobs` PgQueuer jobs with `workers` QueueManagers, batch size 1.

    "16 consumers" is `workers` QueueManager instances, each on its own asyncpg connection
    (PgQueuer's AsyncpgDriver, which it recommends), each run with batch_size=1: `workers`
    independent dequeue loops taking one job per dequeue statement. That is how PgQueuer's own
    drain benchmark (tools/benchmark.py: `--dequeue N --dequeue-batch-size B`) builds N
    consumers, and it matches bench.claim's `workers` claim loops. Everything else is the
    library default: completions go through its status-log buffer (flushed per job at batch
    size 1), LISTEN shares the consumer's connection, and no per-worker task cap. The
    SchedulerManager (cron) that the PgQueuer wrapper also starts has no part in a drain.
    """
    try:
        from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
    except ImportError:
        return None
    _validate(n_jobs, workers)
    name = f"PgQueuer {metadata.version('pgqueuer')} (batch 1)"
    settings = {"search_path": PGQUEUER_SCHEMA}

    with _quiet("pgqueuer"):
        admin = await asyncpg.connect(url)
        conns: list[asyncpg.Connection] = []
        try:
            await _fresh_schema(admin, PGQUEUER_SCHEMA)
            setup = await asyncpg.connect(url, server_settings=settings)
            try:
                queries = Queries(AsyncpgDriver(setup))
                await queries.install()
                for start in range(0, n_jobs, ENQUEUE_CHUNK):
                    k = min(ENQUEUE_CHUNK, n_jobs - start)
                    await queries.enqueue([ENTRYPOINT] * k, [None] * k, [0] * k)
            finally:
                await setup.close()
            await admin.execute(f"analyze {PGQUEUER_SCHEMA}.pgqueuer")

            handled = _Handled(n_jobs)
            managers = []
            for _ in range(workers):
                conn = await asyncpg.connect(url, server_settings=settings)
                conns.append(conn)
                qm = QueueManager(Queries(AsyncpgDriver(conn)))

                @qm.entrypoint(ENTRYPOINT)
                async def noop(job: Job) -> None:
                    handled.hit()

                managers.append(qm)

            consumers = [asyncio.create_task(qm.run(batch_size=1)) for qm in managers]
            try:
                end = await _wait_finished(
                    handled,
                    lambda: admin.fetchval(
                        f"select count(*) from {PGQUEUER_SCHEMA}.pgqueuer_log"
                        " where status = 'successful'"
                    ),
                    consumers,
                )
            finally:
                for qm in managers:
                    qm.shutdown.set()
                await asyncio.gather(*consumers, return_exceptions=True)
            assert handled.first is not None
            row = await admin.fetchrow(
                f"""select count(*) as finished, count(distinct job_id) as distinct_jobs,
                           (select count(*) from {PGQUEUER_SCHEMA}.pgqueuer) as left_in_queue
                    from {PGQUEUER_SCHEMA}.pgqueuer_log where status = 'successful'"""
            )
            if row["left_in_queue"]:
                raise RuntimeError(f"{name}: {row['left_in_queue']} jobs left in the queue")
            _check(name, n_jobs, handled, row["finished"], row["distinct_jobs"])
            return PeerRun(name, n_jobs, end - handled.first)
        finally:
            for conn in conns:
                await conn.close()
            await admin.execute(f"drop schema if exists {PGQUEUER_SCHEMA} cascade")
            await admin.close()


async def procrastinate_drain(url: str, n_jobs: int, workers: int) -> PeerRun | None:
    """Drain `n_jobs` procrastinate jobs with `workers` workers of concurrency 1.

    "16 workers" is `workers` procrastinate workers (`App.run_worker_async`, concurrency=1
    each), sharing one App and its psycopg (v3) async pool: `workers` independent fetch loops,
    each fetching a job, running it and recording its end before fetching the next, like
    `workers` `procrastinate worker` processes and like bench.claim's `workers` claim loops.
    One worker with concurrency=`workers` would have a single fetch loop (one job fetched at a
    time) feeding `workers` job slots: `workers` concurrent jobs but one dequeuer.
    """
    try:
        import procrastinate
    except ImportError:
        return None
    _validate(n_jobs, workers)
    name = f"procrastinate {metadata.version('procrastinate')}"
    connector = procrastinate.PsycopgConnector(
        conninfo=url,
        kwargs={"options": f"-c search_path={PROCRASTINATE_SCHEMA}"},
        # One pooled connection per worker (a fetch or a finish at a time) plus two for the
        # heartbeats; opened before the drain.
        min_size=workers + 2,
        max_size=workers + 2,
    )
    app = procrastinate.App(connector=connector)
    handled = _Handled(n_jobs)

    @app.task(name=ENTRYPOINT)
    async def noop() -> None:
        handled.hit()

    with _quiet("procrastinate"):
        admin = await asyncpg.connect(url)
        try:
            await _fresh_schema(admin, PROCRASTINATE_SCHEMA)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                for start in range(0, n_jobs, ENQUEUE_CHUNK):
                    k = min(ENQUEUE_CHUNK, n_jobs - start)
                    await noop.batch_defer_async(*({} for _ in range(k)))
                await admin.execute(f"analyze {PROCRASTINATE_SCHEMA}.procrastinate_jobs")

                # listen_notify=False: every job is queued before the drain and a worker keeps
                # fetching until it finds none, so LISTEN would only hold one idle connection
                # per worker. Signal handlers stay the caller's.
                consumers = [
                    asyncio.create_task(
                        app.run_worker_async(
                            name=f"peer{i}",
                            concurrency=1,
                            listen_notify=False,
                            install_signal_handlers=False,
                        )
                    )
                    for i in range(workers)
                ]
                try:
                    end = await _wait_finished(
                        handled,
                        lambda: admin.fetchval(
                            f"select count(*) from {PROCRASTINATE_SCHEMA}.procrastinate_jobs"
                            " where status = 'succeeded'"
                        ),
                        consumers,
                    )
                finally:
                    # Cancelling run_worker_async is procrastinate's graceful stop: the worker
                    # stops fetching, waits for its running jobs and unregisters itself.
                    for task in consumers:
                        task.cancel()
                    await asyncio.gather(*consumers, return_exceptions=True)
            assert handled.first is not None
            row = await admin.fetchrow(
                f"""select count(*) filter (where j.status = 'succeeded' and j.attempts = 1)
                               as finished,
                           (select count(distinct job_id)
                            from {PROCRASTINATE_SCHEMA}.procrastinate_events
                            where type = 'started') as distinct_jobs,
                           (select count(*) from {PROCRASTINATE_SCHEMA}.procrastinate_events
                            where type = 'started') as starts
                    from {PROCRASTINATE_SCHEMA}.procrastinate_jobs j"""
            )
            if row["starts"] != n_jobs:
                raise RuntimeError(f"{name}: {row['starts']} job starts for {n_jobs} jobs")
            _check(name, n_jobs, handled, row["finished"], row["distinct_jobs"])
            return PeerRun(name, n_jobs, end - handled.first)
        finally:
            await admin.execute(f"drop schema if exists {PROCRASTINATE_SCHEMA} cascade")
            await admin.close()
