"""The numbers behind the digest's chart: how big each lane was at the end of each of the last
days, and how many tasks each agent finished per day (the operator's calendar days).

Lane sizes come from the event log: a task is in a lane from the event that put it there
(filed open, approved, moved, findings reported, attempts exhausted) until the next one, and out
of every lane once completed, closed by a commit or rejected. Only tasks with such an event since
the first day ended are replayed (events_lane_at_idx); every other open task sat in its lane the
whole time.
"""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel

from core.models import Lane
from core.service import Service
from core.shaping import local_today

DAYS = 14
LANE_EVENTS = (
    "filed",
    "approved",
    "lane_changed",
    "findings",
    "attempts_exhausted",
    "completed",
    "closed_by_commit",
    "rejected",
)

# $1 first day, $2 last day, $3 the operator's time zone, $4 LANE_EVENTS
_LANE_SIZES = """
with days as (
    select d::date as day, (d::date + 1)::timestamp at time zone $3 as day_end
    from generate_series($1::date, $2::date, interval '1 day') d
),
touched as (
    select distinct task_id from events
    where kind = any($4::event_kind[]) and task_id is not null
      and at >= (select min(day_end) from days)
),
moves as (
    select e.task_id, e.id, e.at,
           case e.kind
               when 'filed' then case when e.details ->> 'status' = 'open'
                                      then e.details ->> 'lane' end
               when 'approved' then e.details ->> 'lane'
               when 'lane_changed' then e.details ->> 'to'
               when 'findings' then 'requires_decision'
               when 'attempts_exhausted' then 'requires_decision'
           end as lane
    from events e join touched t on t.task_id = e.task_id
    where e.kind = any($4::event_kind[])
),
spans as (
    select lane, at as since, lead(at) over (partition by task_id order by id) as until
    from moves
)
select d.day, s.lane, count(*)::int as total
from days d join spans s
  on s.lane is not null and s.since < d.day_end and (s.until is null or s.until > d.day_end)
group by d.day, s.lane
union all
select null, lane, count(*)::int from tasks
where status in ('open', 'claimed') and id not in (select task_id from touched)
group by lane
"""
# $1 first day, $2 the operator's time zone
_DONE = """
select (completed_at at time zone $2)::date as day, coalesce(completed_by, 'unknown') as who,
       count(*)::int as total
from tasks
where status = 'done' and completed_at >= $1::date::timestamp at time zone $2
group by 1, 2
"""


class Activity(BaseModel):
    days: list[date]
    lanes: dict[Lane, list[int]]  # open tasks in each lane at the end of each day
    done: dict[str, list[int]]  # tasks finished per day, by who finished them


class Stats(Service):
    """What the `/stats` chart shows."""

    async def activity(self, days: int = DAYS, *, today: date | None = None) -> Activity:
        today = today or local_today(self.settings.tz)
        first = today - timedelta(days=days - 1)
        span = [first + timedelta(days=n) for n in range(days)]
        index = {day: n for n, day in enumerate(span)}
        tz = self.settings.timezone
        async with self.pool.acquire() as conn:
            sizes = await conn.fetch(_LANE_SIZES, first, today, tz, list(LANE_EVENTS))
            done = await conn.fetch(_DONE, first, tz)
        lanes = {lane: [0] * days for lane in Lane}
        for r in sizes:
            lane = Lane(r["lane"]) if r["lane"] else None
            if lane is None:
                continue
            for n in [index[r["day"]]] if r["day"] else range(days):
                lanes[lane][n] += r["total"]
        finished: dict[str, list[int]] = {}
        for r in done:
            if r["day"] in index:
                finished.setdefault(r["who"], [0] * days)[index[r["day"]]] += r["total"]
        return Activity(days=span, lanes=lanes, done=finished)
