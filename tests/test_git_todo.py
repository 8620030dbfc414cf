"""The TODO.md bridge: splitting, import (idempotent), export, round trip."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from core.backlog import Backlog, spec_of
from core.git.repos import add_repo
from core.git.todo import export_todo, import_todo, parse_todo, split_specs
from core.models import Actor, Lane, Status
from core.spec import SpecError
from core.tasks import TaskFilter
from tests.test_git_helpers import repo_factory

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


@pytest.fixture
def make_repo(tmp_path: Path):
    return repo_factory(tmp_path)


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
