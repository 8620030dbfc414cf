"""The TODO.md bridge: splitting, import (idempotent), export, round trip."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from core.backlog import Backlog, spec_of
from core.errors import Invalid
from core.git.repos import add_repo
from core.git.todo import (
    MAX_TODO_BYTES,
    MAX_TODO_SPECS,
    export_todo,
    import_todo,
    parse_todo,
    read_todo,
    split_specs,
)
from core.models import Actor, Lane, Status
from core.spec import SpecError
from core.tasks import TaskFilter

OP = Actor.operator("test")

TODO = """\
# TODO

<!-- the backlog of this repo;
     one spec per heading -->

## Migrate ingest workers to asyncpg
priority: P1
lane: autonomous_safe
trigger: pool exhaustion alerts
## Steps
- swap psycopg2 for asyncpg in ingest/db.py
- run the 10k-row load test
risks:
- connection leak under cancellation
notes:
  ## not a heading: notes are indented
  ---

## Old idea
status: done

---
Plain spec after a rule
repo: other
steps:
- one
"""


def test_split_rules() -> None:
    chunks = split_specs(TODO)
    assert [c.text.split("\n", 1)[0] for c in chunks] == [
        "Migrate ingest workers to asyncpg",
        "Old idea",
        "Plain spec after a rule",
    ]
    specs = parse_todo(TODO)
    first = specs[0]
    assert first.priority == 1 and first.lane is Lane.AUTONOMOUS
    assert first.steps == ["swap psycopg2 for asyncpg in ingest/db.py", "run the 10k-row load test"]
    assert first.notes == "## not a heading: notes are indented\n---"
    assert specs[1].status is Status.DONE
    assert specs[2].repo == "other"


def test_a_broken_spec_names_its_line() -> None:
    with pytest.raises(SpecError, match="spec at line 4"):
        parse_todo("## fine\nsteps:\n- a\n## broken\npriority: P9\n")


async def test_import_is_idempotent_and_export_round_trips(
    backlog: Backlog, pool: asyncpg.Pool, make_repo, tmp_path: Path
) -> None:
    repo = make_repo("ingest")
    repo.commit("init")
    await add_repo(backlog, repo.path, OP)
    todo = repo.path / "TODO.md"
    todo.write_text(TODO)

    first = await import_todo(backlog, todo, OP)
    assert first.repo == "ingest"
    assert first.created == ["OB-1", "OB-2"] and first.skipped == ["Old idea (done)"]
    t1, t2 = await backlog.get("OB-1"), await backlog.get("OB-2")
    assert t1.status is Status.DRAFT and t1.repo == "ingest" and t1.lane is Lane.AUTONOMOUS
    assert t2.repo == "other"
    assert [e.kind for e in await backlog.history("OB-1")] == ["filed"]

    again = await import_todo(backlog, repo.path, OP)  # a folder means its TODO.md
    assert again.created == [] and again.existing == ["OB-1", "OB-2"]

    await backlog.approve("OB-1", OP)
    text = await export_todo(backlog, "ingest")
    assert text.count("\n## ") == 1 and "key: OB-1" in text and "status: open" in text
    out = tmp_path / "export.md"
    out.write_text(text)
    assert (await import_todo(backlog, out, OP, repo="ingest")).existing == ["OB-1"]
    (exported,) = parse_todo(text)
    assert exported == spec_of(await backlog.get("OB-1"))

    # into an empty backlog, the export files the same specs (approved with --approve)
    await pool.execute("truncate events, outbox, task_commits, tasks restart identity cascade")
    await pool.execute("alter sequence task_number_seq restart")
    res = await import_todo(backlog, out, OP, approve=True)
    assert res.created == ["OB-1"]
    task = await backlog.get("OB-1")
    assert task.status is Status.OPEN and task.lane is Lane.AUTONOMOUS
    assert task.base_sha == repo.head()  # approved at once: the plan base is recorded
    assert spec_of(task).model_copy(update={"key": None, "status": None}) == exported.model_copy(
        update={"key": None, "status": None}
    )
    assert (await import_todo(backlog, out, OP)).created == []
    assert len(await backlog.list(TaskFilter(include_closed=True))) == 1


# ------------------------------------------------------------------ checklists (issue 10)


def test_a_checklist_is_one_spec_per_unchecked_item() -> None:
    todo = read_todo("# TODO\n\n- [ ] a\n- [x] b\n")
    assert [s.title for s in todo.specs] == ["a"] and todo.checked == ["b"]
    text = """\
# TODO

## Backend
- [ ] add the index
  - [ ] write the migration
  - [x] measure first
  see the slow query log
- [X] drop the old table
  - [ ] never filed: its parent is checked
* [ ] tidy the API

## A real spec
steps:
- [ ] a step written as a checkbox stays a step
"""
    todo = read_todo(text)
    first, second, spec = todo.specs
    assert first.title == "add the index" and first.steps == ["write the migration"]
    assert first.notes == "see the slow query log"
    assert second.title == "tidy the API" and second.steps == []
    assert spec.title == "A real spec" and spec.steps == [
        "[ ] a step written as a checkbox stays a step"
    ]
    assert todo.checked == ["drop the old table"]
    assert todo.lines == [4, 10, 12]
    # a long item keeps its whole text in the notes
    (long,) = read_todo("- [ ] " + "word " * 60 + "\n").specs
    assert len(long.title) <= 200 and long.title.endswith("...") and long.notes.startswith("word")


async def test_checklist_import_skips_checked_items_and_says_so(
    backlog: Backlog, tmp_path: Path
) -> None:
    todo = tmp_path / "TODO.md"
    todo.write_text("# TODO\n\n- [ ] a\n- [x] b\n- [ ] c\n")
    res = await import_todo(backlog, todo, OP)
    assert res.created == ["OB-1", "OB-2"] and res.checked == 1 and res.skipped == ["b (checked)"]
    assert [(await backlog.get(k)).title for k in res.created] == ["a", "c"]
    todo.write_text("# TODO\n\n- [x] a\n- [x] b\n- [ ] c\n- [ ] d\n")
    again = await import_todo(backlog, todo, OP)
    assert again.created == ["OB-3"] and again.existing == ["OB-2"] and again.checked == 2


# ------------------------------------------------------------- TODO.md at scale (issue 10)


def many_specs(n: int, broken_at: int | None = None) -> str:
    parts = []
    for i in range(1, n + 1):
        prio = "P9" if i == broken_at else "P2"
        parts.append(f"## Task {i}\npriority: {prio}\nsteps:\n- step one of {i}\n- step two\n")
    return "# TODO\n\n" + "\n".join(parts)


async def next_number(pool: asyncpg.Pool) -> int:
    """The number the next task gets, without using one up."""
    row = await pool.fetchrow("select last_value, is_called from task_number_seq")
    return row["last_value"] + 1 if row["is_called"] else row["last_value"]


async def test_a_large_import_is_batched_numbered_in_order_and_notified_once(
    backlog: Backlog, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    n = 1_200
    todo = tmp_path / "TODO.md"
    todo.write_text(many_specs(n))
    seen: list[tuple[int, int]] = []
    res = await import_todo(
        backlog,
        todo,
        OP,
        on_progress=lambda s, d, t: seen.append((d, t)) if s == "writing" else None,
    )
    assert res.created == [f"OB-{i}" for i in range(1, n + 1)]
    assert seen[0] == (0, n) and seen[-1] == (n, n) and len(seen) > 2
    assert (await backlog.get("OB-700")).title == "Task 700"
    assert (await backlog.get("OB-700")).steps == ["step one of 700", "step two"]
    assert await pool.fetchval("select count(*) from events where kind = 'filed'") == n
    assert await pool.fetchval("select count(*) from outbox where kind = 'draft_filed'") == 0
    (notice,) = await pool.fetch("select payload from outbox where kind = 'todo_imported'")
    assert notice["payload"]["count"] == n and notice["payload"]["last"] == f"OB-{n}"
    assert await next_number(pool) == n + 1
    again = await import_todo(backlog, todo, OP)
    assert again.created == [] and len(again.existing) == n


async def test_a_failed_import_uses_up_no_task_numbers(
    backlog: Backlog, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    todo = tmp_path / "TODO.md"
    todo.write_text(many_specs(2_000, broken_at=1_999))
    with pytest.raises(SpecError, match="spec at line"):
        await import_todo(backlog, todo, OP)
    assert await next_number(pool) == 1

    # interrupted while writing (Ctrl-C, a lost connection): rolled back, no number used
    todo.write_text(many_specs(1_500))

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "writing" and done >= 1_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await import_todo(backlog, todo, OP, on_progress=interrupt)
    assert await pool.fetchval("select count(*) from tasks") == 0
    assert await next_number(pool) == 1
    res = await import_todo(backlog, todo, OP)
    assert res.created[0] == "OB-1" and res.created[-1] == "OB-1500"


async def test_an_oversized_todo_is_refused_before_anything_is_written(
    backlog: Backlog, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    todo = tmp_path / "TODO.md"
    todo.write_bytes(b"## big\n" + b"x" * (MAX_TODO_BYTES + 10))
    with pytest.raises(Invalid, match=r"at most 4 MiB .*split it"):
        await import_todo(backlog, todo, OP)
    todo.write_text("\n".join(f"- [ ] item {i}" for i in range(MAX_TODO_SPECS + 1)))
    with pytest.raises(Invalid, match="at most 10,000"):
        await import_todo(backlog, todo, OP)
    assert await pool.fetchval("select count(*) from tasks") == 0
