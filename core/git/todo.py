"""The TODO.md bridge: several specs per file, in the spec text form, or plain checklists.

How a file is split into specs (unindented lines only; spec notes are indented, so they never
split):
  * a line of three or more dashes (`---`) ends a spec;
  * a `## Title` heading starts a new spec with that title, unless the heading names a spec
    section (`## Steps`, `## Risks`, `## Notes`, `## Findings`, `## Plan`);
  * a part that holds only `# ` headings and `<!-- comments -->` is a preamble and skipped.

Checklists: a part whose items are all checkboxes (`- [ ] item`, `* [x] item`, `1. [ ] item`;
headings, blank lines and comments around them allowed) is not one spec but a list of them:
each unchecked item becomes its own draft titled with the item (indented unchecked sub-items
become its steps, other indented lines its notes); checked items are skipped and counted. So
`## Backend` followed by `- [ ] add the index` files "add the index".

Import files specs as drafts (approved at once with `approve`), matched idempotently: a spec
with a `key:` line of an existing task, or with the repo and title (case-insensitive) of an
existing task, is left alone. `status: done` or `rejected` specs are never filed. Export writes
a repo's unfinished tasks (draft, open, claimed) in the same form, so importing an export
changes nothing.

Scale: a file holds at most MAX_TODO_BYTES (4 MiB) and MAX_TODO_SPECS (10,000) specs; anything
bigger is refused before anything is written, with a message saying so. The whole file is
parsed and checked first (a broken spec files nothing), then the new tasks are written in
batches in one transaction, at a cost linear in the file. Their numbers are given out only at
the end, in one statement: an import that fails or is interrupted uses up no task numbers.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from core.backlog import Backlog, spec_of
from core.errors import Invalid
from core.git.base import current_head
from core.models import Actor, Lane, OutboxKind, Status, format_key, parse_key
from core.spec import MAX_TITLE, Spec, SpecError, make_spec, parse, render
from core.tasks import TaskFilter, numbers_by_title

_SECTION_NAMES = {"steps", "plan", "risks", "notes", "note", "findings"}
_RULE = re.compile(r"^-{3,}\s*$")
_H2 = re.compile(r"^##[ \t]+(.+?)[ \t]*$")
_PREAMBLE = re.compile(r"^(#[ \t].*|<!--.*-->|)$")
_CHECKBOX = re.compile(r"^([ \t]*)(?:[-*+]|\d{1,3}[.)])[ \t]+\[([ xX])\](?:[ \t]+(.*))?$")
_HEADING = re.compile(r"^#{1,6}([ \t].*)?$")
TODO_FILE = "TODO.md"
IMPORT_LOCK = 0x0B_70D0
MAX_TODO_BYTES = 4 * 1024 * 1024
MAX_TODO_SPECS = 10_000
IMPORT_BATCH = 500
# Drafts of one import that each get an approval card on the phone; a bigger import sends one
# `todo_imported` notice instead (the drafts wait in /inbox).
MAX_IMPORT_CARDS = 20

# on_progress(stage, done, total): stage "checking" (parsing, in specs) then "writing" (tasks)
ProgressFn = Callable[[str, int, int], None]


@dataclass
class Chunk:
    line: int  # first line, 1-based
    text: str
    heading: bool = False  # started by a `## Title` heading (its first line is the title)


def split_specs(text: str) -> list[Chunk]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    chunks: list[Chunk] = []
    cur: list[str] = []
    start = 1
    heading = False
    in_comment = False

    def flush() -> None:
        body = "\n".join(cur)
        lines = [ln.strip() for ln in cur]
        if any(not _PREAMBLE.match(ln) for ln in lines) and body.strip():
            chunks.append(Chunk(start, body, heading))

    for n, raw in enumerate(text.split("\n"), 1):
        if raw.lstrip().startswith("<!--") and "-->" not in raw:
            in_comment = True
        if in_comment:
            if "-->" in raw:
                in_comment = False
            cur.append("<!-- -->")
            continue
        unindented = raw[:1] not in (" ", "\t")
        if unindented and _RULE.match(raw):
            flush()
            cur, start, heading = [], n + 1, False
            continue
        m = _H2.match(raw) if unindented else None
        if m and m.group(1).strip().rstrip(":").lower() not in _SECTION_NAMES:
            flush()
            cur, start, heading = [m.group(1).strip()], n, True
            continue
        cur.append(raw)
    flush()
    return chunks


@dataclass
class TodoFile:
    """What a TODO.md holds: specs to file (with their lines) and checked items skipped."""

    specs: list[Spec] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


@dataclass
class _Item:
    line: int
    title: str
    steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _checklist(chunk: Chunk) -> tuple[list[_Item], list[str]] | None:
    """(unchecked items, checked item titles) when the chunk is a checklist, else None."""
    lines = chunk.text.split("\n")
    body = lines[1:] if chunk.heading else lines
    first = chunk.line + (1 if chunk.heading else 0)
    items: list[_Item] = []
    checked: list[str] = []
    top: int | None = None  # the indentation of top-level items
    parent_checked = False
    for n, raw in enumerate(body, first):
        stripped = raw.strip()
        if not stripped or stripped.startswith("<!--"):
            continue
        m = _CHECKBOX.match(raw)
        if m:
            indent = len(m.group(1).expandtabs(4))
            done = m.group(2) != " "
            text = (m.group(3) or "").strip()
            if top is None or indent <= top:
                top = indent
                parent_checked = done
                if done:
                    checked.append(text)
                elif text:
                    items.append(_Item(n, text))
            elif not done and not parent_checked and items:
                items[-1].steps.append(text)
            continue
        if _HEADING.match(stripped) and raw[:1] == "#":
            continue
        if raw[:1] in (" ", "\t") and top is not None:
            if items and not parent_checked:
                items[-1].notes.append(stripped)
            continue
        return None  # a line that is neither: this part is a spec, not a checklist
    if top is None:
        return None
    return items, checked


def _item_spec(item: _Item) -> Spec:
    title, notes = item.title, list(item.notes)
    if len(title) > MAX_TITLE:
        notes.insert(0, title)
        title = title[: MAX_TITLE - 3].rsplit(" ", 1)[0] + "..."
    return make_spec(title=title, steps=item.steps, notes="\n".join(notes))


def read_todo(text: str, on_progress: ProgressFn | None = None) -> TodoFile:
    """Every spec of a TODO.md, checklist items included; SpecError naming the line of each
    broken one."""
    out = TodoFile()
    problems: list[str] = []
    chunks = split_specs(text)
    for i, chunk in enumerate(chunks):
        if on_progress and i % IMPORT_BATCH == 0:
            on_progress("checking", i, len(chunks))
        listed = _checklist(chunk)
        if listed is not None:
            items, checked = listed
            out.checked.extend(checked)
            for item in items:
                try:
                    out.specs.append(_item_spec(item))
                    out.lines.append(item.line)
                except SpecError as err:
                    problems.extend(f"item at line {item.line}: {p}" for p in err.problems)
            continue
        body = "\n".join(ln for ln in chunk.text.split("\n") if not ln.strip().startswith("<!--"))
        try:
            out.specs.append(parse(body))
            out.lines.append(chunk.line)
        except SpecError as err:
            problems.extend(f"spec at line {chunk.line}: {p}" for p in err.problems)
        if len(problems) >= 20:
            break
    if problems:
        raise SpecError(problems[:20])
    return out


def parse_todo(text: str) -> list[Spec]:
    """Every spec of a TODO.md; SpecError naming the line of each broken spec."""
    return read_todo(text).specs


def render_todo(repo: str, specs: list[Spec]) -> str:
    out = [
        f"# TODO ({repo})",
        "",
        "<!-- Written by `ob export-todo`; `ob import-todo` reads it back. One task per `## `"
        " heading, in the ob spec text form. -->",
        "",
    ]
    for spec in specs:
        text = render(spec)
        out.append("## " + text)
    return "\n".join(out).rstrip("\n") + "\n"


@dataclass
class ImportResult:
    path: str
    repo: str | None
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "title (done)", "item (checked)"
    checked: int = 0  # checked checklist items among the skipped


async def _repo_for_file(backlog: Backlog, path: Path) -> str | None:
    rows = await backlog.pool.fetch("select name, path from repos")
    best = None
    for r in rows:
        rp = Path(r["path"])
        if (path == rp or rp in path.parents) and (best is None or len(str(rp)) > len(best[1])):
            best = (r["name"], str(rp))
    return best[0] if best else None


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

_DRAFT_CARDS = """
insert into outbox (kind, task_id, payload)
select 'draft_filed', t.id,
       jsonb_build_object('key', task_key($4, t.number), 'by', $2::text, 'status', t.status,
                          'lane', t.lane, 'title', t.title, 'repo', t.repo,
                          'imported_from', $3::text)
from tasks t where t.id = any($1::bigint[]) and t.status = 'draft' order by t.number
"""


async def import_todo(
    backlog: Backlog,
    path: str | Path,
    actor: Actor,
    *,
    approve: bool = False,
    repo: str | None = None,
    on_progress: ProgressFn | None = None,
) -> ImportResult:
    """Import one TODO.md; all of it or, when a spec is broken, nothing. `on_progress(stage,
    done, total)` follows the checking of the specs, then the writing of the new tasks."""
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        p = p / TODO_FILE
    text = _read_limited(p)
    todo = await asyncio.to_thread(read_todo, text, on_progress)
    if len(todo.specs) + len(todo.checked) > MAX_TODO_SPECS:
        raise Invalid(
            f"{p} holds {len(todo.specs) + len(todo.checked):,} specs; a TODO.md imports at"
            f" most {MAX_TODO_SPECS:,}: split it into smaller files"
        )
    repo = repo or await _repo_for_file(backlog, p)
    result = ImportResult(str(p), repo)
    result.skipped = [f"{t} (checked)" for t in todo.checked]
    result.checked = len(todo.checked)
    prefix = backlog.prefix
    async with backlog.transaction(wake=True) as conn:
        await conn.execute("select pg_advisory_xact_lock($1)", IMPORT_LOCK)
        # what is in the backlog already: two queries for the whole file
        keyed = {parse_key(s.key, prefix) for s in todo.specs if s.key}
        rows = await conn.fetch(
            "select number, lower(title) as t from tasks where number = any($1::bigint[])",
            sorted(n for n in keyed if n is not None),
        )
        by_number = {r["number"]: r["t"] for r in rows}
        by_title = await numbers_by_title(conn, (s.title for s in todo.specs))

        new: list[Spec] = []
        pending: dict[tuple[str | None, str], int] = {}  # same spec twice in the file
        dups: list[tuple[int, int]] = []  # (index in result.existing, index in new)
        for spec in todo.specs:
            spec_repo = spec.repo or repo
            title = spec.title.lower()
            number = parse_key(spec.key, prefix) if spec.key else None
            found = number if number is not None and by_number.get(number) == title else None
            if found is None:
                found = by_title.get((spec_repo, title))
            if found is not None:
                result.existing.append(format_key(prefix, found))
                continue
            if (spec_repo, title) in pending:
                dups.append((len(result.existing), pending[(spec_repo, title)]))
                result.existing.append("")
                continue
            if spec.status in (Status.DONE, Status.REJECTED):
                result.skipped.append(f"{spec.title} ({spec.status.value})")
                continue
            pending[(spec_repo, title)] = len(new)
            new.append(spec.model_copy(update={"key": None, "status": None, "repo": spec_repo}))
        if new:
            numbers = await _write(conn, backlog, new, actor, approve, str(p), on_progress)
            result.created = [format_key(prefix, n) for n in numbers]
            for at, idx in dups:
                result.existing[at] = result.created[idx]
    return result


async def _write(
    conn: asyncpg.Connection,
    backlog: Backlog,
    specs: list[Spec],
    actor: Actor,
    approve: bool,
    source: str,
    on_progress: ProgressFn | None,
) -> list[int]:
    """Write the new tasks in batches under placeholder numbers, then number them, then write
    their events and notices; returns their numbers, in file order."""
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
    if not approve:
        if total <= MAX_IMPORT_CARDS:
            await conn.execute(_DRAFT_CARDS, ids, who, source, backlog.prefix)
        else:
            first, last = backlog.key(by_id[ids[0]]), backlog.key(by_id[ids[-1]])
            await conn.execute(
                "insert into outbox (kind, task_id, payload) values ($1, null, $2)",
                OutboxKind.TODO_IMPORTED,
                {"path": source, "count": total, "by": who, "first": first, "last": last},
            )
    return [by_id[i] for i in ids]


async def repo_todo_paths(backlog: Backlog) -> list[tuple[str, Path]]:
    rows = await backlog.pool.fetch("select name, path from repos order by name")
    out = []
    for r in rows:
        p = Path(r["path"]) / TODO_FILE
        if p.is_file():
            out.append((r["name"], p))
    return out


async def export_todo(backlog: Backlog, repo: str) -> str:
    """The repo's unfinished tasks as a TODO.md."""
    tasks = await backlog.list(
        TaskFilter(repo=repo, status=[Status.DRAFT, Status.OPEN, Status.CLAIMED], limit=10_000)
    )
    return render_todo(repo, [spec_of(t) for t in tasks])
