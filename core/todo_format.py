"""The TODO.md text format: a file people wrote by hand, read as tasks; and ob's own specs written
back into it in place. Pure text (core.git.todo reads and writes the files and the backlog).

Reading (README, "TODO.md files"). Every line is first given a kind, so that structure is never
mistaken for fields: YAML front matter, fenced code, HTML comments and tags (`<a id="top"></a>`),
tables, link-only lines (tables of contents, "back to top"), badges, "Last updated" lines and
block quotes are structure. Then:
  * a heading with spec fields under it (status, priority, trigger, steps, risks, … in any
    decoration) is one spec: the heading is its title; headings naming a spec section
    (`### Steps`) and deeper headings without fields of their own belong to it;
  * a heading with list items under it is a group: each item is a task (unless the heading
    reads as a task's title, `## Add an index`: then the items are its steps); a group named after a
    priority (`### Low`, `## 高优先级`) or a status (`## In progress`, `## Blocked`) gives its
    items that priority or status word, a done section (`## Done`, `# --- Done ---`) marks them
    done; headings with sub-headings are groups too;
  * the document's title (its first heading, a level-1 one), furniture headings (`Contents`,
    `Legend`, `Overview`, `Next steps`, …; only checkboxes count under them) and empty group
    headings are not tasks; any other heading with prose only, or nothing, is a spec (title and
    notes);
  * a list item is one task: its title the item's text, lines nested under it its fields (as in a
    spec), nested items its steps; `[x]`, `✅` and ~~struck~~ items are done, `[-]` cancelled:
    skipped and counted, never steps of another task;
  * parts between `---` lines that start with a line of text are specs in the spec text form;
    a first part without fields before parts with fields is a preamble;
  * `TODO: …` lines are tasks; other prose and `Label:` group labels are context;
  * a todo.txt (one task per line, `(A)` priorities, `x ` for done) is read line by line.
An item that does not read is reported with its line and the reason, never the whole file; an
item over the spec limits is cut (a long title or step keeps its full text in the notes, steps
beyond 100 go to the notes) or, over 64 KiB, reported.

Writing: `rewrite` replaces the lines of the items ob owns (those with a `key:`) with the task as
it is now, in the item's own shape (a heading spec stays a heading spec at its level, a checklist
item stays a checklist item), and appends new ones at the end; every other byte stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from core import todo_words as words
from core.models import Status
from core.spec import (
    MAX_ITEM,
    MAX_RISKS,
    MAX_SPEC_BYTES,
    MAX_STEPS,
    MAX_TITLE,
    Reading,
    Spec,
    SpecError,
    build,
    check_lines,
    read,
    render,
)


class Kind(StrEnum):
    BLANK = "blank"
    HEADING = "heading"
    RULE = "rule"
    FENCE = "fence"  # a fenced code block, fences included
    FRONT = "front"  # YAML front matter
    COMMENT = "comment"  # <!-- … -->, Obsidian %% … %%
    TABLE = "table"
    HTML = "html"
    LINK = "link"  # links and images only: tables of contents, "back to top", badges
    DECOR = "decor"  # "Last updated …", a setext underline
    QUOTE = "quote"
    LIST = "list"
    TEXT = "text"


STRUCTURE = {Kind.COMMENT, Kind.TABLE, Kind.HTML, Kind.LINK, Kind.DECOR, Kind.FRONT, Kind.QUOTE}


@dataclass
class Line:
    n: int  # 1-based
    raw: str  # without its line ending
    kind: Kind
    indent: int = 0  # columns (tabs are 4)
    level: int = 0  # a heading's level
    text: str = ""  # a heading's or list item's text
    marker: str = ""  # a list item's bullet: -, *, 1.
    box: str | None = None  # a list item's checkbox character


_HEADING = re.compile(r"^(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_RULE = re.compile(r"^([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_SETEXT = re.compile(r"^=+[ \t]*$")
_LIST = re.compile(
    r"^(?P<indent>[ \t]*)(?P<marker>[-*+•]|\d{1,3}[.)])"
    r"(?:[ \t]+(?:\[(?P<box>[^\]])\](?=[ \t]|$)[ \t]*)?(?P<text>.*))?$"
)
_FENCE = re.compile(r"^(`{3,}|~{3,})")
_ANCHOR_LINK = re.compile(r"\[[^\]]*\]\(#[^)]*\)")
_ANY_LINK = re.compile(r"!?\[(?:[^\]]|\]\()*?\]\([^)]*\)")
_HTML = re.compile(r"^</?[A-Za-z!][^>]*>.*>$|^</?[A-Za-z][^>]*/?>$")
_TODO_LINE = re.compile(r"^(?:TODO|FIXME|To ?do)[ \t]*[:：][ \t]*(\S.*)$", re.I)
_DONE_MARKS = ("✅", "✔️", "✔", "✓", "☑️", "☑")
_CANCEL_MARKS = ("❌", "🚫", "✗")
_TODO_TXT = re.compile(
    r"^(?:x [0-9]{4}-[0-9]{2}-[0-9]{2} |\([A-Z]\) |[0-9]{4}-[0-9]{2}-[0-9]{2} )|\s[+@]\w", re.A
)


def _columns(raw: str) -> int:
    head = raw[: len(raw) - len(raw.lstrip(" \t"))]
    return len(head.expandtabs(4))


def _heading_text(text: str) -> str:
    text = re.sub(r"[ \t]+#+$", "", text.strip())
    return text.strip(" -=*_~\t") or text


def _link_only(s: str, anchors_only: bool) -> bool:
    rest = (_ANCHOR_LINK if anchors_only else _ANY_LINK).sub("", s)
    return bool(rest != s) and not re.search(r"\w", rest)


def classify(lines: list[str]) -> list[Line]:
    """Give every line of a file its kind (lines without their endings)."""
    out: list[Line] = []
    front_end = -1
    if lines and lines[0].strip() == "---":
        for j in range(1, min(len(lines), 200)):
            if lines[j].strip() in ("---", "..."):
                inner = [x for x in lines[1:j] if x.strip()]
                if inner and re.match(r"^[\w-]+[ \t]*:", inner[0]):
                    front_end = j
                break
    fence: str | None = None
    fence_indent = 0
    comment = obsidian = False
    for i, raw in enumerate(lines):
        n, s = i + 1, raw.strip()
        indent = _columns(raw)
        unindented = raw[:1] not in (" ", "\t")
        if i <= front_end:
            out.append(Line(n, raw, Kind.FRONT))
            continue
        if fence is not None and s and indent < fence_indent:
            fence = None  # an unclosed fence ends with the item (or notes) it was indented in
        if fence is not None:
            out.append(Line(n, raw, Kind.FENCE, fence_indent))
            if s.startswith(fence) and not s.strip(fence[0]):
                fence = None
            continue
        if comment or obsidian:
            out.append(Line(n, raw, Kind.COMMENT, indent))
            if comment and "-->" in raw:
                comment = False
            if obsidian and s.endswith("%%"):
                obsidian = False
            continue
        if not s:
            out.append(Line(n, raw, Kind.BLANK, indent))
            continue
        m = _FENCE.match(s)
        if m:
            fence, fence_indent = m.group(1), indent
            out.append(Line(n, raw, Kind.FENCE, indent))
            continue
        if s.startswith("<!--"):
            comment = "-->" not in s[4:]
            out.append(Line(n, raw, Kind.COMMENT, indent))
            continue
        if s.startswith("%%"):
            obsidian = s == "%%" or not s[2:].rstrip().endswith("%%")
            out.append(Line(n, raw, Kind.COMMENT, indent))
            continue
        if unindented and _RULE.match(raw):
            out.append(Line(n, raw, Kind.RULE))
            continue
        h = _HEADING.match(raw) if unindented else None
        if h:
            out.append(
                Line(n, raw, Kind.HEADING, 0, len(h.group(1)), _heading_text(h.group(2) or ""))
            )
            continue
        if unindented and i + 1 < len(lines) and _SETEXT.match(lines[i + 1]):
            out.append(Line(n, raw, Kind.HEADING, 0, 1, _heading_text(s)))
            continue
        if _SETEXT.match(s) and out and out[-1].kind == Kind.HEADING and out[-1].n == n - 1:
            out.append(Line(n, raw, Kind.DECOR))
            continue
        first = s[0]
        if first == "|":
            out.append(Line(n, raw, Kind.TABLE, indent))
        elif first == ">":
            out.append(Line(n, raw, Kind.QUOTE, indent))
        elif first == "<" and _HTML.match(s):
            out.append(Line(n, raw, Kind.HTML, indent))
        elif first in "[!" and "](" in s and _link_only(s, anchors_only=False):
            out.append(Line(n, raw, Kind.LINK, indent))
        elif (li := _LIST.match(raw) if first in "-*+•0123456789" else None) is not None:
            text = (li.group("text") or "").strip()
            anchors = "](#" in text and _link_only(text, anchors_only=True)
            kind = Kind.LINK if anchors else Kind.LIST
            out.append(Line(n, raw, kind, indent, 0, text, li.group("marker"), li.group("box")))
        elif unindented and not first.isdigit() and words.is_last_updated(s):
            out.append(Line(n, raw, Kind.DECOR))
        else:
            out.append(Line(n, raw, Kind.TEXT, indent))
    return out


# ------------------------------------------------------------------ items


@dataclass
class Item:
    """One task-shaped thing in the file: a spec (heading or part between rules), a list item, or
    a todo.txt line; with where it is, and what it reads as."""

    line: int  # its first line
    end: int  # its last line (trailing blank lines excluded)
    kind: Literal["spec", "list", "line"]
    title: str
    spec: Spec | None = None
    problem: str | None = None  # why it could not be read ("line 15: priority must be …")
    skip: str | None = None  # why it is not a task to file: "checked", "status: done", …
    warnings: list[str] = field(default_factory=list)
    level: int = 0  # a heading spec's heading level (0: a part between rules)
    indent: str = ""  # a list item's indentation, as written
    marker: str = ""  # a list item's bullet, as written
    box: str | None = None  # a list item's checkbox character (None: it has none)

    @property
    def key(self) -> str | None:
        return self.spec.key if self.spec else None


@dataclass
class TodoDocument:
    items: list[Item]
    lines: list[str]  # the file's lines with their endings, for writing it back

    @property
    def tasks(self) -> list[Item]:
        """Items that read and are tasks to file (not done, cancelled or checked)."""
        return [i for i in self.items if i.spec is not None and i.skip is None]

    @property
    def skipped(self) -> list[Item]:
        return [i for i in self.items if i.skip is not None]

    @property
    def unreadable(self) -> list[Item]:
        return [i for i in self.items if i.problem is not None and i.skip is None]


@dataclass
class _Context:
    level: int
    priority: int | None = None
    status: str | None = None  # a kanban column's status word
    done: str | None = None  # "in the Done section"
    furniture: bool = False


@dataclass
class _OpenSpec:
    level: int
    heading: Line | None  # None: a part between rules, titled by its first line
    lines: list[Line]
    context: _Context
    listed: bool = False  # a task heading over a plain list: its items are steps


def _cut(text: str, limit: int) -> str:
    head = text[: limit - 3]
    return (head.rsplit(" ", 1)[0] if " " in head[limit // 2 :] else head) + "..."


def fit(reading: Reading) -> list[str]:
    """Cut what is over the spec limits, keeping the full text in the notes; the warnings."""
    f, extra, warnings = reading.fields, [], []
    if reading.title is not None and len(reading.title) > MAX_TITLE:
        extra.append(reading.title)
        reading.title = _cut(reading.title, MAX_TITLE)
        warnings.append(f"title cut to {MAX_TITLE} characters; the whole title is in the notes")
    for name, limit in (("steps", MAX_STEPS), ("risks", MAX_RISKS)):
        items: list[str] = list(f.get(name) or [])
        for i, item in enumerate(items):
            if len(item) > MAX_ITEM:
                extra.append(item)
                items[i] = _cut(item, MAX_ITEM)
                warnings.append(
                    f"a {name[:-1]} cut to {MAX_ITEM} characters; all of it is in the notes"
                )
        if len(items) > limit:
            extra.append(f"{name.capitalize()} after the first {limit}:")
            extra.extend(f"- {x}" for x in items[limit:])
            warnings.append(f"{len(items)} {name}: the first {limit} kept, the rest in the notes")
            items = items[:limit]
        f[name] = items
    if extra:
        f["notes"] = "\n\n".join(p for p in (f.get("notes") or "", "\n".join(extra)) if p)
    return warnings


class _DocReader:
    def __init__(self, lines: list[Line]):
        self.lines = lines
        self.items: list[Item] = []
        self.stack: list[_Context] = []
        self.open: _OpenSpec | None = None
        self.seen_heading = False

    # ------------------------------------------------------------ context

    def context(self) -> _Context:
        ctx = _Context(0)
        for c in self.stack:
            ctx.priority = c.priority if c.priority is not None else ctx.priority
            ctx.status = c.status or ctx.status
            ctx.done = c.done or ctx.done
            ctx.furniture = ctx.furniture or c.furniture
        return ctx

    # ------------------------------------------------------------ shapes of a part

    @staticmethod
    def _labels(part: list[Line]) -> list[tuple[Line, words.Label]]:
        out = []
        for ln in part:
            if ln.kind in (Kind.TEXT, Kind.LIST) and ln.indent == 0:
                label = words.read_label(ln.raw)
                if label is not None:
                    out.append((ln, label))
        return out

    def _signals(self, part: list[Line]) -> bool:
        for _, label in self._labels(part):
            name = words.field_of(label) or words.section_of(label)
            if name in words.SPEC_SIGNALS:
                return True
        return False

    def _free_checkboxes(self, part: list[Line]) -> bool:
        """A top-level checkbox no label header stands above: the part is a checklist."""
        headed = False
        top = min((ln.indent for ln in part if ln.kind == Kind.LIST), default=0)
        for ln in part:
            if ln.kind == Kind.BLANK:
                continue
            label = words.read_label(ln.raw) if ln.kind in (Kind.TEXT, Kind.LIST) else None
            if label is not None and label.header:
                headed = True
            elif ln.kind == Kind.LIST and ln.box is not None and ln.indent == top and not headed:
                return True
        return False

    @staticmethod
    def _content(part: list[Line]) -> list[Line]:
        return [ln for ln in part if ln.kind not in (Kind.BLANK, *STRUCTURE)]

    # ------------------------------------------------------------ the walk

    def run(self, heads: list[int]) -> None:
        first_head = heads[0] if heads else len(self.lines)
        self.preamble(self.lines[:first_head], bool(heads))
        for k, h in enumerate(heads):
            nxt = heads[k + 1] if k + 1 < len(heads) else len(self.lines)
            self.heading(
                self.lines[h],
                self.lines[h + 1 : nxt],
                self.lines[nxt] if nxt < len(self.lines) else None,
            )
        self.close()

    @staticmethod
    def _split(lines: list[Line]) -> list[list[Line]]:
        parts: list[list[Line]] = [[]]
        for ln in lines:
            if ln.kind == Kind.RULE:
                parts.append([])
            else:
                parts[-1].append(ln)
        return parts

    def preamble(self, lines: list[Line], has_headings: bool) -> None:
        parts = self._split(lines)
        first, rest = parts[0], parts[1:]
        if self._list_shaped(first) or (
            not has_headings and (self._signals(first) or not any(self._signals(p) for p in rest))
        ):
            self.part(first)
        for p in rest:
            self.part(p)

    def heading(self, line: Line, body: list[Line], nxt: Line | None) -> None:
        parts = self._split(body)
        first, rest = parts[0], parts[1:]
        label = words.read_label(line.raw)
        names_section = label is not None and bool(words.section_of(label) or words.field_of(label))
        if self.open is not None:
            if names_section or (line.level > self.open.level and not self._signals(first)):
                self.open.lines += [line, *first]
                if rest:  # a rule ends the spec
                    self.close()
                    for p in rest:
                        self.part(p)
                return
            self.close()
        while self.stack and self.stack[-1].level >= line.level:
            self.stack.pop()
        is_title = not self.seen_heading and line.level == 1
        self.seen_heading = True
        name = line.text
        status = words.heading_status(name)
        lifecycle = words.lifecycle_of(status.word) if status else None
        ctx = _Context(line.level)
        if is_title:
            self.stack.append(ctx)
            self.part(first, heading_body=True)
        elif words.norm(name) in words.FURNITURE_HEADINGS or names_section:
            ctx.furniture = True
            self.stack.append(ctx)
            self.part(first, heading_body=True)
        elif lifecycle in (Status.DONE, Status.REJECTED):
            ctx.done = f"in the {name} section"
            self.stack.append(ctx)
            self.part(first, heading_body=True)
        elif self._signals(first) and not self._free_checkboxes(first):
            self.open = _OpenSpec(line.level, line, first, self.context())
        elif (
            words.is_task_heading(name)
            and not (nxt is not None and nxt.level > line.level)
            and any(ln.kind == Kind.LIST for ln in first)
        ):
            self.open = _OpenSpec(line.level, line, first, self.context(), listed=True)
        elif (
            any(ln.kind == Kind.LIST for ln in first)
            or (nxt is not None and nxt.level > line.level)
            or words.is_group_heading(name)
        ):
            ctx.priority = words.priority_word(name)
            ctx.status = status.word if status and lifecycle is None else None
            self.stack.append(ctx)
            self.part(first, heading_body=True)
        elif not self._content(first) and any(ln.kind in STRUCTURE for ln in first):
            pass  # a table, a quote, links: furniture without a name
        else:
            self.open = _OpenSpec(line.level, line, first, self.context())
        if rest:  # a rule ends a spec
            self.close()
            for p in rest:
                self.part(p)

    def _list_shaped(self, part: list[Line]) -> bool:
        content = self._content(part)
        if not content:
            return False
        first = content[0]
        if first.kind == Kind.LIST or self._free_checkboxes(part):
            return True
        if first.kind == Kind.TEXT:
            if _TODO_LINE.match(first.raw.strip()):
                return True
            label = words.read_label(first.raw)
            if label and label.header and not (words.section_of(label) or words.field_of(label)):
                return True  # a group label: `Documentation:`
        return False

    def part(self, part: list[Line], heading_body: bool = False) -> None:
        """A heading's body (a group's lines) or a part between rules."""
        if heading_body or self._list_shaped(part):
            self.list_part(part)
            return
        content = self._content(part)
        if content and content[0].kind == Kind.TEXT:
            start = part.index(content[0])
            self.open = _OpenSpec(0, None, part[start:], self.context())
            self.close()

    # ------------------------------------------------------------ lists

    def list_part(self, part: list[Line]) -> None:
        ctx = self.context()
        top: int | None = None
        cur: Line | None = None
        body: list[Line] = []
        fence_owner: Line | None = None

        def close() -> None:
            nonlocal cur, body
            if cur is not None:
                self.list_item(cur, body, ctx)
            cur, body = None, []

        for ln in part:
            if ln.kind == Kind.LIST and (top is None or ln.indent <= top):
                close()
                top = ln.indent if top is None else min(top, ln.indent)
                cur = ln
                continue
            if cur is not None and (
                ln.kind == Kind.BLANK
                or ln.indent > cur.indent
                or (ln.kind == Kind.FENCE and fence_owner is cur)
            ):
                if ln.kind == Kind.FENCE and ln.indent > cur.indent:
                    fence_owner = cur
                body.append(ln)
                continue
            close()
            if ln.kind == Kind.TEXT and ln.indent == 0:
                m = _TODO_LINE.match(ln.raw.strip())
                if m:
                    self.list_item(
                        Line(ln.n, ln.raw, Kind.LIST, 0, 0, m.group(1), "TODO:", None), [], ctx
                    )
        close()

    def list_item(self, ln: Line, body: list[Line], ctx: _Context) -> None:
        title = ln.text.strip()
        while body and body[-1].kind == Kind.BLANK:
            body.pop()
        if not title and not body:
            return
        if ctx.furniture and ln.box is None:
            return
        skip = None
        if ln.box in ("x", "X"):
            skip = "checked"
        elif ln.box in ("-", "~"):
            skip = f"cancelled ([{ln.box}])"
        if title.startswith(_DONE_MARKS):
            skip = skip or f"marked done ({title[0]})"
            title = title.lstrip("".join(_DONE_MARKS)).strip()
        elif title.startswith(_CANCEL_MARKS):
            skip = skip or f"cancelled ({title[0]})"
            title = title.lstrip("".join(_CANCEL_MARKS)).strip()
        struck = re.fullmatch(r"~~(.+)~~", title)
        if struck:
            skip = skip or "struck through (done)"
            title = struck.group(1).strip()
        raws, done_notes = self._item_body(body)
        item = Item(
            ln.n,
            body[-1].n if body else ln.n,
            "list",
            title,
            indent=ln.raw[: len(ln.raw) - len(ln.raw.lstrip(" \t"))],
            marker=ln.marker,
            box=ln.box,
        )
        reading = read([title, *raws], ln.n)
        if done_notes:
            notes = reading.fields.get("notes") or ""
            reading.fields["notes"] = "\n".join(p for p in (notes, *done_notes) if p)
        own = "status_word" in reading.fields
        if not own and ln.box == "/":
            reading.fields["status_word"] = "in progress"
        elif not own and ln.box == ">":
            reading.fields["status_word"] = "deferred"
        self.finish(item, reading, ctx, skip, [ln.raw, *raws])

    @staticmethod
    def _item_body(body: list[Line]) -> tuple[list[str], list[str]]:
        """The item's nested lines dedented, nested checkboxes made plain items (unchecked) or
        blanked into notes (checked: done already, never steps)."""
        if not body:
            return [], []
        inner = min((ln.indent for ln in body if ln.kind != Kind.BLANK), default=0)
        raws: list[str] = []
        notes: list[str] = []
        hidden_under: int | None = None
        for ln in body:
            text = ln.raw.expandtabs(4)
            text = text[min(inner, _columns(text)) :] if ln.kind != Kind.BLANK else ""
            if hidden_under is not None and (ln.kind == Kind.BLANK or ln.indent > hidden_under):
                raws.append("")
                continue
            hidden_under = None
            if ln.kind == Kind.LIST and ln.box is not None:
                if ln.box in ("x", "X", "-", "~"):
                    what = "Done already" if ln.box in "xX" else "Cancelled"
                    notes.append(f"{what}: {ln.text}")
                    raws.append("")
                    hidden_under = ln.indent
                    continue
                pad = " " * (ln.indent - inner)
                text = f"{pad}{ln.marker} {ln.text}"
            elif ln.kind == Kind.COMMENT:
                text = ""
            raws.append(text)
        return raws, notes

    # ------------------------------------------------------------ specs

    def close(self) -> None:
        spec, self.open = self.open, None
        if spec is None:
            return
        lines = spec.lines
        while lines and lines[-1].kind == Kind.BLANK:
            lines.pop()
        raws = ["" if ln.kind == Kind.COMMENT else ln.raw for ln in lines]
        done_notes: list[str] = []
        if spec.listed:
            raws, done_notes = self._item_body(lines)
        if spec.heading is not None:
            first, title = spec.heading.n, spec.heading.text
        else:
            first, title, raws = lines[0].n, lines[0].raw.strip(), raws[1:]
        item = Item(first, lines[-1].n if lines else first, "spec", title, level=spec.level)
        reading = read([title, *raws], first)
        if done_notes:
            notes = reading.fields.get("notes") or ""
            reading.fields["notes"] = "\n".join(p for p in (notes, *done_notes) if p)
        self.finish(item, reading, spec.context, None, [title, *raws])

    def finish(
        self, item: Item, reading: Reading, ctx: _Context, skip: str | None, raws: list[str]
    ) -> None:
        if reading.title:
            item.title = reading.title
        fields = reading.fields
        if "priority" not in reading.lines and ctx.priority is not None:
            fields["priority"] = ctx.priority
        if "status_word" not in fields and ctx.status:
            fields["status_word"] = ctx.status
        word = fields.get("status_word")
        lifecycle = words.lifecycle_of(word) if isinstance(word, str) and word else None
        if skip is None and lifecycle in (Status.DONE, Status.REJECTED):
            skip = f"status: {word}"
        if skip is None and ctx.done and lifecycle is None:
            skip = ctx.done
        item.skip = skip
        problems = check_lines(raws, item.line) + reading.problems
        size = sum(len(r.encode("utf-8", "surrogatepass")) + 1 for r in raws)
        if size > MAX_SPEC_BYTES:
            problems.append(
                f"this item is {size:,} bytes; a spec holds at most {MAX_SPEC_BYTES:,}: split it"
                " with `---` lines or headings"
            )
        if not problems:
            item.warnings = fit(reading)
            try:
                item.spec = build(reading)
            except SpecError as err:
                problems = err.problems
        if problems:
            item.problem = "; ".join(problems[:3])
        elif item.spec and item.spec.status_word and not words.is_known(item.spec.status_word):
            item.warnings.append(words.unknown_word_warning(item.spec.status_word))
        self.items.append(item)


# ------------------------------------------------------------------ todo.txt


def _is_todo_txt(lines: list[Line], name: str) -> bool:
    if any(ln.kind in (Kind.HEADING, Kind.LIST, Kind.RULE, Kind.FENCE) for ln in lines):
        return False
    text = [ln for ln in lines if ln.kind == Kind.TEXT]
    if name.lower().endswith("todo.txt"):
        return bool(text)
    marked = sum(1 for ln in text if _TODO_TXT.search(ln.raw))
    return len(text) >= 3 and marked * 2 >= len(text)


def _todo_txt_items(lines: list[Line]) -> list[Item]:
    out = []
    for ln in lines:
        if ln.kind != Kind.TEXT:
            continue
        text = ln.raw.strip()
        skip = None
        m = re.match(r"^x (?:[0-9]{4}-[0-9]{2}-[0-9]{2} ){0,2}", text)
        if m:
            skip, text = "done (x)", text[m.end() :]
        priority = 2
        m = re.match(r"^\(([A-Z])\) ", text)
        if m:
            priority = min(3, ord(m.group(1)) - ord("A"))
            text = text[m.end() :]
        text = re.sub(r"^[0-9]{4}-[0-9]{2}-[0-9]{2} ", "", text).strip()
        item = Item(ln.n, ln.n, "line", text, skip=skip)
        reading = Reading(title=text, fields={"priority": priority})
        problems = check_lines([ln.raw], ln.n)
        if problems:
            item.problem = problems[0]
        else:
            item.warnings = fit(reading)
            try:
                item.spec = build(reading)
            except SpecError as err:
                item.problem = "; ".join(err.problems[:3])
        out.append(item)
    return out


# A file's lines with their endings (\r\n, \n or a lone \r; nothing else ends a line).
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def read_document(text: str, name: str = "") -> TodoDocument:
    """Every item of a TODO file: the tasks, the skipped items and why, the items that do not
    read and why, with their lines. Never raises for what the file holds."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = _LINES.findall(text)
    classified = classify([ln.rstrip("\r\n") for ln in lines])
    if _is_todo_txt(classified, name):
        return TodoDocument(_todo_txt_items(classified), lines)
    reader = _DocReader(classified)
    reader.run([i for i, ln in enumerate(classified) if ln.kind == Kind.HEADING])
    return TodoDocument(sorted(reader.items, key=lambda i: i.line), lines)


# ------------------------------------------------------------------ writing back


def newline_of(lines: list[str]) -> str:
    crlf = sum(1 for ln in lines if ln.endswith("\r\n"))
    return "\r\n" if crlf * 2 > len(lines) else "\n"


def render_item(item: Item, spec: Spec, newline: str = "\n") -> list[str]:
    """The lines of a spec in the shape `item` has in its file."""
    body = render(spec).rstrip("\n").split("\n")
    head, rest = body[0], body[1:]
    if item.kind == "list":
        box = ""
        if item.box is not None:
            mark = {Status.DONE: "x", Status.REJECTED: "-"}.get(spec.status or Status.OPEN, " ")
            box = f"[{mark}] "
        pad = item.indent + " " * (len(item.marker) + 1)
        out = [f"{item.indent}{item.marker} {box}{head}", *(pad + ln if ln else "" for ln in rest)]
    elif item.level:
        out = ["#" * item.level + " " + head, *rest]
    else:
        out = body
    return [ln + newline for ln in out]


def render_new(specs: list[Spec], newline: str = "\n") -> list[str]:
    """Specs ob adds to a file: one `## Title` heading each, in the spec text form."""
    out: list[str] = []
    for spec in specs:
        body = render(spec).rstrip("\n").split("\n")
        out += ["## " + body[0], *body[1:], ""]
    return [ln + newline for ln in out]


EXPORT_HEADER = (
    "<!-- Written by `ob export-todo`; `ob import-todo` reads it back. Add anything you like:"
    " ob rewrites only the specs that carry a `key:` line. -->"
)


def rewrite(
    doc: TodoDocument,
    replace: dict[int, Spec],
    append: list[Spec],
    *,
    title: str,
) -> str:
    """The file with the items at `replace` (their index in doc.items) written as these specs,
    and `append` added at the end; every other line as it was, byte for byte. An empty file gets
    a `# {title}` header."""
    nl = newline_of(doc.lines)
    out: list[str] = []
    at = 0
    for index in sorted(replace, key=lambda i: doc.items[i].line):
        item = doc.items[index]
        out += doc.lines[at : item.line - 1]
        out += render_item(item, replace[index], nl)
        at = item.end
    out += doc.lines[at:]
    if not "".join(out).strip():
        out = [f"# {title}{nl}", nl, EXPORT_HEADER + nl, nl]
    elif not append:
        return "".join(out)
    elif not out[-1].endswith(("\n", "\r")):
        out[-1] += nl
    if out[-1].strip():
        out.append(nl)
    out += render_new(append, nl)
    while out and not out[-1].strip():
        out.pop()
    return "".join(out)


# ------------------------------------------------------------------ chat texts


@dataclass
class Chunk:
    line: int  # first line, 1-based
    text: str
    heading: bool = False  # started by a `## Title` heading (its first line is the title)


_SECTION_NAMES = {"steps", "plan", "risks", "notes", "note", "findings"}
_H2 = re.compile(r"^##[ \t]+(.+?)[ \t]*$")
_PREAMBLE = re.compile(r"^(#[ \t].*|<!--.*-->|)$")


def split_specs(text: str) -> list[Chunk]:
    """A message or session split into specs at `---` lines and `## Title` headings (not at
    `## Steps`-style section headings); parts holding only `# ` headings and comments are
    dropped. How the chat reads several specs in one text (core.ideas)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    chunks: list[Chunk] = []
    cur: list[str] = []
    start = 1
    heading = False
    in_comment = False

    def flush() -> None:
        body = "\n".join(cur)
        if any(not _PREAMBLE.match(ln.strip()) for ln in cur) and body.strip():
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
