"""The feed: recent events across the backlog (`ob feed`), filtered by agent or repo, and
followed as they commit.

Event ids are handed out when an event is written, not when its transaction commits, so a
follower that only asks for ids above the last one it saw would miss an event whose
transaction committed after a later one's. The follower keeps each gap in the ids it has seen
open until every transaction running when it noticed the gap has ended (PostgreSQL's snapshot
says when): by then the gap's event is visible, or it never will be (rolled back, or an id the
sequence skipped).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from core.backlog import Backlog
from core.models import EventKind, format_key


class FeedItem(BaseModel):
    id: int
    at: datetime
    actor: str
    kind: EventKind
    key: str | None = None
    title: str | None = None
    repo: str | None = None
    details: dict[str, Any]


class FeedFilter(BaseModel):
    agent: str | None = None  # what the agent did (also through git), and what was done to it
    repo: str | None = None  # events of the repo's tasks, and of the repo itself
    heartbeats: bool = False  # heartbeats are many and say little: left out unless asked


_COLUMNS = """
e.id, e.at, e.actor, e.kind, e.details, t.number, t.title,
coalesce(t.repo, e.details ->> 'repo') as repo,
($1::text is null or e.actor in ('agent:' || $1, 'git:' || $1) or e.details ->> 'agent' = $1)
and ($2::text is null or t.repo = $2 or (e.task_id is null and e.details ->> 'repo' = $2))
and ($3 or e.kind <> 'heartbeat') as shown
"""
_FROM = "events e left join tasks t on t.id = e.task_id"

# The newest $4 events shown, newest first.
_RECENT = f"""
select * from (select {_COLUMNS} from {_FROM} order by e.id desc) x
where x.shown limit $4
"""

# Every event above $4 (shown or not: the ids tell the gaps), oldest first, with the snapshot's
# horizon: transactions below xmin have ended; those from xmax on had not begun.
_AFTER = f"""
select {_COLUMNS},
       pg_snapshot_xmin(pg_current_snapshot())::text::bigint as xmin,
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint as xmax
from {_FROM} where e.id > $4 order by e.id limit $5
"""
_HORIZON = """
select pg_snapshot_xmin(pg_current_snapshot())::text::bigint as xmin,
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint as xmax
"""


def _item(row: asyncpg.Record, prefix: str) -> FeedItem:
    number = row["number"]
    return FeedItem(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        kind=row["kind"],
        key=format_key(prefix, number) if number is not None else None,
        title=row["title"],
        repo=row["repo"],
        details=row["details"],
    )


async def recent_events(backlog: Backlog, flt: FeedFilter, limit: int = 50) -> list[FeedItem]:
    """The newest events that pass the filter, oldest first."""
    rows = await backlog.pool.fetch(_RECENT, flt.agent, flt.repo, flt.heartbeats, limit)
    return [_item(r, backlog.prefix) for r in reversed(rows)]


class Follower:
    """New events as they commit, each once, none missed (see the module's note)."""

    BATCH = 1000
    # A transaction takes its id (xid) when it first writes, a moment after the event's id was
    # drawn: a gap also waits this long, so that its writer has an xid the snapshot counts.
    GRACE = 2.0

    def __init__(self, backlog: Backlog, flt: FeedFilter, after: int):
        self.backlog = backlog
        self.flt = flt
        self.floor = after  # every event up to here has been seen (or never will be)
        self.seen: set[int] = set()  # ids above the floor already seen
        self.gaps: dict[int, tuple[int, float]] = {}  # missing id -> (xmax, time) when noticed

    @classmethod
    async def from_now(cls, backlog: Backlog, flt: FeedFilter) -> Follower:
        """A follower of what commits from now on: what is committed now counts as seen, what
        is in flight now is a gap it keeps looking at."""
        last = await backlog.pool.fetchval("select coalesce(max(id), 0) from events")
        follower = cls(backlog, flt, max(0, last - cls.BATCH))
        await follower.poll()
        return follower

    async def poll(self) -> list[FeedItem]:
        rows = await self.backlog.pool.fetch(
            _AFTER, self.flt.agent, self.flt.repo, self.flt.heartbeats, self.floor, self.BATCH
        )
        fresh = [r for r in rows if r["id"] not in self.seen]
        self.seen.update(r["id"] for r in fresh)
        if rows:
            xmin, xmax = rows[0]["xmin"], rows[0]["xmax"]
        else:
            horizon = await self.backlog.pool.fetchrow(_HORIZON)
            xmin, xmax = horizon["xmin"], horizon["xmax"]
        now = time.monotonic()
        top = max([self.floor, *self.seen])
        for missing in range(self.floor + 1, top):
            if missing not in self.seen:
                self.gaps.setdefault(missing, (xmax, now))
        for missing, (noticed, at) in list(self.gaps.items()):
            # seen now, or every transaction running when it was noticed has ended
            if missing in self.seen or (xmin >= noticed and now - at >= self.GRACE):
                del self.gaps[missing]
        self.floor = min(self.gaps) - 1 if self.gaps else top
        self.seen = {i for i in self.seen if i > self.floor}
        return [_item(r, self.backlog.prefix) for r in fresh if r["shown"]]
