"""The task spec and its one text form (DESIGN §1).

Parsing is forgiving for humans and strict about limits, and `parse(render(s)) == s` for every
valid spec:
  * field labels in any case, bold, bulleted or as headings (`**Priority:** P0`, `- Status: …`,
    `### Steps`), singular or plural (`step:`/`steps:`, `risk:`/`risks:`), in English and in
    the languages of core.todo_words;
  * a status line carries a word, a date and a reason in the forms people write
    (`status: blocked (2026-11-18) — waiting for finance`); the word is kept as written and
    mapped to the lifecycle by core.todo_words;
  * prose stays prose: free text, `Label: value` lines ob does not know and sections it does not
    know (`## Background`, `**Description:**`) go into the notes as written, and so does fenced
    code; only a near miss of a field name (`prority: P1`) is refused, naming the field;
  * the first line is the title; a first line that is a field label has no title and is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from core import todo_words as words
from core.models import Lane, Status, parse_lane, parse_priority, parse_status

MAX_SPEC_BYTES = 64 * 1024
MAX_TITLE = 200
MAX_ITEM = 1000
MAX_STEPS = 100
MAX_RISKS = 50
MAX_TEXT = 20_000
MAX_TRIGGER = 500

# The fields of a stored task's spec that an edit may change (lane, key and status are not edits).
EDITABLE = ("title", "repo", "priority", "trigger", "trigger_on", "steps", "risks", "notes")
# The status as the person wrote it: kept beside the lifecycle, shown and exported.
WRITTEN_STATUS = ("status_word", "status_date", "status_reason")
REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


class SpecError(ValueError):
    """A spec is invalid. `problems` lists each problem, with its line where known."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid spec: " + "; ".join(problems))


# Unicode categories Cc (controls) and Cs (surrogates), tab and newline aside.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _check_chars(value: str, what: str) -> None:
    bad = _CONTROL.search(value)
    if bad:
        raise ValueError(
            f"{what} contains the control character U+{ord(bad.group()):04X}; remove it"
        )


def _one_line(value: str, what: str, limit: int) -> str:
    value = value.replace("\r", "\n")
    _check_chars(value, what)
    value = re.sub(r"[ \t]*\n\s*", " ", value).strip()
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters; at most {limit}")
    return value


def _text(value: str, what: str) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    _check_chars(value, what)
    lines = [line.rstrip() for line in value.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    out = "\n".join(lines)
    if len(out) > MAX_TEXT:
        raise ValueError(f"{what} is {len(out)} characters; at most {MAX_TEXT}")
    return out


class Spec(BaseModel):
    """The editable fields of a task, plus key/status when a spec is exported or imported."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str
    repo: str | None = None
    priority: int = 2
    lane: Lane | None = None
    trigger: str | None = None
    trigger_on: date | None = None
    steps: list[str] = []
    risks: list[str] = []
    notes: str = ""
    findings: str = ""
    key: str | None = None
    status: Status | None = None
    # The status line as written: the word (None when it is a lifecycle name: `status` says it),
    # its date and its reason. The word decides `status` (core.todo_words.lifecycle_of).
    status_word: str | None = None
    status_date: date | None = None
    status_reason: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _written_status(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        word = data.get("status_word")
        if isinstance(word, str) and word.strip():
            word = words.check_word(word)
            meant = words.lifecycle_of(word)
            given = data.get("status")
            given = parse_status(given) if isinstance(given, str) and given.strip() else given
            if given is not None and given != meant:
                means = meant.value if meant else "a task awaiting the operator"
                raise ValueError(f"status word {word!r} means {means}, not {given}")
            data["status"] = meant
            data["status_word"] = (
                None if meant is not None and word.casefold() == meant.value else word
            )
        else:
            data["status_word"] = None
        if isinstance(data.get("status_reason"), str):
            data["status_reason"] = words.check_reason(data["status_reason"])
        has_status = data["status_word"] or data.get("status") not in (None, "")
        if not has_status and (data.get("status_date") or data.get("status_reason")):
            raise ValueError("a status date or reason needs a status word (`status: planned …`)")
        return data

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError("title must be text")
        v = _one_line(v, "title", MAX_TITLE)
        if not v:
            raise ValueError("title is empty; the first line of a spec is its title")
        return v

    @field_validator("repo", mode="before")
    @classmethod
    def _repo(cls, v: Any) -> str | None:
        if v is None:
            return None
        v = str(v).strip()
        if not v:
            return None
        if not REPO_RE.match(v):
            raise ValueError(
                f"repo {v[:60]!r} is not a repository name (letters, digits, . _ / -; at most 100)"
            )
        return v

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, v: Any) -> int:
        return parse_priority(v)

    @field_validator("lane", mode="before")
    @classmethod
    def _lane(cls, v: Any) -> Lane | None:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        return parse_lane(v)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> Status | None:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        return parse_status(v)

    @field_validator("trigger", mode="before")
    @classmethod
    def _trigger(cls, v: Any) -> str | None:
        if v is None:
            return None
        return _one_line(str(v), "trigger", MAX_TRIGGER) or None

    @field_validator("trigger_on", "status_date", mode="before")
    @classmethod
    def _date(cls, v: Any, info: Any) -> Any:
        if isinstance(v, str):
            v = v.strip()
            if not v:
                return None
            day = words.parse_date(v)
            if day is None:
                raise ValueError(f"{info.field_name} {v[:40]!r} is not a date like 2026-12-01")
            return day
        return v

    @field_validator("status_reason")
    @classmethod
    def _reason(cls, v: str | None) -> str | None:
        if v is not None:
            _check_chars(v, "status reason")
        return v

    @field_validator("steps", "risks", mode="before")
    @classmethod
    def _items(cls, v: Any, info: Any) -> list[str]:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list | tuple):
            raise ValueError("must be a list of lines")
        limit = MAX_STEPS if info.field_name == "steps" else MAX_RISKS
        if len(v) > limit:
            raise ValueError(f"{len(v)} {info.field_name}; at most {limit}")
        items = []
        for i, item in enumerate(v, 1):
            if not isinstance(item, str):
                raise ValueError(f"{info.field_name} item {i} must be text")
            item = _one_line(item, f"{info.field_name} item {i}", MAX_ITEM)
            if item:
                items.append(item)
        return items

    @field_validator("notes", "findings", mode="before")
    @classmethod
    def _free_text(cls, v: Any, info: Any) -> str:
        if v is None:
            return ""
        if not isinstance(v, str):
            raise ValueError("must be text")
        return _text(v, info.field_name)

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, v: Any) -> str | None:
        if v is None:
            return None
        v = str(v).strip().upper()
        if not v:
            return None
        if not re.fullmatch(r"[A-Z][A-Z0-9]{0,9}-\d{1,12}", v):
            raise ValueError(f"key {v[:40]!r} is not a task key like OB-12")
        return v


def free_text(value: str | None, what: str, limit: int) -> str | None:
    """A reason, note or finding: control characters refused, at most `limit` characters,
    None when blank. Raises SpecError naming `what`."""
    if value is None:
        return None
    try:
        text = _text(value, what)
    except ValueError as err:
        raise SpecError([str(err)]) from None
    if len(text) > limit:
        raise SpecError([f"{what} is {len(text)} characters; at most {limit}"])
    return text or None


def make_spec(**fields: Any) -> Spec:
    """Build a Spec, turning validation errors into a SpecError that names each field."""
    try:
        return Spec(**fields)
    except ValidationError as err:
        raise SpecError([_describe(e) for e in err.errors()]) from None


def _describe(e: Any) -> str:
    loc = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


# ---------------------------------------------------------------- text form

_LIST_SECTIONS = ("steps", "risks")
_TEXT_SECTIONS = ("notes", "findings")
_PROSE = "prose"  # a section ob does not know: its lines go into the notes as written
_BULLET = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])(?:[ \t]+(.*))?$")
_FENCE = re.compile(r"^(`{3,}|~{3,})")


def _indent(raw: str) -> int:
    head = raw[: len(raw) - len(raw.lstrip(" \t"))]
    return len(head.expandtabs(4))


def _check_size(text: str) -> None:
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise SpecError([f"the spec is {size:,} bytes; at most {MAX_SPEC_BYTES:,}"])


def check_lines(lines: list[str], first: int = 1) -> list[str]:
    """A problem for each line holding a control character (tabs aside), numbered from
    `first`."""
    problems = []
    for n, line in enumerate(lines, first):
        try:
            _check_chars(line, f"line {n}")
        except ValueError as err:
            problems.append(str(err))
    return problems


@dataclass
class Reading:
    """A spec text read into raw field values (not validated yet), with the line each field was
    written on, and the problems found while reading."""

    title: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class _Reader:
    def __init__(self, first: int):
        self.first = first
        self.out = Reading()
        self.lists: dict[str, list[str]] = {"steps": [], "risks": []}
        self.texts: dict[str, list[str]] = {"notes": [], "findings": []}
        self.current: str | None = None
        self.list_indent: int | None = None  # a list opened by a bulleted header (`- Steps:`)
        self.blank_after_item = False
        self.fence: str | None = None

    def text_target(self) -> list[str]:
        return self.texts[self.current] if self.current in _TEXT_SECTIONS else self.texts["notes"]

    def set_field(self, name: str, value: str, n: int) -> None:
        if name in self.out.lines:
            self.out.problems.append(f"line {n}: {name} is given twice")
            return
        self.out.lines[name] = n
        if name == "status":
            line = words.parse_status_line(value)
            if line is not None:
                for key, v in zip(WRITTEN_STATUS, line, strict=True):
                    self.out.fields[key] = v
                    self.out.lines[key] = n
            return
        if name == "priority":
            word = words.priority_word(value)
            self.out.fields[name] = value if word is None else word
            return
        self.out.fields[name] = value

    def open_section(self, section: str, value: str, n: int, bulleted_at: int | None) -> None:
        self.current = section
        self.list_indent = bulleted_at
        self.blank_after_item = False
        self.out.lines.setdefault(section, n)
        if value:
            if section in _LIST_SECTIONS:
                self.lists[section].append(value)
            else:
                self.texts[section].append(value)

    def line(self, n: int, raw: str) -> None:
        stripped = raw.strip()
        indented = raw[:1] in (" ", "\t")
        if self.fence is not None:
            self.text_target().append(raw)
            if stripped.startswith(self.fence) and not stripped.strip(self.fence[0]):
                self.fence = None
            return
        if self.current in _TEXT_SECTIONS and (indented or not stripped):
            self.texts[self.current].append(re.sub(r"^ {1,2}", "", raw))
            return
        if not stripped:
            if self.current == _PROSE:
                self.texts["notes"].append("")
            self.blank_after_item = self.current in _LIST_SECTIONS
            return
        fence = _FENCE.match(stripped) if not indented else None
        if fence:
            self.fence = fence.group(1)
            self.text_target().append(raw)
            return
        label = words.read_label(stripped)
        in_list = self.current in _LIST_SECTIONS
        # a bullet in a list is an item, unless the list was opened by a bulleted header
        # (`- Steps:`) and this bullet is no deeper than that header
        deeper = self.list_indent is None or _indent(raw) > self.list_indent
        if label and label.bulleted and in_list and deeper:
            label = None
        name = words.field_of(label) if label else None
        section = words.section_of(label) if label else None
        if label and name:
            self.set_field(name, label.value, n)
            self.current = None
            return
        if label and section:
            at = _indent(raw) if label.bulleted else None
            self.open_section(section, label.value, n, at)
            return
        bullet = _BULLET.match(stripped)
        if bullet and self.current not in _TEXT_SECTIONS and self.current != _PROSE:
            item = (bullet.group(1) or "").strip()
            if item:
                if not in_list:
                    self.open_section("steps", "", n, None)
                self.lists[self.current or "steps"].append(item)
                self.blank_after_item = False
            return
        if label and self.current not in _TEXT_SECTIONS:
            typo = words.typo_of(label.name)
            if typo and not label.header:
                self.out.problems.append(
                    f"line {n}: unknown field {label.name!r}; did you mean {typo}?"
                )
                return
            if label.header:  # a section ob does not know: prose follows
                self.current = _PROSE
                self.texts["notes"].append(raw)
                return
            self.texts["notes"].append(raw)  # `Label: value` prose
            return
        if self.current in _TEXT_SECTIONS:
            self.texts[self.current].append(raw)
        elif self.current == _PROSE:
            self.texts["notes"].append(raw)
        elif in_list and not (self.blank_after_item and not indented):
            assert self.current is not None
            items = self.lists[self.current]
            if indented and items:
                items[-1] += " " + stripped
            else:
                items.append(stripped)
        else:
            self.current = None
            self.texts["notes"].append(raw)

    def finish(self) -> Reading:
        out = self.out
        out.fields["steps"] = self.lists["steps"]
        out.fields["risks"] = self.lists["risks"]
        out.fields["notes"] = "\n".join(self.texts["notes"])
        out.fields["findings"] = "\n".join(self.texts["findings"])
        return out


def read(lines: list[str], first: int = 1) -> Reading:
    """Read spec text lines (numbered from `first`, for the problems) into raw fields. The
    first non-blank line is the title."""
    r = _Reader(first)
    for n, raw in enumerate(lines, first):
        if r.out.title is None:
            if raw.strip():
                r.out.title = _title_of(raw.strip(), n, r.out.problems)
                r.out.lines["title"] = n
            continue
        r.line(n, raw)
    return r.finish()


def build(reading: Reading) -> Spec:
    """The spec of a reading; SpecError naming the line of each field the rules refuse."""
    if reading.title is None:
        raise SpecError(["the spec is empty; write a title on the first line"])
    try:
        return Spec(title=reading.title, **reading.fields)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            loc = str(e["loc"][0]) if e["loc"] else ""
            msg = e["msg"].removeprefix("Value error, ")
            where = reading.lines.get(loc) or reading.lines.get("status_word" if not loc else "")
            if where is not None and loc != "title":  # the title's line is the first, always
                problems.append(f"line {where}: {msg}")
            else:
                problems.append(f"{loc}: {msg}" if loc else msg)
        raise SpecError(problems) from None


def parse(text: str) -> Spec:
    """Parse the spec text form. Raises SpecError listing every problem found."""
    if not isinstance(text, str):
        raise SpecError(["a spec must be text"])
    _check_size(text)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    problems = check_lines(lines)
    if problems:
        raise SpecError(problems[:5])
    reading = read(lines)
    if reading.problems:
        raise SpecError(reading.problems[:20])
    return build(reading)


def _title_of(line: str, n: int, problems: list[str]) -> str:
    line = line.lstrip("#").strip()
    if line[:6].lower() == "title:":
        return line[6:].strip()
    label = words.read_label(line)
    if label and (words.field_of(label) or words.section_of(label)):
        what = words.field_of(label) or words.section_of(label)
        problems.append(
            f"line {n}: the first line must be the title, not the {what} label {line[:40]!r}"
        )
    return line


def _title_needs_prefix(title: str) -> bool:
    if title.startswith("#") or title[:6].lower() == "title:":
        return True
    label = words.read_label(title)
    return bool(label and (words.field_of(label) or words.section_of(label)))


def status_warning(spec: Spec) -> str | None:
    """A warning for a status word ob does not know (kept as written), else None."""
    if spec.status_word and not words.is_known(spec.status_word):
        return words.unknown_word_warning(spec.status_word)
    return None


def render(spec: Spec) -> str:
    """The canonical text form of a spec."""
    out = [f"title: {spec.title}" if _title_needs_prefix(spec.title) else spec.title]
    if spec.key:
        out.append(f"key: {spec.key}")
    word = spec.status_word or (spec.status.value if spec.status else None)
    if word:
        line = words.render_status_line(word, spec.status_date, spec.status_reason)
        out.append(f"status: {line}")
    if spec.repo:
        out.append(f"repo: {spec.repo}")
    out.append(f"priority: P{spec.priority}")
    if spec.lane:
        out.append(f"lane: {spec.lane.value}")
    if spec.trigger:
        out.append(f"trigger: {spec.trigger}")
    if spec.trigger_on:
        out.append(f"trigger_on: {spec.trigger_on.isoformat()}")
    for name in _LIST_SECTIONS:
        items: list[str] = getattr(spec, name)
        if items:
            out.append(f"{name}:")
            out.extend(f"- {item}" for item in items)
    for name in _TEXT_SECTIONS:
        text: str = getattr(spec, name)
        if text:
            out.append(f"{name}:")
            out.extend(f"  {line}" if line else "" for line in text.split("\n"))
    return "\n".join(out) + "\n"
