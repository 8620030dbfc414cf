"""The TODO.md bridge: several specs per file, in the spec text form.

How a file is split into specs (unindented lines only; spec notes are indented, so they never
split):
  * a line of three or more dashes (`---`) ends a spec;
  * a `## Title` heading starts a new spec with that title, unless the heading names a spec
    section (`## Steps`, `## Risks`, `## Notes`, `## Findings`, `## Plan`);
  * a part that holds only `# ` headings and `<!-- comments -->` is a preamble and skipped.

Import files specs as drafts (approved at once with `approve`), matched idempotently: a spec
with a `key:` line of an existing task, or with the repo and title (case-insensitive) of an
existing task, is left alone. `status: done` or `rejected` specs are never filed. Export writes
a repo's unfinished tasks (draft, open, claimed) in the same form, so importing an export
changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from core.backlog import Backlog, spec_of
from core.errors import Invalid
from core.models import Actor, Lane, Status, parse_key
from core.spec import Spec, SpecError, parse, render
from core.tasks import TaskFilter

_SECTION_NAMES = {"steps", "plan", "risks", "notes", "note", "findings"}
_RULE = re.compile(r"^-{3,}\s*$")
_H2 = re.compile(r"^##[ \t]+(.+?)[ \t]*$")
_PREAMBLE = re.compile(r"^(#[ \t].*|<!--.*-->|)$")
TODO_FILE = "TODO.md"
IMPORT_LOCK = 0x0B_70D0


@dataclass
class Chunk:
    line: int  # first line, 1-based
    text: str


def split_specs(text: str) -> list[Chunk]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    chunks: list[Chunk] = []
    cur: list[str] = []
    start = 1
    in_comment = False

    def flush() -> None:
        body = "\n".join(cur)
        lines = [ln.strip() for ln in cur]
        if any(not _PREAMBLE.match(ln) for ln in lines) and body.strip():
            chunks.append(Chunk(start, body))

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
            cur, start = [], n + 1
            continue
        m = _H2.match(raw) if unindented else None
        if m and m.group(1).strip().rstrip(":").lower() not in _SECTION_NAMES:
            flush()
            cur, start = [m.group(1).strip()], n
            continue
        cur.append(raw)
    flush()
    return chunks


def parse_todo(text: str) -> list[Spec]:
    """Every spec of a TODO.md; SpecError naming the line of each broken spec."""
    specs: list[Spec] = []
    problems: list[str] = []
    for chunk in split_specs(text):
        body = "\n".join(ln for ln in chunk.text.split("\n") if not ln.strip().startswith("<!--"))
        try:
            specs.append(parse(body))
        except SpecError as err:
            problems.extend(f"spec at line {chunk.line}: {p}" for p in err.problems)
    if problems:
        raise SpecError(problems[:20])
    return specs


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
    skipped: list[str] = field(default_factory=list)


async def _repo_for_file(backlog: Backlog, path: Path) -> str | None:
    rows = await backlog.pool.fetch("select name, path from repos")
    best = None
    for r in rows:
        rp = Path(r["path"])
        if (path == rp or rp in path.parents) and (best is None or len(str(rp)) > len(best[1])):
            best = (r["name"], str(rp))
    return best[0] if best else None


async def import_todo(
    backlog: Backlog,
    path: str | Path,
    actor: Actor,
    *,
    approve: bool = False,
    repo: str | None = None,
) -> ImportResult:
    """Import one TODO.md; all of it or, when a spec is broken, nothing."""
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        p = p / TODO_FILE
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise Invalid(f"cannot read {p}: {err}") from None
    specs = parse_todo(text)
    repo = repo or await _repo_for_file(backlog, p)
    result = ImportResult(str(p), repo)
    async with backlog.transaction(wake=True) as conn:
        await conn.execute("select pg_advisory_xact_lock($1)", IMPORT_LOCK)
        for spec in specs:
            spec_repo = spec.repo or repo
            existing = None
            number = parse_key(spec.key, backlog.prefix) if spec.key else None
            if number is not None:
                existing = await conn.fetchval(
                    "select number from tasks where number = $1 and lower(title) = lower($2)",
                    number,
                    spec.title,
                )
            if existing is None:
                existing = await conn.fetchval(
                    "select number from tasks where repo is not distinct from $1"
                    " and lower(title) = lower($2) order by number limit 1",
                    spec_repo,
                    spec.title,
                )
            if existing is not None:
                result.existing.append(backlog.key(existing))
                continue
            if spec.status in (Status.DONE, Status.REJECTED):
                result.skipped.append(f"{spec.title} ({spec.status.value})")
                continue
            new = spec.model_copy(update={"key": None, "status": None, "repo": spec_repo})
            task_id = await backlog.insert_task(
                conn,
                new,
                actor,
                approve=approve,
                lane=(spec.lane or Lane.TRIAGE) if approve else None,
                event_details={"imported_from": str(p)},
            )
            number = await conn.fetchval("select number from tasks where id = $1", task_id)
            result.created.append(backlog.key(number))
    return result


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
