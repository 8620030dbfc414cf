"""Waiting for work and for answers without polling and without holding a database connection.

A waiting request holds nothing but an asyncio event. One LISTEN connection per process (the
`Waits` of the gateway, core.listen) fans notifications out to the requests waiting in it:

- `ob_ready` (sql/013: sent by every change that can make work claimable) starts a *round*. For
  each group of waiting claims (by their repo filter) the round counts the claimable tasks (at
  most as many as wait) and gives that many waiters, oldest first, a turn to claim. A waiter
  whose claim finds nothing (another took it) keeps its place and waits on; if every turn took
  a task, the round looks again. So four new tasks wake about four of sixteen waiting agents,
  not sixteen, and nobody answers "nothing ready" before its time is up.
- What becomes claimable by the clock alone, a held lease expiring or a snoozed task's day
  arriving, is a timer: the hub asks when that is next and runs a round then.
- `ob_questions` (payload: the question's id, core.questions) wakes the requests waiting for
  that answer.

While claims wait, a round also runs every RECHECK_EVERY seconds (a safety net, one query per
process, not per waiter), and every RECHECK_DEAF seconds while the LISTEN connection is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import asyncpg

from core.backlog import Backlog
from core.db import UNAVAILABLE
from core.errors import Invalid
from core.leases import Lease, Leases, claimable
from core.listen import Listener
from core.models import MAX_WAIT_SECONDS, Actor
from core.questions import QUESTIONS_CHANNEL, Question, Questions
from core.service import Service
from core.shaping import local_today

log = logging.getLogger("ob.waiting")

READY_CHANNEL = "ob_ready"
MAX_WAIT = MAX_WAIT_SECONDS
RECHECK_EVERY = 30.0
RECHECK_DEAF = 2.0
CLOCK_MARGIN = 0.05  # a round for a lease expiring at T runs just after T

# How many tasks a claim with these repos ($2, null: any) could take now, up to $3: the claim's
# own candidate conditions (core.leases.claimable). $1 the operator's today.
_CLAIMABLE = f"""
select count(*) from (
    select 1 from task_leases l
    where {claimable("$1", "and ($2::text[] is null or l.repo = any($2::text[]))")}
    limit $3
) c
"""
# When the clock alone makes work claimable next: a held lease expiring, a snoozed day.
_CLOCK = """
select (select min(lease_expires_at) from task_leases
        where ready and lease_agent_id is not null and lease_expires_at > now()) as expiry,
       (select min(trigger_on) from task_leases
        where ready and lease_agent_id is null and trigger_on > $1::date) as day
"""


async def count_claimable(
    db: asyncpg.Pool | asyncpg.Connection, today: date, repos: list[str] | None, limit: int
) -> int:
    """How many tasks a claim (in these repos) could take now, counting up to `limit`."""
    return int(await db.fetchval(_CLAIMABLE, today, repos, limit))


# What a turn came to: a task taken, nothing found, or the turn given up (the request ended).
Outcome = bool | None
RepoKey = tuple[str, ...] | None


@dataclass
class WaitStats:
    """What woke the rounds, for `ob status`-style figures and for tests."""

    rounds_on_notice: int = 0
    rounds_on_clock: int = 0
    turns: int = 0
    taken: int = 0


class _Waiter:
    def __init__(self, repos: RepoKey):
        self.repos = repos
        self.turn = asyncio.Event()
        self.tried: asyncio.Future[Outcome] | None = None

    def report(self, outcome: Outcome) -> None:
        if self.tried is not None and not self.tried.done():
            self.tried.set_result(outcome)


class Waits(Service):
    """The process's waiting claims and answers (the gateway's: REST and MCP share it)."""

    def __init__(self, backlog: Backlog):
        super().__init__(backlog)
        self.leases = Leases(backlog)
        self.questions = Questions(backlog)
        self.stats = WaitStats()
        self._waiters: list[_Waiter] = []  # oldest first
        self._answers: dict[int, set[asyncio.Event]] = {}
        self._poke = asyncio.Event()  # something may have become claimable: a round
        self._rearm = asyncio.Event()  # the first claim started waiting: set the clock
        self._notices = 0
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._listener = Listener(
            self.backlog,
            {READY_CHANNEL: self._ready},
            messages={QUESTIONS_CHANNEL: self._answered},
            on_up=self._listening,
        )

    @property
    def waiting(self) -> int:
        """Claims waiting for work in this process now."""
        return len(self._waiters)

    @property
    def awaiting_answers(self) -> int:
        """Requests waiting for an answer in this process now."""
        return sum(len(events) for events in self._answers.values())

    async def start(self) -> None:
        self._closing = False
        await self._listener.start()
        self._task = asyncio.create_task(self._run(), name="ob-waits")

    def release(self) -> None:
        """The process is stopping: every waiting request answers now (nothing ready, or
        pending), and requests from now on do not wait."""
        self._closing = True
        for w in self._waiters:
            w.turn.set()
        self._wake_answers(list(self._answers))

    async def stop(self) -> None:
        self.release()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._listener.stop()

    # ------------------------------------------------------------- notifications

    def _ready(self) -> None:
        self._notices += 1
        self._poke.set()

    def _answered(self, payload: str) -> None:
        if payload.isdigit():
            self._wake_answers([int(payload)])

    def _listening(self) -> None:
        """(Re)connected: whatever was missed meanwhile is looked at now."""
        self._ready()
        self._wake_answers(list(self._answers))

    def _wake_answers(self, ids: Iterable[int]) -> None:
        for qid in ids:
            for event in self._answers.get(qid, ()):
                event.set()

    # ------------------------------------------------------------------- claims

    async def claim(
        self,
        actor: Actor,
        *,
        repos: list[str] | None = None,
        lease_seconds: int | None = None,
        wait_seconds: int = 0,
    ) -> Lease | None:
        """Claim the best ready task; with nothing ready, wait up to `wait_seconds` for one to
        become ready (None when none did)."""
        _check_wait(wait_seconds)
        seen = self._notices
        lease = await self.leases.claim(actor, repos=repos, lease_seconds=lease_seconds)
        if lease is not None or wait_seconds == 0 or self._closing:
            return lease
        deadline = asyncio.get_running_loop().time() + wait_seconds
        waiter = _Waiter(tuple(sorted(set(repos))) if repos else None)
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            self._rearm.set()
        if self._notices != seen:  # work may have come while we looked: look again now
            self._poke.set()
        try:
            while not self._closing:
                try:
                    async with asyncio.timeout_at(deadline):
                        await waiter.turn.wait()
                except TimeoutError:
                    return None
                waiter.turn.clear()
                if self._closing:
                    break
                lease = await self.leases.claim(actor, repos=repos, lease_seconds=lease_seconds)
                waiter.report(lease is not None)
                if lease is not None:
                    return lease
            return None
        finally:
            waiter.report(None)
            self._waiters.remove(waiter)

    async def _run(self) -> None:
        while True:
            try:
                await self._cycle()
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as err:
                log.warning("waiting claims: the database is unavailable (%s); retrying", err)
                await asyncio.sleep(RECHECK_DEAF)
                self._poke.set()
            except Exception:
                log.exception("waking waiting claims failed; trying again in %.0fs", RECHECK_DEAF)
                await asyncio.sleep(RECHECK_DEAF)
                self._poke.set()

    async def _cycle(self) -> None:
        """Wait for a notice, the clock or a first waiter; then run a round if claims wait."""
        timeout = await self._until_clock() if self._waiters else None
        waits = {asyncio.ensure_future(e.wait()) for e in (self._poke, self._rearm)}
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if self._poke.is_set():
            self._poke.clear()
            self._rearm.clear()
            if self._waiters:
                self.stats.rounds_on_notice += 1
                await self._round()
        elif self._rearm.is_set():
            self._rearm.clear()
        elif self._waiters:
            self.stats.rounds_on_clock += 1
            await self._round()

    async def _until_clock(self) -> float:
        """Seconds until the next round the clock calls for (capped by the safety net)."""
        cap = RECHECK_EVERY if self._listener.up else RECHECK_DEAF
        tz = self.backlog.settings.tz
        row = await self.pool.fetchrow(_CLOCK, local_today(tz))
        now = datetime.now(UTC)
        moments = [row["expiry"]] if row["expiry"] is not None else []
        if row["day"] is not None:
            moments.append(datetime.combine(row["day"], time(0), tzinfo=tz))
        soonest = min(((m - now).total_seconds() + CLOCK_MARGIN for m in moments), default=cap)
        return max(0.0, min(cap, soonest))

    async def _round(self) -> None:
        """Give as many waiters a turn as there are tasks for them; again while turns take."""
        today = local_today(self.backlog.settings.tz)
        while self._waiters:
            groups: dict[RepoKey, list[_Waiter]] = {}
            for w in self._waiters:
                if w.tried is None and not w.turn.is_set():
                    groups.setdefault(w.repos, []).append(w)
            chosen: list[_Waiter] = []
            for repos, group in groups.items():
                n = await count_claimable(
                    self.pool, today, list(repos) if repos else None, len(group)
                )
                chosen += group[:n]
            turns = [w for w in chosen if w in self._waiters]  # some may have left meanwhile
            if not turns:
                return
            loop = asyncio.get_running_loop()
            for w in turns:
                w.tried = loop.create_future()
                w.turn.set()
            self.stats.turns += len(turns)
            outcomes = await asyncio.gather(*(w.tried for w in turns if w.tried is not None))
            for w in turns:
                w.tried = None
            self.stats.taken += sum(o is True for o in outcomes)
            if all(o is False for o in outcomes):
                return  # what was counted went to others: wait for the next notice

    # ------------------------------------------------------------------ answers

    async def answer(self, qid: int, actor: Actor, wait_seconds: int = 0) -> Question:
        """The question; while it is unanswered, wait up to `wait_seconds` for the answer. The
        agent that asked it keeps its lease by waiting (core.questions)."""
        _check_wait(wait_seconds)
        event = asyncio.Event()
        self._answers.setdefault(qid, set()).add(event)
        try:
            question = await self.questions.touch(qid, actor, wait_seconds)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_seconds
            while question.answered_at is None and not question.moot and not self._closing:
                left = deadline - loop.time()
                if left <= 0:
                    break
                step = left if self._listener.up else min(left, RECHECK_DEAF)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), step)
                if not event.is_set() and step == left:
                    break  # the time is up, and we were listening all along: no answer
                event.clear()
                question = await self.questions.get(qid)
            return question
        finally:
            waiting = self._answers.get(qid)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._answers[qid]


def _check_wait(seconds: int) -> None:
    if not 0 <= seconds <= MAX_WAIT:
        raise Invalid(f"wait at most {MAX_WAIT} seconds (then ask again); got {seconds}")
