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
from core.service import Service


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

# The events above $4 (the highest id read) and those whose ids were gaps ($5), shown or not
# (the ids tell the gaps), oldest first, with the snapshot's horizon: the transactions below
# xmin have ended; those from xmax on had not begun.
_AFTER = f"""
select {_COLUMNS},
       pg_snapshot_xmin(pg_current_snapshot())::text::bigint as xmin,
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint as xmax
from {_FROM} where e.id > $4 or e.id = any($5::bigint[]) order by e.id limit $6
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


class Follower:
    """New events as they commit, each once, none missed (see the module's note)."""

    BATCH = 1000
    # A transaction takes its id (xid) when it first writes, a moment after the event's id was
    # drawn: a gap also waits this long, so that its writer has an xid the snapshot counts.
    GRACE = 2.0
    # A gap is given up after this long whatever the snapshot says (a session that keeps a
    # transaction open for hours holds the horizon back for everyone), and so are the oldest
    # gaps beyond MAX_GAPS.
    MAX_AGE = 600.0
    MAX_GAPS = 10_000

    def __init__(self, backlog: Backlog, flt: FeedFilter, after: int):
        self.backlog = backlog
        self.flt = flt
        self.top = after  # the highest id read
        self.gaps: dict[int, tuple[int, float]] = {}  # missing id -> (xmax, time) when noticed

    async def poll(self) -> list[FeedItem]:
        rows = await self.backlog.pool.fetch(
            _AFTER,
            self.flt.agent,
            self.flt.repo,
            self.flt.heartbeats,
            self.top,
            list(self.gaps),
            self.BATCH,
        )
        if rows:
            xmin, xmax = rows[0]["xmin"], rows[0]["xmax"]
        else:
            horizon = await self.backlog.pool.fetchrow(_HORIZON)
            xmin, xmax = horizon["xmin"], horizon["xmax"]
        now = time.monotonic()
        read = {r["id"] for r in rows}
        new_top = max([self.top, *read])
        for missing in range(self.top + 1, new_top):
            if missing not in read:
                self.gaps[missing] = (xmax, now)
        self.top = new_top
        for missing, (noticed, at) in list(self.gaps.items()):
            # read now; or every transaction running when it was noticed has ended; or too old
            ended = xmin >= noticed and now - at >= self.GRACE
            if missing in read or ended or now - at >= self.MAX_AGE:
                del self.gaps[missing]
        for missing in sorted(self.gaps)[: max(0, len(self.gaps) - self.MAX_GAPS)]:
            del self.gaps[missing]
        return [_item(r, self.backlog.prefix) for r in rows if r["shown"]]


class Feed(Service):
    """What happened lately, everywhere (`ob feed`), and what happens next (`-f`)."""

    async def recent(self, flt: FeedFilter, limit: int = 50) -> list[FeedItem]:
        """The newest events that pass the filter, oldest first."""
        rows = await self.pool.fetch(_RECENT, flt.agent, flt.repo, flt.heartbeats, limit)
        return [_item(r, self.prefix) for r in reversed(rows)]

    async def follow(self, flt: FeedFilter) -> Follower:
        """A follower of what commits from now on: what is committed now counts as read, what
        is in flight now is a gap it keeps looking at."""
        last = await self.pool.fetchval("select coalesce(max(id), 0) from events")
        follower = Follower(self.backlog, flt, max(0, last - Follower.BATCH))
        await follower.poll()
        return follower
