"""The task spec and its one text form (DESIGN §1).

Parsing is forgiving for humans (headings, bullets `-`/`*`/`1.`, any case, blank lines,
free text after the title becomes notes) and strict about limits. `parse(render(s)) == s`
for every valid spec.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

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
REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


class SpecError(ValueError):
    """A spec is invalid. `problems` lists each problem, with its line where known."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid spec: " + "; ".join(problems))


def _check_chars(value: str, what: str) -> None:
    for ch in value:
        if ch in "\t\n":
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs"):
            raise ValueError(f"{what} contains the control character U+{ord(ch):04X}; remove it")


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

    @field_validator("trigger_on", mode="before")
    @classmethod
    def _trigger_on(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip()
            if not v:
                return None
            try:
                return date.fromisoformat(v)
            except ValueError:
                raise ValueError(f"trigger_on {v[:40]!r} is not a date like 2026-12-01") from None
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

_FIELDS = {
    "repo": "repo",
    "repository": "repo",
    "priority": "priority",
    "prio": "priority",
    "lane": "lane",
    "trigger": "trigger",
    "trigger_on": "trigger_on",
    "trigger_date": "trigger_on",
    "key": "key",
    "status": "status",
}
_SECTIONS = {
    "steps": "steps",
    "plan": "steps",
    "risks": "risks",
    "notes": "notes",
    "note": "notes",
    "findings": "findings",
}
_LIST_SECTIONS = ("steps", "risks")
_TEXT_SECTIONS = ("notes", "findings")

_BULLET = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])(?:[ \t]+(.*))?$")
_SECTION = re.compile(
    r"^#*[ \t]*[*_]{0,2}([A-Za-z][A-Za-z _-]{0,30}?)[*_]{0,2}[ \t]*(:[ \t]*(.*))?$"
)
_FIELD = re.compile(r"^([A-Za-z][A-Za-z _-]{0,30}?)[ \t]*:(?:[ \t]+(.*)|)$")


def _norm(name: str) -> str:
    return re.sub(r"[ \t-]+", "_", name.strip().lower())


def _section_of(line: str) -> tuple[str | None, str, bool]:
    """(known section, inline rest, looks like a section header at all)."""
    m = _SECTION.match(line)
    if not m:
        return None, "", False
    is_heading = line.startswith("#") or bool(re.fullmatch(r"(\*\*|__).+(\*\*|__):?", line))
    has_colon = m.group(2) is not None
    rest = (m.group(3) or "").strip()
    name = _norm(m.group(1))
    if name in _SECTIONS and (is_heading or has_colon):
        return _SECTIONS[name], rest, True
    # "Background:" alone, or "## Background", is a header of a section we do not know.
    return None, "", is_heading or (has_colon and not rest)


def _field_of(line: str) -> tuple[str, str] | None:
    m = _FIELD.match(line)
    if not m:
        return None
    return _norm(m.group(1)), (m.group(2) or "").strip()


def _check_size(text: str) -> None:
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise SpecError([f"the spec is {size:,} bytes; at most {MAX_SPEC_BYTES:,}"])


def parse(text: str) -> Spec:
    """Parse the spec text form. Raises SpecError listing every problem found."""
    if not isinstance(text, str):
        raise SpecError(["a spec must be text"])
    _check_size(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    problems: list[str] = []
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        try:
            _check_chars(line, f"line {n}")
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise SpecError(problems[:5])

    title: str | None = None
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {"steps": [], "risks": []}
    texts: dict[str, list[str]] = {"notes": [], "findings": []}
    current: str | None = None
    for n, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if title is None:
            if not stripped:
                continue
            title = _title_of(stripped, n, problems)
            continue
        indented = raw[:1] in (" ", "\t")

        if current in _TEXT_SECTIONS and (indented or not stripped):
            texts[current].append(re.sub(r"^ {1,2}", "", raw))
            continue
        if not stripped:
            continue

        bullet = _BULLET.match(stripped)
        if bullet and current not in _TEXT_SECTIONS:
            item = (bullet.group(1) or "").strip()
            if item:
                lists[current if current in _LIST_SECTIONS else "steps"].append(item)
                current = current if current in _LIST_SECTIONS else "steps"
            continue

        section, rest, looks_like_header = _section_of(stripped)
        if section:
            current = section
            if rest:
                if section in _LIST_SECTIONS:
                    lists[section].append(rest)
                else:
                    texts[section].append(rest)
            continue

        field = _field_of(stripped)
        if field and field[0] in _FIELDS:
            name = _FIELDS[field[0]]
            if name in fields:
                problems.append(f"line {n}: {name} is given twice")
            fields[name] = field[1]
            current = None
            continue
        if field and field[1] and current not in _TEXT_SECTIONS:
            known = ", ".join(sorted(set(_FIELDS.values())))
            problems.append(f"line {n}: unknown field {field[0]!r}; fields are: {known}")
            continue
        if looks_like_header and current not in _TEXT_SECTIONS:
            known = ", ".join(sorted(set(_SECTIONS.values())))
            problems.append(f"line {n}: unknown section {stripped[:40]!r}; sections are: {known}")
            continue

        if current in _TEXT_SECTIONS:
            texts[current].append(raw)
        elif current in _LIST_SECTIONS and indented and lists[current]:
            lists[current][-1] += " " + stripped
        elif current in _LIST_SECTIONS:
            lists[current].append(stripped)
        else:
            texts["notes"].append(raw)

    if title is None:
        problems.append("the spec is empty; write a title on the first line")
    if problems:
        raise SpecError(problems[:20])
    assert title is not None
    return make_spec(
        title=title,
        **fields,
        steps=lists["steps"],
        risks=lists["risks"],
        notes="\n".join(texts["notes"]),
        findings="\n".join(texts["findings"]),
    )


def _title_of(line: str, n: int, problems: list[str]) -> str:
    line = line.lstrip("#").strip()
    if line[:6].lower() == "title:":
        return line[6:].strip()
    field = _field_of(line)
    if field and field[0] in _FIELDS:
        problems.append(f"line {n}: the first line must be the title, not the field {field[0]!r}")
    return line


def _title_needs_prefix(title: str) -> bool:
    if title.startswith("#") or title[:6].lower() == "title:":
        return True
    field = _field_of(title)
    return bool(field and field[0] in _FIELDS)


def render(spec: Spec) -> str:
    """The canonical text form of a spec."""
    out = [f"title: {spec.title}" if _title_needs_prefix(spec.title) else spec.title]
    if spec.key:
        out.append(f"key: {spec.key}")
    if spec.status:
        out.append(f"status: {spec.status.value}")
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
