"""The TODO.md bridge, both ways: `ob import-todo` and `ob export-todo` (README, "TODO.md").

The text format (how a file people wrote is read, how ob's specs are written back in place) is
core.todo_format; this module reads and writes the files and the backlog.

Import. Every item the file holds is planned first, and nothing is written before the whole file
is planned (`dry_run` stops there): an item is matched with a task by its `key:`, else by its
exact title (any case) within the repo. A new item is filed as a draft (approved with
`approve`); items marked done, dropped or checked are skipped and counted; an item that does not
read is listed with its line and the reason, never the whole file. A matched item is compared
field by field with what the file and the backlog said at their last sync (`todo_sync`, one row
per task and file): a field changed in the file only is applied to the task (an `edited` event
naming the file and line), one changed in the backlog only is left (export writes it), one
changed on both sides is a conflict, reported and not resolved. A keyed item never synced with
this file updates its task; a title match never synced is only remembered.

Export rewrites the items ob owns (those with the `key:` of a task) in place from the backlog,
appends the repo's unfinished tasks the file does not hold, and keeps every other byte. An owned
item edited in the file since the last sync is left as it is (import it first), unless `force`.
Nothing is overwritten without a way back: whenever an export changes the file, the file it
replaces is kept next to it (`TODO.md.orig` the first time, the hand-written original; then
`TODO.md.orig.1`, `.2`, …; none twice, none ever overwritten or deleted); `dry_run` returns the
diff and writes nothing.

Scale: a file holds at most MAX_TODO_BYTES (4 MiB) and MAX_TODO_SPECS (10,000) items; anything
bigger is refused before anything is written. New tasks are written in batches in one
transaction, and numbered only at the end: an import that fails or is interrupted uses up no
task numbers.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel

from core import events
from core.backlog import Backlog, spec_of, written_status
from core.errors import BacklogError, Invalid
from core.git.base import current_head
from core.git.refs import RepoGone, is_bare
from core.models import Actor, Lane, OutboxKind, Status, Task, format_key, parse_key
from core.notices import DraftFiled, TodoImported
from core.service import Service
from core.spec import EDITABLE, WRITTEN_STATUS, Spec, SpecError
from core.tasks import TaskFilter, numbers_by_title, tasks_by_number
from core.todo_format import TodoDocument, read_document, rewrite

TODO_FILE = "TODO.md"
IMPORT_LOCK = 0x0B_70D0
MAX_TODO_BYTES = 4 * 1024 * 1024
MAX_TODO_SPECS = 10_000
IMPORT_BATCH = 500
# Drafts of one import that each get an approval card on the phone; a bigger import sends one
# `todo_imported` notice instead (the drafts wait in /inbox).
MAX_IMPORT_CARDS = 20
SYNC_FIELDS = (*EDITABLE, *WRITTEN_STATUS)

# on_progress(stage, done, total): stage "checking" (planning, in items) then "writing" (tasks)
ProgressFn = Callable[[str, int, int], None]


# ------------------------------------------------------------------ what an item becomes


class Planned(BaseModel):
    """What an import does (or, in a dry run, would do) with one item of the file."""

    line: int
    title: str
    action: str  # file, update, same, backlog_newer, conflict, skip, unreadable, duplicate
    key: str | None = None
    why: str = ""
    changes: dict[str, list[Any]] = {}  # update: field -> [backlog, file]
    conflicts: list[str] = []  # fields changed on both sides
    warnings: list[str] = []


class ImportResult(BaseModel):
    path: str
    repo: str | None
    dry_run: bool = False
    created: list[str] = []  # keys filed (titles in a dry run)
    updated: list[str] = []
    existing: list[str] = []  # in the backlog already, nothing to change
    conflicts: list[str] = []
    skipped: list[str] = []  # "line 12: title (checked)"
    unreadable: list[str] = []  # "line 15: reason"
    warnings: list[str] = []
    checked: int = 0  # checked checklist items among the skipped
    items: list[Planned] = []


def file_view(spec: Spec, repo: str | None) -> dict[str, Any]:
    """The synced fields as the file has them, and the lifecycle it says."""
    view = {f: getattr(spec, f) for f in EDITABLE}
    view["repo"] = spec.repo or repo
    return _json({**view, **written_status(spec), "lifecycle": _class(spec.status)})


def task_view(task: Task) -> dict[str, Any]:
    """The synced fields as the backlog has them, and the lifecycle."""
    return _json({**{f: getattr(task, f) for f in SYNC_FIELDS}, "lifecycle": _class(task.status)})


def _json(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in view.items()}


def _class(status: Status | None) -> str:
    """done, rejected, or unfinished (what an import can tell apart, and never changes)."""
    if status in (Status.DONE, Status.REJECTED):
        return status.value
    return "unfinished"


class _Match(BaseModel):
    item: Planned
    task: Task
    apply: dict[str, Any] = {}
    record: dict[str, Any] | None = None  # the file view to remember, None: leave the record


class _Plan(BaseModel):
    action: str
    apply: dict[str, Any] = {}
    conflicts: list[str] = []
    remember: dict[str, Any] | None = None
    why: str = ""


def _three_way(
    fview: dict[str, Any], task: Task, synced: asyncpg.Record | None, keyed: bool
) -> _Plan:
    """Each synced field compared with what the file and the backlog said at the last sync: a
    field changed in the file only is applied, in the backlog only left, on both sides a
    conflict. The lifecycle is never changed by an import: a file that says otherwise is
    reported (each time, until they agree)."""
    tview = task_view(task)
    if synced is None:
        if not keyed:
            return _Plan(action="same", remember=fview, why="already in the backlog (by title)")
        then_file, then_task = tview, tview  # keyed, never synced with this file: it speaks
    else:
        then_file, then_task = dict(synced["file_view"]), dict(synced["task_view"])
    plan = _Plan(action="same", remember=dict(fview))
    assert plan.remember is not None
    other_life = fview["lifecycle"] != tview["lifecycle"]
    for f in (*SYNC_FIELDS, "lifecycle"):
        in_file = fview.get(f) != then_file.get(f)
        if not in_file or fview.get(f) == tview.get(f):
            continue
        if f == "lifecycle" or (f in WRITTEN_STATUS and other_life):
            plan.remember[f] = then_file.get(f)
            plan.why = (
                f"the file says {fview['lifecycle']}, the backlog has {task.status.value}:"
                " an import never changes that"
            )
        elif tview.get(f) != then_task.get(f):
            plan.conflicts.append(f)
            plan.remember[f] = then_file.get(f)
        else:
            plan.apply[f] = fview.get(f)
    if plan.conflicts:
        plan.action = "conflict"
        plan.why = (
            f"{', '.join(plan.conflicts)} changed in the file and in the backlog since the last"
            " sync; make them agree, or `ob export-todo --force` to write the backlog's version"
        )
    elif plan.apply:
        plan.action = "update"
    elif any(tview.get(f) != then_task.get(f) for f in SYNC_FIELDS) and tview != fview:
        plan.action, plan.why = "backlog_newer", "changed in the backlog; export writes it"
    elif not plan.why:
        plan.why = "already in the backlog"
    return plan


async def plan_items(
    conn: asyncpg.Connection,
    backlog: Backlog,
    doc: TodoDocument,
    repo: str | None,
    path: str | None,
    on_progress: ProgressFn | None = None,
) -> tuple[list[Planned], list[tuple[Planned, Spec]], list[_Match]]:
    """What each item of the document becomes: every item planned, the new specs to file and the
    matched tasks (with what to apply). Reads only."""
    prefix = backlog.prefix
    readable = [i for i in doc.items if i.spec is not None]
    numbers = {n for i in readable if i.key and (n := parse_key(i.key, prefix)) is not None}
    by_number = await tasks_by_number(conn, numbers, prefix)
    by_title = await numbers_by_title(conn, (i.spec.title for i in readable if i.spec))
    titled = await tasks_by_number(conn, by_title.values(), prefix)
    synced: dict[int, asyncpg.Record] = {}
    if path is not None:
        rows = await conn.fetch(
            "select s.task_id, t.number, s.file_view, s.task_view from todo_sync s"
            " join tasks t on t.id = s.task_id where s.path = $1 and t.number = any($2)",
            path,
            sorted({*by_number, *by_title.values()}),
        )
        synced = {r["number"]: r for r in rows}
    planned: list[Planned] = []
    new: list[tuple[Planned, Spec]] = []
    matches: list[_Match] = []
    seen_new: dict[tuple[str | None, str], int] = {}
    seen_task: dict[int, int] = {}
    for n, item in enumerate(doc.items):
        if on_progress and n % IMPORT_BATCH == 0:
            on_progress("checking", n, len(doc.items))
        p = Planned(line=item.line, title=item.title, action="skip", warnings=item.warnings)
        planned.append(p)
        if item.spec is None:
            if item.skip is not None:
                p.why = item.skip
            else:
                p.action, p.why = "unreadable", item.problem or "does not read"
            continue
        spec = item.spec
        spec_repo = spec.repo or repo
        number = parse_key(spec.key, prefix) if spec.key else None
        task = by_number.get(number) if number is not None else None
        keyed = task is not None
        if task is None and item.skip is None:
            found = by_title.get((spec_repo, spec.title.lower()))
            task = titled.get(found) if found is not None else None
        if task is None:
            if item.skip is not None:
                p.why = item.skip
                continue
            if spec.key and number is not None:
                p.warnings = [*p.warnings, f"{spec.key} is not in the backlog: filed as new"]
            at = seen_new.get((spec_repo, spec.title.lower()))
            if at is not None:
                p.action, p.why = "duplicate", f"the same title as line {at}"
                continue
            seen_new[(spec_repo, spec.title.lower())] = item.line
            p.action = "file"
            new.append((p, spec.model_copy(update={"key": None, "repo": spec_repo})))
            continue
        p.key = task.key
        if task.number in seen_task:
            p.action, p.why = "duplicate", f"{task.key} is at line {seen_task[task.number]} too"
            continue
        seen_task[task.number] = item.line
        fview = file_view(spec, spec_repo)
        plan = _three_way(fview, task, synced.get(task.number), keyed)
        if plan.apply and task.status not in (Status.DRAFT, Status.OPEN, Status.CLAIMED):
            plan = _Plan(action="same", why=f"{task.key} is {task.status.value}: not edited")
        p.action, p.why, p.conflicts = plan.action, plan.why, plan.conflicts
        p.changes = {f: [task_view(task).get(f), v] for f, v in plan.apply.items()}
        matches.append(_Match(item=p, task=task, apply=plan.apply, record=plan.remember))
    return planned, new, matches


def _summarise(result: ImportResult, planned: list[Planned], doc: TodoDocument) -> None:
    checked = {i.line for i in doc.items if i.box in ("x", "X") and i.skip == "checked"}
    for p in planned:
        label = p.key or p.title
        if p.action == "update":
            result.updated.append(p.key or "")
        elif p.action in ("same", "backlog_newer"):
            result.existing.append(p.key or "")
        elif p.action == "conflict":
            result.conflicts.append(f"{p.key} (line {p.line}): {p.why}")
        elif p.action == "skip":
            result.skipped.append(f"line {p.line}: {label} ({p.why})")
            result.checked += p.line in checked
        elif p.action == "unreadable":
            result.unreadable.append(f"line {p.line}: {p.title[:60]}: {p.why}")
        elif p.action == "duplicate":
            result.skipped.append(f"line {p.line}: {label} ({p.why})")
        result.warnings += [f"line {p.line}: {w}" for w in p.warnings]
    result.items = planned


# ------------------------------------------------------------------ files


def _read_limited(p: Path) -> str:
    try:
        with p.open("rb") as f:
            data = f.read(MAX_TODO_BYTES + 1)
    except OSError as err:
        raise Invalid(f"cannot read {p}: {err}") from None
    if len(data) > MAX_TODO_BYTES:
        size = p.stat().st_size
        raise Invalid(
            f"{p} is {size / 1048576:.1f} MiB; a TODO.md imports at most"
            f" {MAX_TODO_BYTES // 1048576} MiB (and {MAX_TODO_SPECS:,} specs): split it into"
            " smaller files and import them one by one"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Invalid(f"cannot read {p}: it is not UTF-8 ({err})") from None


def _todo_path(path: str | Path) -> Path:
    p = Path(path).expanduser().resolve()
    return p / TODO_FILE if p.is_dir() else p


# ------------------------------------------------------------------ import


_COPY_COLUMNS = [
    "number",
    "title",
    "repo",
    "status",
    "lane",
    "priority",
    "trigger",
    "trigger_on",
    "steps",
    "risks",
    "notes",
    "findings",
    "created_by",
    "approved_by",
    "approved_at",
    "approved_lane",
    "base_sha",
    "status_word",
    "status_date",
    "status_reason",
    "status_at",
]

# Real numbers for the rows this import wrote with placeholders -1, -2, ... (in that order),
# given out in one statement just before the commit.
_NUMBER = """
update tasks t set number = m.n
from (select o.id, nextval('task_number_seq') as n
      from (select id, number from tasks where number between -$1::bigint and -1
            order by number desc) o) m
where t.id = m.id
returning t.id, t.number
"""

_FILED_EVENTS = """
insert into events (task_id, actor, kind, details)
select t.id, $2::text, 'filed',
       jsonb_build_object('status', t.status, 'lane', t.lane, 'title', t.title, 'repo', t.repo,
                          'imported_from', $3::text)
from tasks t where t.id = any($1::bigint[]) order by t.number
"""

# What the file and the backlog say now, per task (by number), remembered for the next sync.
_RECORD = """
insert into todo_sync (task_id, path, file_view, task_view)
select t.id, $2, u.file_view, u.task_view
from unnest($1::bigint[], $3::jsonb[], $4::jsonb[]) u(number, file_view, task_view)
join tasks t on t.number = u.number
on conflict (task_id, path) do update
set file_view = excluded.file_view, task_view = excluded.task_view, synced_at = now()
"""


async def _record(
    conn: asyncpg.Connection, path: str, rows: list[tuple[int, dict[str, Any], dict[str, Any]]]
) -> None:
    if rows:
        await conn.execute(
            _RECORD, [r[0] for r in rows], path, [r[1] for r in rows], [r[2] for r in rows]
        )


async def _write(
    conn: asyncpg.Connection,
    backlog: Backlog,
    specs: list[Spec],
    actor: Actor,
    approve: bool,
    source: str,
    on_progress: ProgressFn | None,
) -> dict[int, int]:
    """Write the new tasks in batches under placeholder numbers, then number them, then write
    their events and notices; returns id -> number, in file order."""
    who = str(actor)
    heads: dict[str, str | None] = {}
    if approve:  # the plan is approved against each repo's HEAD (drift), read once per repo
        for r in sorted({s.repo for s in specs if s.repo}):
            heads[r] = await current_head(conn, r)
    total = len(specs)
    now = await conn.fetchval("select now()")
    if on_progress:
        on_progress("writing", 0, total)
    for start in range(0, total, IMPORT_BATCH):
        batch = specs[start : start + IMPORT_BATCH]
        records = [
            (
                -(start + i + 1),
                s.title,
                s.repo,
                Status.OPEN.value if approve else Status.DRAFT.value,
                ((s.lane or Lane.TRIAGE) if approve else s.lane),
                s.priority,
                s.trigger,
                s.trigger_on,
                s.steps,
                s.risks,
                s.notes,
                s.findings,
                who,
                who if approve else None,
                now if approve else None,
                (s.lane or Lane.TRIAGE) if approve else None,
                heads.get(s.repo) if (approve and s.repo) else None,
                *written_status(s).values(),
                _status_at(s.status_date, now),
            )
            for i, s in enumerate(batch)
        ]
        await conn.copy_records_to_table("tasks", records=records, columns=_COPY_COLUMNS)
        if on_progress:
            on_progress("writing", start + len(batch), total)
    rows = await conn.fetch(_NUMBER, total)
    by_id = {r["id"]: r["number"] for r in rows}
    ids = sorted(by_id, key=lambda i: by_id[i])
    await conn.execute(_FILED_EVENTS, ids, who, source)
    if not approve and total <= MAX_IMPORT_CARDS:  # an approval card each
        cards = [(i, DraftFiled(key=backlog.key(by_id[i]), by=who)) for i in ids]
        await events.notify_many(conn, OutboxKind.DRAFT_FILED, cards)
    elif not approve:  # one notice for them all
        first, last = backlog.key(by_id[ids[0]]), backlog.key(by_id[ids[-1]])
        notice = TodoImported(path=source, count=total, by=who, first=first, last=last)
        await events.notify_many(conn, OutboxKind.TODO_IMPORTED, [(None, notice)])
    return {i: by_id[i] for i in ids}


def _status_at(on: date | None, now: datetime) -> datetime:
    """A new task's status date: the day its status line names, else now."""
    return datetime(on.year, on.month, on.day, tzinfo=UTC) if on else now


# ------------------------------------------------------------------ export


class ExportResult(BaseModel):
    path: str | None  # None: written to stdout
    text: str  # the file as it is (or, in a dry run, would be) after the export
    changed: bool
    rewritten: list[str] = []  # owned items written from the backlog
    appended: list[str] = []  # tasks added at the end
    kept: list[str] = []  # owned items left as they are, and why
    by_title: list[str] = []  # tasks the file holds without their key (import matched them)
    backup: str | None = None  # where the file it replaced is kept
    diff: str = ""


BACKUP_SUFFIX = ".orig"


def _backups(target: Path) -> list[tuple[int, Path]]:
    """The backups kept next to `target`, oldest first: `TODO.md.orig` (0), then
    `TODO.md.orig.1`, `TODO.md.orig.2`, …"""
    first = target.with_name(target.name + BACKUP_SUFFIX)
    found = [(0, first)] if first.is_file() else []
    prefix = first.name + "."
    for p in target.parent.iterdir():
        n = p.name.removeprefix(prefix)
        if p.name.startswith(prefix) and n.isascii() and n.isdigit() and p.is_file():
            found.append((int(n), p))
    return sorted(found)


def _keep_previous(target: Path) -> Path:
    """Keep the file `target` holds before it is replaced, and say where: `TODO.md.orig` is the
    file as it was before the first export that changed it, and each later one keeps the file
    it replaced as `TODO.md.orig.1`, `.2`, … (the highest number the newest) — unless a backup
    holds those very bytes already. No backup is ever overwritten or deleted: they stay until
    the person deletes them."""
    data = target.read_bytes()
    kept = _backups(target)
    for _, p in kept:
        if p.stat().st_size == len(data) and p.read_bytes() == data:
            return p
    n = kept[-1][0] + 1 if kept else 0
    while True:
        path = target.with_name(target.name + BACKUP_SUFFIX + (f".{n}" if n else ""))
        try:
            with open(path, "xb") as f:  # never over another file, even one made meanwhile
                f.write(data)
            return path
        except FileExistsError:
            n += 1


def _replace_file(target: Path, new: str) -> str | None:
    """Write `new` over `target` atomically, keeping the previous file next to it (returns
    where; None when there was none)."""
    backup = str(_keep_previous(target)) if target.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(new)
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return backup


def repo_todo_file(repo_path: str) -> Path | None:
    """A registered repo's TODO.md, in its work tree; None for a bare repository (ob's own clone
    of a URL, or one agents push to): a file in the git directory is nobody's TODO.md."""
    try:
        bare = is_bare(repo_path)
    except RepoGone:
        bare = False  # reading it says what is wrong
    return None if bare else Path(repo_path) / TODO_FILE


class TodoFiles(Service):
    """TODO.md files, both ways: import one into the backlog, export the backlog into them."""

    async def _repo_for_file(self, path: Path) -> str | None:
        rows = await self.pool.fetch("select name, path from repos")
        best = None
        for r in rows:
            rp = Path(r["path"])
            if (path == rp or rp in path.parents) and (best is None or len(str(rp)) > len(best[1])):
                best = (r["name"], str(rp))
        return best[0] if best else None

    async def import_file(
        self,
        path: str | Path,
        actor: Actor,
        *,
        approve: bool = False,
        repo: str | None = None,
        dry_run: bool = False,
        on_progress: ProgressFn | None = None,
    ) -> ImportResult:
        """Import one TODO.md (module docstring). `on_progress(stage, done, total)` follows the
        planning of the items, then the writing of the new tasks."""
        p = _todo_path(path)
        text = _read_limited(p)
        doc = await asyncio.to_thread(read_document, text, p.name)
        if len(doc.items) > MAX_TODO_SPECS:
            raise Invalid(
                f"{p} holds {len(doc.items):,} specs; a TODO.md imports at most"
                f" {MAX_TODO_SPECS:,}: split it into smaller files"
            )
        repo = repo or await self._repo_for_file(p)
        result = ImportResult(path=str(p), repo=repo, dry_run=dry_run)
        async with self.backlog.transaction(wake=not dry_run) as conn:
            if not dry_run:
                await conn.execute("select pg_advisory_xact_lock($1)", IMPORT_LOCK)
            planned, new, matches = await plan_items(
                conn, self.backlog, doc, repo, str(p), on_progress
            )
            _summarise(result, planned, doc)
            if dry_run:
                result.created = [spec.title for _, spec in new]
                return result
            details = {"todo": str(p)}
            records: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
            for m in matches:
                task = m.task
                if m.apply:
                    try:
                        edited = await self.backlog.edit_in(
                            conn, task.key, actor, m.apply, {**details, "line": m.item.line}
                        )
                        task = edited.task
                    except (BacklogError, SpecError) as err:
                        m.item.action, m.item.why = "unreadable", str(err)
                        result.updated.remove(task.key)
                        result.unreadable.append(f"line {m.item.line}: {task.key}: {err}")
                        continue
                if m.record is not None:
                    records.append((task.number, m.record, task_view(task)))
            if new:
                specs = [spec for _, spec in new]
                ids = await _write(conn, self.backlog, specs, actor, approve, str(p), on_progress)
                result.created = [format_key(self.prefix, n) for n in ids.values()]
                for (item, spec), number in zip(new, ids.values(), strict=True):
                    item.key = format_key(self.prefix, number)
                    view = file_view(spec, spec.repo)  # the task holds what the file says
                    records.append((number, view, view))
            await _record(conn, str(p), records)
        return result

    async def repo_files(self) -> list[tuple[str, Path]]:
        rows = await self.pool.fetch("select name, path from repos order by name")
        out = []
        for r in rows:
            p = repo_todo_file(r["path"])
            if p is not None and p.is_file():
                out.append((r["name"], p))
        return out

    async def export_file(
        self,
        repo: str,
        path: str | Path | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
    ) -> ExportResult:
        """Write the repo's tasks into its TODO.md (or `path`): owned items in place, the
        unfinished tasks the file lacks at the end, every other byte as it was (module docstring).
        `path` None with a repo that has no work tree gives the text only."""
        target = _todo_path(path) if path is not None else None
        old = _read_limited(target) if target is not None and target.is_file() else ""
        doc = read_document(old, target.name if target else TODO_FILE)
        prefix = self.prefix
        async with self.backlog.transaction() as conn:
            owned = {
                i: n
                for i, item in enumerate(doc.items)
                if item.key and (n := parse_key(item.key, prefix)) is not None
            }
            tasks = await tasks_by_number(conn, owned.values(), prefix)
            unfinished = await self.backlog.list(
                TaskFilter(
                    repo=repo, status=[Status.DRAFT, Status.OPEN, Status.CLAIMED], limit=10_000
                )
            )
            synced: dict[int, dict[str, Any]] = {}
            if target is not None:
                rows = await conn.fetch(
                    "select t.number, s.file_view from todo_sync s join tasks t on t.id = s.task_id"
                    " where s.path = $1 and t.number = any($2)",
                    str(target),
                    sorted(tasks),
                )
                synced = {r["number"]: dict(r["file_view"]) for r in rows}
            result = ExportResult(path=str(target) if target else None, text=old, changed=False)
            replace: dict[int, Spec] = {}
            for index, number in owned.items():
                item, task = doc.items[index], tasks.get(number)
                if task is None:
                    result.kept.append(f"line {item.line}: {item.key} is not in the backlog")
                    continue
                assert item.spec is not None
                if not force and target is not None:
                    now = file_view(item.spec, item.spec.repo or task.repo)
                    if synced.get(task.number) != now:
                        why = (
                            "edited in the file since the last sync"
                            if task.number in synced
                            else "not synced with this file yet"
                        )
                        result.kept.append(
                            f"line {item.line}: {task.key} {why}: left as it is; `ob import-todo`"
                            " it first (or --force)"
                        )
                        continue
                replace[index] = spec_of(task)
                result.rewritten.append(task.key)
            in_file = {tasks[n].key for n in owned.values() if n in tasks}
            titles = {
                (i.spec.repo or repo, i.spec.title.lower()): i
                for i in doc.items
                if i.spec is not None
            }
            append: list[Task] = []
            for t in unfinished:
                if t.key in in_file:
                    continue
                if (t.repo, t.title.lower()) in titles:
                    result.by_title.append(t.key)
                    continue
                append.append(t)
            result.appended = [t.key for t in append]
            new_text = rewrite(doc, replace, [spec_of(t) for t in append], title=f"TODO ({repo})")
            result.text, result.changed = new_text, new_text != old
            if result.changed:
                result.diff = "".join(
                    difflib.unified_diff(
                        old.splitlines(keepends=True),
                        new_text.splitlines(keepends=True),
                        fromfile=f"{target or TODO_FILE} (now)",
                        tofile=f"{target or TODO_FILE} (after export)",
                    )
                )
            if dry_run or target is None:
                return result
            if result.changed:
                result.backup = await asyncio.to_thread(_replace_file, target, new_text)
            written = read_document(new_text, target.name)
            by_key = {i.key: i for i in written.items if i.key and i.spec is not None}
            records = []
            for t in [*(tasks[n] for n in owned.values() if n in tasks), *append]:
                now_item = by_key.get(t.key)
                if now_item is None or now_item.spec is None:
                    continue
                if t.key in result.rewritten or t.key in result.appended:
                    view = file_view(now_item.spec, now_item.spec.repo or t.repo)
                    records.append((t.number, view, task_view(t)))
            await _record(conn, str(target), records)
        return result
