"""The TODO.md bridge both ways, against real PostgreSQL and real files: reading, import (never
refusing a whole file, keyed updates, conflicts), export in place (every byte a person wrote
kept), round trips, scale."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest

from core.backlog import Backlog, spec_of
from core.errors import Invalid
from core.git.repos import Repos
from core.git.todo import MAX_TODO_BYTES, MAX_TODO_SPECS, TodoFiles
from core.models import Actor, EventKind, Lane, Status
from core.spec import make_spec
from core.tasks import TaskFilter
from core.todo_format import read_document, render_new

OP = Actor.operator("test")
CORPUS = Path(__file__).parent / "todo_corpus"

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


def test_specs_by_heading_and_rule() -> None:
    doc = read_document(TODO)
    assert [(i.title, i.line, i.skip) for i in doc.items] == [
        ("Migrate ingest workers to asyncpg", 6, None),
        ("Old idea", 19, "status: done"),
        ("Plain spec after a rule", 23, None),
    ]
    first = doc.items[0].spec
    assert first is not None and first.priority == 1 and first.lane is Lane.AUTONOMOUS
    assert first.steps == ["swap psycopg2 for asyncpg in ingest/db.py", "run the 10k-row load test"]
    assert first.notes == "## not a heading: notes are indented\n---"
    assert doc.items[2].spec is not None and doc.items[2].spec.repo == "other"


@pytest.mark.parametrize(
    ("text", "tasks"),
    [
        (
            "## Add an index\n- create it\n\n## Warm the cache\n",
            [
                ("Add an index", ["create it"]),
                ("Warm the cache", []),
            ],
        ),
        (
            "## Proxies\n- SOCKS5 support\n- honour no_proxy\n",
            [
                ("SOCKS5 support", []),
                ("honour no_proxy", []),
            ],
        ),
        (
            "## Add dark mode\n- [ ] a toggle\n- [x] css variables\n",
            [("Add dark mode", ["a toggle"])],
        ),
        ("## Build\n### Todo\n- drop autotools\n", [("drop autotools", [])]),
        ("## idea 1\n\n## idea 2\n", [("idea 1", []), ("idea 2", [])]),
        ("## Review\n\n## Done\n- shipped\n", []),
    ],
)
def test_a_heading_is_a_task_or_a_group_as_it_reads(
    text: str, tasks: list[tuple[str, list[str]]]
) -> None:
    doc = read_document(text)
    assert [(i.spec.title, i.spec.steps) for i in doc.tasks if i.spec] == tasks


def test_an_unclosed_fence_in_notes_ends_with_them() -> None:
    spec = make_spec(title="First", key="OB-1", notes="```\nunclosed code")
    text = render_new([spec, make_spec(title="Second", key="OB-2")])
    doc = read_document("".join(text))
    assert [(i.title, i.spec == s) for i, s in zip(doc.items, [spec], strict=False)] == [
        ("First", True)
    ]
    assert [i.key for i in doc.items] == ["OB-1", "OB-2"]


def test_a_broken_item_is_named_with_its_file_line_and_the_rest_reads() -> None:
    doc = read_document("# TODO\n\n## fine\nsteps:\n- a\n\n## broken\npriority: P9\n## also fine\n")
    assert [i.title for i in doc.tasks] == ["fine", "also fine"]
    (bad,) = doc.unreadable
    assert bad.line == 7 and bad.problem is not None
    assert bad.problem.startswith("line 8: priority must be P0, P1, P2 or P3")


def test_a_checklist_is_one_task_per_unchecked_item() -> None:
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
    doc = read_document(text)
    first, second, spec = (i.spec for i in doc.tasks)
    assert first is not None and second is not None and spec is not None
    assert first.title == "add the index" and first.steps == ["write the migration"]
    assert first.notes == "see the slow query log\nDone already: measure first"
    assert second.title == "tidy the API" and second.steps == []
    assert spec.title == "A real spec"
    assert spec.steps == ["[ ] a step written as a checkbox stays a step"]
    assert [(i.title, i.skip) for i in doc.skipped] == [("drop the old table", "checked")]
    assert [i.line for i in doc.tasks] == [4, 10, 12]
    # a long item keeps its whole text in the notes
    (long,) = read_document("- [ ] " + "word " * 60 + "\n").tasks
    assert long.spec is not None and len(long.spec.title) <= 200
    assert long.spec.title.endswith("...") and long.spec.notes.startswith("word")
    assert long.warnings == ["title cut to 200 characters; the whole title is in the notes"]


async def test_import_is_idempotent_and_export_round_trips(
    backlog: Backlog, pool: asyncpg.Pool, make_repo, tmp_path: Path
) -> None:
    repo = make_repo("ingest")
    repo.commit("init")
    await Repos(backlog).add(repo.path, OP)
    todo = repo.path / "TODO.md"
    todo.write_text(TODO)

    first = await TodoFiles(backlog).import_file(todo, OP)
    assert first.repo == "ingest"
    assert first.created == ["OB-1", "OB-2"]
    assert first.skipped == ["line 19: Old idea (status: done)"]
    t1, t2 = await backlog.get("OB-1"), await backlog.get("OB-2")
    assert t1.status is Status.DRAFT and t1.repo == "ingest" and t1.lane is Lane.AUTONOMOUS
    assert t2.repo == "other"
    assert [e.kind for e in await backlog.history("OB-1")] == ["filed"]

    again = await TodoFiles(backlog).import_file(repo.path, OP)  # a folder means its TODO.md
    assert again.created == [] and again.existing == ["OB-1", "OB-2"] and again.updated == []

    await backlog.approve("OB-1", OP)
    out = tmp_path / "export.md"
    res = await TodoFiles(backlog).export_file("ingest", out)
    text = out.read_text()
    assert res.appended == ["OB-1"] and text.startswith("# TODO (ingest)\n")
    assert "key: OB-1" in text and "status: open " in text
    assert (await TodoFiles(backlog).import_file(out, OP, repo="ingest")).existing == ["OB-1"]
    (exported,) = (i.spec for i in read_document(text).items)
    assert exported == spec_of(await backlog.get("OB-1"))

    # into an empty backlog, the export files the same specs (approved with --approve)
    await pool.execute("truncate events, outbox, task_commits, tasks restart identity cascade")
    await pool.execute("alter sequence task_number_seq restart")
    res2 = await TodoFiles(backlog).import_file(out, OP, approve=True)
    assert res2.created == ["OB-1"]
    task = await backlog.get("OB-1")
    assert task.status is Status.OPEN and task.lane is Lane.AUTONOMOUS
    assert task.base_sha == repo.head()  # approved at once: the plan base is recorded
    unkeyed = {"key": None, "status": None, "status_date": None}
    assert spec_of(task).model_copy(update=unkeyed) == exported.model_copy(update=unkeyed)
    assert (await TodoFiles(backlog).import_file(out, OP)).created == []
    assert len(await backlog.list(TaskFilter(include_closed=True))) == 1


async def test_checklist_import_skips_checked_items_and_says_so(
    backlog: Backlog, tmp_path: Path
) -> None:
    todo = tmp_path / "TODO.md"
    todo.write_text("# TODO\n\n- [ ] a\n- [x] b\n- [ ] c\n")
    res = await TodoFiles(backlog).import_file(todo, OP)
    assert res.created == ["OB-1", "OB-2"] and res.checked == 1
    assert res.skipped == ["line 4: b (checked)"]
    assert [(await backlog.get(k)).title for k in res.created] == ["a", "c"]
    todo.write_text("# TODO\n\n- [x] a\n- [x] b\n- [ ] c\n- [ ] d\n")
    again = await TodoFiles(backlog).import_file(todo, OP)
    assert again.created == ["OB-3"] and again.existing == ["OB-2"] and again.checked == 2


# ------------------------------------------------------------------ the corpus, imported


def expected(path: Path) -> dict:
    name = path.name + ".expected.json" if path.suffix == ".txt" else path.stem + ".expected.json"
    return json.loads((CORPUS / name).read_text("utf-8"))


async def test_the_whole_corpus_imports_and_none_of_it_is_refused(
    backlog: Backlog, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    files = sorted(p for p in CORPUS.iterdir() if not p.name.endswith(".json"))
    total = 0
    for path in files:
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        want = expected(path)
        preview = await TodoFiles(backlog).import_file(copy, OP, repo="corpus", dry_run=True)
        res = await TodoFiles(backlog).import_file(copy, OP, repo="corpus")
        assert res.created and len(preview.created) == len(res.created), path.name
        titles = {t["title"] for t in want["tasks"] if "title" in t}
        if "task_count" in want:  # todo.txt: the same line twice is one task
            assert len(res.created) + len(res.skipped) - want["skipped_count"] == want["task_count"]
        else:
            assert len(res.created) == len(want["tasks"]), (path.name, res)
        assert len(res.unreadable) == len(want["unreadable"]), (path.name, res.unreadable)
        filed = {(await backlog.get(k)).title for k in res.created}
        assert titles <= filed, (path.name, titles - filed)
        total += len(res.created)
        again = await TodoFiles(backlog).import_file(copy, OP, repo="corpus")
        assert again.created == [] and again.updated == [] and again.conflicts == [], path.name
    assert await pool.fetchval("select count(*) from tasks") == total
    # the status as written, its date and reason, are kept; the date is the status date
    (blocked,) = await backlog.list(TaskFilter(text="Rotate the ingest service credentials"))
    assert (blocked.status_word, blocked.status_date, blocked.status_reason) == (
        "blocked",
        date(2026, 11, 18),
        "waiting for finance to approve the vault plan",
    )
    assert blocked.status_at == datetime(2026, 11, 18, tzinfo=UTC)
    # search covers steps and risks
    found = await backlog.list(TaskFilter(text="pgbouncer"))
    assert [t.title for t in found] == ["2.1 Migrate ingest workers to asyncpg"]


# ------------------------------------------------------------------ two ways, keyed

HAND_WRITTEN = """\
# web — what's left

Written by hand; ob keeps this header, the table and everything it does not own.

| area | owner |
|------|-------|
| auth | maria |

## Fix the login timeout
Status: planned — 2026-11-20
Priority: P1
Steps:
- raise the timeout to 15 s

Some prose between items: it stays where it is.

## Shipped already
Status: done 2026-10-01

- [x] an old checked item
- [ ] Dark mode for the settings page
"""


async def test_export_rewrites_only_owned_specs_and_keeps_every_other_byte(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    repo = make_repo("web")
    repo.commit("init")
    await Repos(backlog).add(repo.path, OP)
    todo = repo.path / "TODO.md"
    todo.write_bytes(HAND_WRITTEN.encode())
    res = await TodoFiles(backlog).import_file(todo, OP)
    assert res.created == ["OB-1", "OB-2"]

    # nothing owned yet, nothing new in the backlog: the export changes nothing
    res_export = await TodoFiles(backlog).export_file("web", todo)
    assert not res_export.changed and res_export.by_title == ["OB-1", "OB-2"]
    assert not (repo.path / "TODO.md.orig").exists()

    # a task filed elsewhere is appended, with its key; every byte before it is kept
    await backlog.file(make_spec(title="Rate-limit the sign-up form", repo="web"), OP)
    dry = await TodoFiles(backlog).export_file("web", todo, dry_run=True)
    assert (
        dry.changed and "+## Rate-limit the sign-up form" in dry.diff and "+key: OB-3" in dry.diff
    )
    assert todo.read_bytes() == HAND_WRITTEN.encode()  # a dry run writes nothing
    out = await TodoFiles(backlog).export_file("web", todo)
    after = todo.read_text()
    assert after.startswith(HAND_WRITTEN) and out.appended == ["OB-3"]
    assert (repo.path / "TODO.md.orig").read_text() == HAND_WRITTEN  # the way back
    assert "status: open " in after.split("## Rate-limit", 1)[1]

    # edited in the file: the keyed spec updates its task (no duplicate), the event says so
    edited = after.replace("## Rate-limit the sign-up form", "## Rate-limit sign-up and login")
    edited = edited.replace("key: OB-3\nstatus: open", "key: OB-3\nstatus: open")
    edited = edited.replace("priority: P2", "priority: P0", 1) if False else edited
    edited = edited.replace("repo: web\npriority: P2", "repo: web\npriority: P0")
    todo.write_text(edited)
    res = await TodoFiles(backlog).import_file(todo, OP)
    assert res.created == [] and res.updated == ["OB-3"] and res.conflicts == []
    task = await backlog.get("OB-3")
    assert (task.title, task.priority) == ("Rate-limit sign-up and login", 0)
    event = (await backlog.history("OB-3"))[-1]
    assert event.kind is EventKind.EDITED and event.details["todo"] == str(todo)
    assert set(event.details["changes"]) == {"title", "priority"}
    assert (await TodoFiles(backlog).import_file(todo, OP)).updated == []  # synced now

    # changed in the backlog only: import leaves it, export rewrites it in place
    await backlog.edit("OB-3", OP, steps=["count attempts per IP"])
    res = await TodoFiles(backlog).import_file(todo, OP)
    assert res.updated == [] and "OB-3" in res.existing
    before = todo.read_text()
    out = await TodoFiles(backlog).export_file("web", todo)
    assert out.rewritten == ["OB-3"] and out.appended == []
    now = todo.read_text()
    assert now.startswith(HAND_WRITTEN) and "- count attempts per IP" in now
    assert now.count("## Rate-limit sign-up and login") == 1
    # the hand-written file is still the way back; the one this export replaced is kept too
    assert (repo.path / "TODO.md.orig").read_text() == HAND_WRITTEN
    assert (repo.path / "TODO.md.orig.1").read_text() == before
    assert out.backup == str(repo.path / "TODO.md.orig.1")

    # changed on both sides since the last sync: a conflict, reported, nothing changed
    await backlog.edit("OB-3", OP, priority="P3")
    todo.write_text(now.replace("priority: P0", "priority: P1"))
    res = await TodoFiles(backlog).import_file(todo, OP)
    assert res.updated == [] and len(res.conflicts) == 1
    assert (
        res.conflicts[0].startswith("OB-3 (line")
        and "priority changed in the file and" in (res.conflicts[0])
    )
    assert (await backlog.get("OB-3")).priority == 3
    # and an export does not overwrite the person's unimported edit
    out = await TodoFiles(backlog).export_file("web", todo)
    assert out.rewritten == [] and "edited in the file since the last sync" in out.kept[0]
    assert "priority: P1" in todo.read_text()
    out = await TodoFiles(backlog).export_file("web", todo, force=True)
    assert out.rewritten == ["OB-3"] and "priority: P3" in todo.read_text()
    assert (await TodoFiles(backlog).import_file(todo, OP)).conflicts == []


async def test_every_export_keeps_the_file_it_replaced_and_never_a_backup_twice(
    backlog: Backlog, tmp_path: Path
) -> None:
    todo = tmp_path / "TODO.md"
    hand = b"# Our list\r\n\r\n- [ ] keep this line as I wrote it\r\n"
    todo.write_bytes(hand)
    files = TodoFiles(backlog)

    async def export_after(title: str) -> str | None:
        await backlog.file(make_spec(title=title, repo="r"), OP)
        out = await files.export_file("r", todo)
        assert out.changed
        return out.backup

    def kept() -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("TODO.md.orig"))

    assert await export_after("first") == str(tmp_path / "TODO.md.orig")
    assert (tmp_path / "TODO.md.orig").read_bytes() == hand  # byte for byte
    first = todo.read_bytes()
    assert await export_after("second") == str(tmp_path / "TODO.md.orig.1")
    assert (tmp_path / "TODO.md.orig").read_bytes() == hand  # the original is never replaced
    assert (tmp_path / "TODO.md.orig.1").read_bytes() == first
    # nothing new in the backlog: nothing written, nothing kept
    assert not (await files.export_file("r", todo)).changed and kept() == [
        "TODO.md.orig",
        "TODO.md.orig.1",
    ]
    # the person went back to the original: it is kept already, so no copy of it is made
    todo.write_bytes(hand)
    assert await export_after("third") == str(tmp_path / "TODO.md.orig")
    assert kept() == ["TODO.md.orig", "TODO.md.orig.1"]
    # a person's own edit is kept under the next number, whatever was deleted before it
    (tmp_path / "TODO.md.orig").unlink()
    edited = todo.read_bytes() + b"\r\nmy own note\r\n"
    todo.write_bytes(edited)
    assert await export_after("fourth") == str(tmp_path / "TODO.md.orig.2")
    assert (tmp_path / "TODO.md.orig.2").read_bytes() == edited
    assert kept() == ["TODO.md.orig.1", "TODO.md.orig.2"]
    assert b"my own note" in todo.read_bytes()  # and the export kept it in the file too


async def test_import_export_import_gives_the_same_tasks(
    backlog: Backlog, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    for name in ("phase2_founding.md", "checklist_nested.md", "zh_todo.md", "ai_plan.md"):
        await pool.execute("truncate events, outbox, task_commits, tasks restart identity cascade")
        await pool.execute("alter sequence task_number_seq restart")
        src = tmp_path / name
        shutil.copy(CORPUS / name, src)
        first = await TodoFiles(backlog).import_file(src, OP, repo="r")
        tasks = [await backlog.get(k) for k in first.created]
        out = tmp_path / f"export-{name}"
        await TodoFiles(backlog).export_file("r", out)
        again = await TodoFiles(backlog).import_file(out, OP, repo="r")
        assert again.created == [] and again.updated == [] and again.conflicts == [], name
        assert sorted(again.existing) == sorted(first.created), name
        # and into an empty backlog, the export files the same tasks
        await pool.execute("truncate events, outbox, task_commits, tasks restart identity cascade")
        await pool.execute("alter sequence task_number_seq restart")
        await TodoFiles(backlog).import_file(out, OP, repo="r")
        fresh = {t.title: t for t in await backlog.list(TaskFilter(limit=1000))}
        for t in tasks:
            f = fresh[t.title]
            assert (f.priority, f.steps, f.risks, f.trigger, f.notes) == (
                t.priority,
                t.steps,
                t.risks,
                t.trigger,
                t.notes,
            ), (name, t.title)
            assert (f.status_word, f.status_date, f.status_reason) == (
                t.status_word,
                t.status_date,
                t.status_reason,
            ), (name, t.title)


async def test_a_keyed_item_in_a_hand_written_checklist_is_rewritten_in_its_own_shape(
    backlog: Backlog, tmp_path: Path
) -> None:
    todo = tmp_path / "TODO.md"
    todo.write_text("# Tasks\n\n- [ ] first\n- [ ] second\n\nA closing line.\n")
    await TodoFiles(backlog).import_file(todo, OP, repo="r")
    await backlog.approve("OB-2", OP)
    # the person keys an item (ob wrote nothing yet): import remembers it, export owns it
    keyed = "# Tasks\n\n- [ ] first\n- [ ] second\n  key: OB-2\n\nA closing line.\n"
    todo.write_text(keyed)
    assert (await TodoFiles(backlog).import_file(todo, OP, repo="r")).existing == ["OB-1", "OB-2"]
    await backlog.edit("OB-2", OP, title="second, renamed")
    out = await TodoFiles(backlog).export_file("r", todo)
    text = todo.read_text()
    assert out.rewritten == ["OB-2"]
    assert text.startswith("# Tasks\n\n- [ ] first\n- [ ] second, renamed\n  key: OB-2\n")
    assert text.endswith("\n\nA closing line.\n")
    doc = read_document(text)
    assert [i.title for i in doc.tasks] == ["first", "second, renamed"]


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
    res = await TodoFiles(backlog).import_file(
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
    again = await TodoFiles(backlog).import_file(todo, OP)
    assert again.created == [] and len(again.existing) == n


async def test_one_broken_item_is_reported_and_an_interrupted_import_uses_up_no_numbers(
    backlog: Backlog, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    todo = tmp_path / "TODO.md"
    todo.write_text(many_specs(2_000, broken_at=1_999))
    res = await TodoFiles(backlog).import_file(todo, OP)
    assert len(res.created) == 1_999 and len(res.unreadable) == 1
    assert res.unreadable[0].startswith("line ") and "priority must be P0" in res.unreadable[0]
    await pool.execute("truncate events, outbox, task_commits, tasks restart identity cascade")
    await pool.execute("alter sequence task_number_seq restart")

    # interrupted while writing (Ctrl-C, a lost connection): rolled back, no number used
    todo.write_text(many_specs(1_500))

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "writing" and done >= 1_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await TodoFiles(backlog).import_file(todo, OP, on_progress=interrupt)
    assert await pool.fetchval("select count(*) from tasks") == 0
    assert await next_number(pool) == 1
    res = await TodoFiles(backlog).import_file(todo, OP)
    assert res.created[0] == "OB-1" and res.created[-1] == "OB-1500"


async def test_an_oversized_todo_is_refused_before_anything_is_written(
    backlog: Backlog, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    todo = tmp_path / "TODO.md"
    todo.write_bytes(b"## big\n" + b"x" * (MAX_TODO_BYTES + 10))
    with pytest.raises(Invalid, match=r"at most 4 MiB .*split it"):
        await TodoFiles(backlog).import_file(todo, OP)
    todo.write_text("\n".join(f"- [ ] item {i}" for i in range(MAX_TODO_SPECS + 1)))
    with pytest.raises(Invalid, match="at most 10,000"):
        await TodoFiles(backlog).import_file(todo, OP)
    assert await pool.fetchval("select count(*) from tasks") == 0
    # one item over the spec limit is reported; the rest is imported
    todo.write_text("## small\nsteps:\n- a\n## huge\nnotes:\n" + "  x\n" * 40_000 + "## after\n")
    res = await TodoFiles(backlog).import_file(todo, OP)
    assert [(await backlog.get(k)).title for k in res.created] == ["small", "after"]
    assert res.unreadable == [
        "line 4: huge: this item is 160,012 bytes; a spec holds at most 65,536: split it with"
        " `---` lines or headings"
    ]


async def test_export_keeps_crlf_files_byte_for_byte_around_the_owned_spec(
    backlog: Backlog, tmp_path: Path
) -> None:
    hand = (CORPUS / "editor_todo.md").read_text("utf-8").replace("\n", "\r\n").rstrip("\r\n")
    todo = tmp_path / "TODO.md"
    todo.write_bytes(hand.encode())
    res = await TodoFiles(backlog).import_file(todo, OP, repo="ed")
    assert len(res.created) == 7
    # the person keys one item, so that ob owns it
    keyed = hand.replace(
        "- [ ] Keybinding cheat sheet", "- [ ] Keybinding cheat sheet\r\n  key: OB-7"
    )
    todo.write_bytes(keyed.encode())
    await TodoFiles(backlog).import_file(todo, OP, repo="ed")
    await backlog.file(make_spec(title="Print preview", repo="ed"), OP)
    await backlog.edit("OB-7", OP, steps=["list every default binding"])
    out = await TodoFiles(backlog).export_file("ed", todo)
    assert out.rewritten == ["OB-7"] and out.appended == ["OB-8"]
    after = todo.read_bytes().decode()
    before_lines, after_lines = keyed.split("\r\n"), after.split("\r\n")
    owned = before_lines.index("- [ ] Keybinding cheat sheet")
    assert after_lines[:owned] == before_lines[:owned]  # every line before it, as it was
    rest = before_lines[owned + 2 :]
    at = after_lines.index(rest[0])
    assert after_lines[at : at + len(rest)] == rest  # and every line after it
    assert after_lines[owned : owned + 2] == ["- [ ] Keybinding cheat sheet", "  key: OB-7"]
    assert "  - list every default binding" in after_lines[owned:at]
    assert "\n" not in after.replace("\r\n", "")  # the file's line endings throughout
    assert "- [x] Recent files menu\r\n\r\n## Print preview\r\nkey: OB-8\r\n" in after
    doc = read_document(after)
    assert [i.key for i in doc.items if i.key] == ["OB-7", "OB-8"]
