"""Reading tasks: the one task query, row mapping, lookup by key, and filtered lists."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

import asyncpg
from pydantic import BaseModel, Field, field_validator

from core.errors import NotFound
from core.models import AGENT_LANES, Lane, Status, Task, format_key, parse_key
from core.spec import REPO_RE

# A task as the API shows it: the wide row `t`, its lease `l` (sql/005) and the holder `a`.
# A task is claimed while its lease has a holder (tasks.status stays 'open'); the status date is
# the later of the task's and the lease's last change. BLOCKED_COLUMN completes the row; the
# claim and the completion, which only touch tasks without unfinished prerequisites, give '{}'.
STATUS_SQL = "case when l.lease_agent_id is null then t.status else 'claimed' end"


def task_columns(holder: str = "a.name") -> str:
    """The task columns over `t` and `l`; `holder`: the lease holder's name (the claim and
    the completion know it without looking the agent up)."""
    return f"""
    t.id, t.number, t.title, t.repo, {STATUS_SQL} as status,
    greatest(t.status_at, l.changed_at) as status_at, t.status_word, t.status_date,
    t.status_reason, t.lane, t.priority, t.trigger,
    t.trigger_on, t.steps, t.risks, t.notes, t.findings, t.created_by, t.created_at,
    greatest(t.updated_at, l.changed_at) as updated_at, t.approved_by, t.approved_at,
    t.approved_lane, t.rejected_by, t.rejected_reason, {holder} as lease_holder,
    l.lease_expires_at, l.epoch, l.expiries,
    t.completed_by, t.completed_at, t.commits, t.completion_note, t.verified_at, t.base_sha,
    t.duplicate_of
"""


TASK_COLUMNS = task_columns()
BLOCKED_COLUMN = """
    coalesce((select array_agg(p.number order by p.number)
              from task_deps d join tasks p on p.id = d.prereq_id
              where d.task_id = t.id and p.status <> 'done'), '{}') as blocked_numbers
"""
LEASE_JOIN = "join task_leases l on l.task_id = t.id left join agents a on a.id = l.lease_agent_id"
TASK_FROM = f"tasks t {LEASE_JOIN}"

# Taking a lease away (an operator's lane change, a revoked agent): the epoch grows, so the
# former holder's writes are refused. sql/005's trigger does the same when a task stops being
# ready (rejected, closed by a commit, moved out of the agent lanes).
REVOKE_SQL = """lease_agent_id = null, lease_expires_at = null,
    epoch = epoch + (lease_agent_id is not null)::int, changed_at = now()"""


def task_from_row(row: asyncpg.Record | dict[str, Any], prefix: str) -> Task:
    data = dict(row)
    data["key"] = format_key(prefix, data["number"])
    data["blocked_by"] = [format_key(prefix, n) for n in data.pop("blocked_numbers", None) or []]
    duplicate = data.get("duplicate_of")
    data["duplicate_of"] = format_key(prefix, duplicate) if duplicate is not None else None
    data.setdefault("lease_holder", None)
    return Task.model_validate(data)


MAX_LIMIT = 10_000  # the most tasks one list returns


class TaskFilter(BaseModel):
    status: list[Status] | None = None
    lane: list[Lane] | None = None
    repo: str | None = None
    text: str | None = Field(None, max_length=200)
    blocked: bool | None = None
    due_by: date | None = None  # only tasks whose trigger date is not after this day
    include_closed: bool = False
    limit: int = Field(200, ge=1, le=MAX_LIMIT)

    @field_validator("text")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL; a search for it finds nothing anyway.
        return v.replace("\x00", "") if v is not None else None

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        if v is not None and not REPO_RE.match(v):
            raise ValueError(f"{v[:60]!r} is not a repository name")
        return v


def no_task(key: str, prefix: str) -> NotFound:
    """The answer for a key that names no task (that the asker may see)."""
    return NotFound(
        f"no task {key.strip()[:40]!r}; keys look like {prefix}-12 (see `ob list`)", key=key
    )


def number_for_key(key: str, prefix: str) -> int:
    """The number of a key with this prefix (`OB-12` -> 12); NotFound when it is not one."""
    number = parse_key(key, prefix)
    if number is None:
        raise no_task(key, prefix)
    return number


async def task_id_for_key(conn: asyncpg.Connection, key: str, prefix: str) -> int:
    number = number_for_key(key, prefix)
    task_id = await conn.fetchval("select id from tasks where number = $1", number)
    if task_id is None:
        raise no_task(key, prefix)
    return task_id


async def numbers_by_title(
    conn: asyncpg.Connection, titles: Iterable[str]
) -> dict[tuple[str | None, str], int]:
    """The tasks already filed under these titles, any case: (repo, lower(title)) -> the first
    such task's number (what an import or a document capture would file again)."""
    rows = await conn.fetch(
        "select number, repo, lower(title) as title from tasks"
        " where lower(title) = any($1::text[]) order by number",
        sorted({t.lower() for t in titles}),
    )
    found: dict[tuple[str | None, str], int] = {}
    for r in rows:
        found.setdefault((r["repo"], r["title"]), r["number"])
    return found


async def tasks_by_number(
    conn: asyncpg.Connection, numbers: Iterable[int], prefix: str
) -> dict[int, Task]:
    """The tasks with these numbers (those that exist), in one statement."""
    sql = f"select {TASK_COLUMNS}, {BLOCKED_COLUMN} from {TASK_FROM} where t.number = any($1)"  # noqa: S608
    rows = await conn.fetch(sql, sorted(set(numbers)))
    return {r["number"]: task_from_row(r, prefix) for r in rows}


async def fetch_task(conn: asyncpg.Connection, task_id: int, prefix: str) -> Task:
    sql = f"select {TASK_COLUMNS}, {BLOCKED_COLUMN} from {TASK_FROM} where t.id = $1"  # noqa: S608
    row = await conn.fetchrow(sql, task_id)
    if row is None:
        raise NotFound(f"task id {task_id} vanished")
    return task_from_row(row, prefix)


def _status_clause(wanted: set[Status], arg: Callable[[Any], str]) -> str:
    """Tasks in these statuses; claimed ones are stored as open with a holder."""
    stored = {s.value for s in wanted - {Status.CLAIMED}}
    if Status.CLAIMED in wanted:
        stored.add(Status.OPEN.value)
    clause = f"t.status = any({arg(sorted(stored))}::text[])"
    if Status.OPEN in wanted and Status.CLAIMED not in wanted:
        clause += " and l.lease_agent_id is null"
    elif Status.CLAIMED in wanted and Status.OPEN not in wanted:
        clause += " and (t.status <> 'open' or l.lease_agent_id is not null)"
    return clause


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _where(
    conn: asyncpg.Connection, flt: TaskFilter, prefix: str
) -> tuple[str, list[Any], bool]:
    """The filter as a WHERE clause of constant fragments (every value a $n parameter), its
    arguments, and whether it is the ready queue (open work in the agent lanes)."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if flt.status:
        where.append(_status_clause(set(flt.status), arg))
    elif not flt.include_closed:
        where.append("t.status in ('draft', 'open')")
    if flt.lane:
        where.append(f"t.lane = any({arg([lane.value for lane in flt.lane])}::text[])")
    # Open work in the agent lanes is the ready queue: the same tasks in the same order, read
    # from its index (the lease row's copies of priority and id).
    ready = bool(
        flt.status
        and flt.lane
        and set(flt.status) <= {Status.OPEN, Status.CLAIMED}
        and set(flt.lane) <= set(AGENT_LANES)
    )
    if ready:
        where.append("l.ready")
    if flt.repo:
        where.append(f"t.repo = {arg(flt.repo)}")
    if flt.text and flt.text.strip():
        where.append(await _text_clause(conn, flt.text.strip(), prefix, arg))
    if flt.due_by is not None:
        where.append(f"(t.trigger_on is null or t.trigger_on <= {arg(flt.due_by)})")
    blocked_sql = (
        "exists (select 1 from task_deps d join tasks p on p.id = d.prereq_id"
        " where d.task_id = t.id and p.status <> 'done')"
    )
    if flt.blocked is True:
        where.append(blocked_sql)
    elif flt.blocked is False:
        where.append(f"not {blocked_sql}")
    return (" where " + " and ".join(where) if where else ""), args, ready


async def list_tasks(conn: asyncpg.Connection, flt: TaskFilter, prefix: str) -> list[Task]:
    where, args, ready = await _where(conn, flt, prefix)
    sql = (
        f"select {TASK_COLUMNS}, {BLOCKED_COLUMN} from {TASK_FROM}{where}"  # noqa: S608
        + (" order by l.priority, l.task_id" if ready else " order by t.priority, t.id")
        + f" limit ${len(args) + 1}"
    )
    rows = await conn.fetch(sql, *args, flt.limit)
    return [task_from_row(r, prefix) for r in rows]


async def count_tasks(conn: asyncpg.Connection, flt: TaskFilter, prefix: str) -> int:
    """How many tasks match (the limit aside)."""
    where, args, _ = await _where(conn, flt, prefix)
    sql = f"select count(*) from {TASK_FROM}{where}"  # noqa: S608 - constant fragments
    return int(await conn.fetchval(sql, *args))


# A text search first asks the search indexes for up to FEW_MATCHES matching tasks. A rare word
# (most searches) then reads just those; a common one walks the tasks in order and stops at the
# limit. One statement cannot do both: its plan is fixed before it knows how common a word is.
FEW_MATCHES = 1000
_MATCHES = "s.search @@ websearch_to_tsquery('simple', {ts}) or s.title ilike {like}"


async def _text_clause(
    conn: asyncpg.Connection, text: str, prefix: str, arg: Callable[[Any], str]
) -> str:
    like = f"%{_escape_like(text)}%"
    found = await conn.fetch(
        f"select task_id from task_search s where {_MATCHES.format(ts='$1', like='$2')} limit $3",
        text,
        like,
        FEW_MATCHES + 1,
    )
    if len(found) <= FEW_MATCHES:
        clause = f"t.id = any({arg([r['task_id'] for r in found])}::bigint[])"
    else:  # `offset 0` keeps the test per task, so the plan walks the tasks in order
        match = _MATCHES.format(ts=arg(text), like=arg(like))
        clause = f"exists (select from task_search s where s.task_id = t.id and ({match}) offset 0)"
    number = parse_key(text, prefix)
    return f"({clause} or t.number = {arg(number)})" if number is not None else clause
