"""Reading tasks: the one task query, row mapping, lookup by key, and filtered lists."""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg
from pydantic import BaseModel, Field, field_validator

from core.errors import NotFound
from core.models import Lane, Status, Task, format_key, parse_key
from core.spec import REPO_RE

TASK_COLUMNS = """
    t.*, a.name as lease_holder,
    coalesce((select array_agg(p.number order by p.number)
              from task_deps d join tasks p on p.id = d.prereq_id
              where d.task_id = t.id and p.status <> 'done'), '{}') as blocked_numbers
"""
TASK_FROM = "tasks t left join agents a on a.id = t.lease_agent_id"


def task_from_row(row: asyncpg.Record | dict[str, Any], prefix: str) -> Task:
    data = dict(row)
    data["key"] = format_key(prefix, data["number"])
    data["blocked_by"] = [format_key(prefix, n) for n in data.pop("blocked_numbers", None) or []]
    data.setdefault("lease_holder", None)
    return Task.model_validate(data)


class TaskFilter(BaseModel):
    status: list[Status] | None = None
    lane: list[Lane] | None = None
    repo: str | None = None
    text: str | None = Field(None, max_length=200)
    blocked: bool | None = None
    due_by: date | None = None  # only tasks whose trigger date is not after this day
    include_closed: bool = False
    limit: int = Field(200, ge=1, le=10_000)

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


def _no_task(key: str, prefix: str) -> NotFound:
    return NotFound(
        f"no task {key.strip()[:40]!r}; keys look like {prefix}-12 (see `ob list`)", key=key
    )


def number_for_key(key: str, prefix: str) -> int:
    """The number of a key with this prefix (`OB-12` -> 12); NotFound when it is not one."""
    number = parse_key(key, prefix)
    if number is None:
        raise _no_task(key, prefix)
    return number


async def task_id_for_key(conn: asyncpg.Connection, key: str, prefix: str) -> int:
    number = number_for_key(key, prefix)
    task_id = await conn.fetchval("select id from tasks where number = $1", number)
    if task_id is None:
        raise _no_task(key, prefix)
    return task_id


async def fetch_task(conn: asyncpg.Connection, task_id: int, prefix: str) -> Task:
    sql = f"select {TASK_COLUMNS} from {TASK_FROM} where t.id = $1"  # noqa: S608 - constants only
    row = await conn.fetchrow(sql, task_id)
    if row is None:
        raise NotFound(f"task id {task_id} vanished")
    return task_from_row(row, prefix)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(flt: TaskFilter, prefix: str) -> tuple[str, list[Any]]:
    """The filter as a WHERE clause of constant fragments, with every value a $n parameter."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if flt.status:
        where.append(f"t.status = any({arg([s.value for s in flt.status])}::text[])")
    elif not flt.include_closed:
        where.append("t.status not in ('done', 'rejected')")
    if flt.lane:
        where.append(f"t.lane = any({arg([lane.value for lane in flt.lane])}::text[])")
    if flt.repo:
        where.append(f"t.repo = {arg(flt.repo)}")
    if flt.text and flt.text.strip():
        text = flt.text.strip()
        number = parse_key(text, prefix)
        ts = arg(text)
        like = arg(f"%{_escape_like(text)}%")
        clause = f"(t.search @@ websearch_to_tsquery('simple', {ts}) or t.title ilike {like})"
        if number is not None:
            clause = f"({clause} or t.number = {arg(number)})"
        where.append(clause)
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
    return (" where " + " and ".join(where) if where else ""), args


async def list_tasks(conn: asyncpg.Connection, flt: TaskFilter, prefix: str) -> list[Task]:
    where, args = _where(flt, prefix)
    sql = (
        f"select {TASK_COLUMNS} from {TASK_FROM}{where}"  # noqa: S608 - constant fragments
        f" order by t.priority, t.id limit ${len(args) + 1}"
    )
    rows = await conn.fetch(sql, *args, flt.limit)
    return [task_from_row(r, prefix) for r in rows]


async def count_tasks(conn: asyncpg.Connection, flt: TaskFilter, prefix: str) -> int:
    """How many tasks match (the limit aside)."""
    where, args = _where(flt, prefix)
    sql = f"select count(*) from tasks t{where}"  # noqa: S608 - constant fragments
    return int(await conn.fetchval(sql, *args))
