"""Nothing in `ob serve` fails silently: every background loop and job runs under a supervisor
that logs an unexpected error with its traceback, restarts the loop with backoff, and keeps a
status board of every part, in memory (the gateway's health) and in PostgreSQL (`ob status`,
the digest). An unknown error is treated as transient: the part keeps trying, and shows that
it is failing until it succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from core.backlog import Backlog
from core.db import UNAVAILABLE
from core.service import Service

log = logging.getLogger("ob.supervise")

BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
FLUSH_EVERY = 15.0  # seconds between writes of an unchanged board (a process's heartbeat)
GONE_AFTER = 120.0  # a process whose board is older than this is shown as gone


def worker_name() -> str:
    """This process, as the status board and the outbox name it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class PartState(StrEnum):
    RUNNING = "running"  # a loop that is up
    OK = "ok"  # a job whose last run succeeded
    FAILING = "failing"  # the last run or the loop failed; it is retrying
    STOPPED = "stopped"  # shut down on purpose
    OFF = "off"  # not configured (e.g. no bot token)


class Part(BaseModel):
    name: str
    state: PartState
    detail: str | None = None
    last_ok_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failures: int = 0  # in a row
    updated_at: datetime


class WorkerStatus(BaseModel):
    worker: str
    seen_at: datetime
    gone: bool
    parts: list[Part]


def _now() -> datetime:
    return datetime.now(UTC)


def describe(err: BaseException) -> str:
    text = str(err).strip().replace("\n", " ")
    return f"{type(err).__name__}: {text}"[:500] if text else type(err).__name__


_UPSERT = """
insert into service_parts (worker, part, state, detail, last_ok_at, last_error, last_error_at,
                           failures, updated_at)
select $1, p.part, p.state, p.detail, p.last_ok_at, p.last_error, p.last_error_at, p.failures,
       now()
from unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
            $7::timestamptz[], $8::int[])
    as p(part, state, detail, last_ok_at, last_error, last_error_at, failures)
on conflict (worker, part) do update set
    state = excluded.state, detail = excluded.detail, last_ok_at = excluded.last_ok_at,
    last_error = excluded.last_error, last_error_at = excluded.last_error_at,
    failures = excluded.failures, updated_at = now()
"""


class Board(Service):
    """The parts of this process and how each is doing, flushed to PostgreSQL."""

    def __init__(self, backlog: Backlog, worker: str):
        super().__init__(backlog)
        self.worker = worker
        self.parts: dict[str, Part] = {}
        self._flushed_at = 0.0
        self._dirty = False

    def set(self, name: str, state: PartState, detail: str | None = None) -> None:
        part = self.parts.get(name)
        now = _now()
        if part is None:
            part = self.parts[name] = Part(name=name, state=state, updated_at=now)
        part.state, part.updated_at = state, now
        if detail is not None:
            part.detail = detail
        if state in (PartState.OK, PartState.RUNNING):
            part.last_ok_at, part.failures = now, 0
        self._dirty = True

    def failed(self, name: str, err: BaseException) -> None:
        self.set(name, PartState.FAILING)
        part = self.parts[name]
        part.last_error, part.last_error_at = describe(err), _now()
        part.failures += 1

    async def flush(self, *, force: bool = False) -> None:
        """Write the board (on a change, else at most every FLUSH_EVERY seconds); a database
        that is down only delays it."""
        due = time.monotonic() - self._flushed_at >= FLUSH_EVERY
        if not (force or self._dirty or due) or not self.parts:
            return
        parts = list(self.parts.values())
        try:
            await self.pool.execute(
                _UPSERT,
                self.worker,
                [p.name for p in parts],
                [p.state.value for p in parts],
                [p.detail for p in parts],
                [p.last_ok_at for p in parts],
                [p.last_error for p in parts],
                [p.last_error_at for p in parts],
                [p.failures for p in parts],
            )
        except UNAVAILABLE as err:
            log.debug("status board not written (%s)", err)
            return
        self._flushed_at, self._dirty = time.monotonic(), False

    async def forget(self) -> None:
        """This process is going away on purpose: take its board down."""
        with contextlib.suppress(*UNAVAILABLE):
            await self.pool.execute("delete from service_parts where worker = $1", self.worker)


class StatusBoards(Service):
    """Every `ob serve` process's status board (`ob status`)."""

    async def read(self) -> list[WorkerStatus]:
        """Every process's status board (`ob status`), newest first; old ones marked gone."""
        rows = await self.pool.fetch(
            "select *, extract(epoch from now() - updated_at) as age from service_parts"
            " order by worker, part"
        )
        by_worker: dict[str, list[Any]] = {}
        for r in rows:
            by_worker.setdefault(r["worker"], []).append(r)
        out = []
        for worker, parts in by_worker.items():
            seen = max(p["updated_at"] for p in parts)
            age = min(float(p["age"]) for p in parts)
            out.append(
                WorkerStatus(
                    worker=worker,
                    seen_at=seen,
                    gone=age > GONE_AFTER,
                    parts=[
                        Part(
                            **{k: v for k, v in dict(p).items() if k in Part.model_fields},
                            name=p["part"],
                        )
                        for p in parts
                    ],
                )
            )
        out.sort(key=lambda w: w.seen_at, reverse=True)
        return out


class Supervisor:
    """Runs the loops and jobs of `ob serve` under supervision."""

    def __init__(self, backlog: Backlog, worker: str | None = None):
        self.board = Board(backlog, worker or worker_name())
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Keep the board flushed (a live process's heartbeat) until stop()."""
        self._tasks.append(asyncio.create_task(self.heartbeat(), name="ob-status-board"))

    def off(self, name: str, why: str) -> None:
        self.board.set(name, PartState.OFF, why)

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Keep `run` going until stop(): if it raises (or returns) it is logged, the part shows
        as failing, and it starts again after a backoff (1 s, doubling up to a minute)."""
        self._tasks.append(asyncio.create_task(self._keep(name, run), name=f"ob-{name}"))

    def beat(self, name: str, detail: str | None = None) -> None:
        """A loop says it is alive and well (after a good round)."""
        self.board.set(name, PartState.RUNNING, detail)

    def job(
        self, name: str, fn: Callable[..., Awaitable[object]]
    ) -> Callable[..., Awaitable[None]]:
        """A scheduled job that records each run and never raises into the scheduler."""

        async def run(*args: Any, **kwargs: Any) -> None:
            try:
                result = await fn(*args, **kwargs)
            except Exception as err:
                log.exception("%s failed; it runs again at its next time", name)
                self.board.failed(name, err)
            else:
                self.board.set(name, PartState.OK, result if isinstance(result, str) else None)
            await self.board.flush()

        run.__name__ = run.__qualname__ = name
        return run

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        delay = BACKOFF_MIN
        while not self.stopping.is_set():
            self.board.set(name, PartState.RUNNING)
            await self.board.flush()
            started = time.monotonic()
            try:
                await run()
                if self.stopping.is_set():
                    break
                raise RuntimeError("the loop ended by itself")
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.exception("%s failed; restarting in %.0fs", name, delay)
                self.board.failed(name, err)
                await self.board.flush()
            if time.monotonic() - started > 10 * BACKOFF_MAX:
                delay = BACKOFF_MIN  # it ran well for a while: start the backoff over
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
            delay = min(delay * 2, BACKOFF_MAX)
        self.board.set(name, PartState.STOPPED)

    async def heartbeat(self) -> None:
        """Flush the board regularly, so `ob status` can tell a live process from a gone one."""
        while not self.stopping.is_set():
            await self.board.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=FLUSH_EVERY)

    async def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        await self.board.forget()
