"""Many ideas in one text: how a message, several messages sent in a row, or a planning session
is read as task specs (DESIGN §5, conversational planning).

A text holds several ideas when
  * `---` lines or `## Title` headings separate specs (core.todo_format.split_specs);
  * it is a numbered or bulleted list and nothing else (`- fix login`, `2) dark mode`);
  * it has an "ideas:" / "todo:" block: a line naming ideas, todos or tasks and ending with a
    colon, then one idea per line or list item up to a blank line. Lines indented under an item
    belong to that idea (`  - a step`, `  repo: web`); the prose around the block is kept in
    every idea's notes.
Anything else is one idea, read as one spec (the first line is its title), as before. Checked
items (`- [x] ...`) are done, not ideas, and are left out.
"""

from __future__ import annotations

import re
import textwrap

from core.spec import Spec, SpecError, make_spec, parse
from core.todo_format import split_specs

MAX_IDEAS = 200

_ITEM = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])[ \t]+(?:\[([ xX])\][ \t]+)?(\S.*)$")
_HEADER = re.compile(r"^#{0,3}[ \t]*[*_]{0,2}([^:\n]{0,60}?)[*_]{0,2}[ \t]*:[ \t]*$")
_IDEA_WORDS = re.compile(r"\b(ideas?|todos?|to-dos?|to do|tasks?)\b", re.I)


class _Idea:
    def __init__(self, title: str, done: bool):
        self.title = title
        self.done = done
        self.body: list[str] = []

    def text(self, context: list[str]) -> str:
        lines = [self.title]
        body = textwrap.dedent("\n".join(self.body)).strip("\n")
        if body:
            lines.append(body)
        if context:
            lines.append("notes:")
            lines += [f"  {line}" for line in context]
        return "\n".join(lines)


def _is_header(line: str) -> bool:
    m = _HEADER.match(line.strip())
    return bool(m and _IDEA_WORDS.search(m.group(1)))


def _items(lines: list[str]) -> list[_Idea] | None:
    """One idea per list item, with the lines indented under it; None when an unindented line
    is not a list item."""
    ideas: list[_Idea] = []
    for raw in lines:
        if not raw.strip():
            continue
        if raw[:1] in (" ", "\t") and ideas:
            ideas[-1].body.append(raw)
            continue
        m = _ITEM.match(raw.strip())
        if m:
            ideas.append(_Idea(m.group(2).strip(), (m.group(1) or " ") != " "))
        else:
            return None
    return ideas


def _list_ideas(chunk: str) -> list[str] | None:
    """The ideas of a list or of "ideas:" blocks; None when the chunk is one spec."""
    lines = chunk.split("\n")
    whole = _items(lines)
    if whole:
        return [i.text([]) for i in whole if not i.done] or None
    ideas: list[_Idea] = []
    context: list[str] = []
    n = 0
    while n < len(lines):
        line = lines[n]
        if not _is_header(line):
            if line.strip():
                context.append(line.strip())
            n += 1
            continue
        n += 1
        while n < len(lines) and not lines[n].strip():  # blank lines right after the header
            n += 1
        while n < len(lines) and lines[n].strip():
            raw = lines[n]
            if raw[:1] in (" ", "\t") and ideas:
                ideas[-1].body.append(raw)
            else:
                m = _ITEM.match(raw.strip())
                title, done = (m.group(2), (m.group(1) or " ") != " ") if m else (raw, False)
                ideas.append(_Idea(title.strip(), done))
            n += 1
    kept = [i.text(context) for i in ideas if not i.done]
    return kept or None


def idea_texts(text: str) -> list[str]:
    """The text of each idea, each in the spec text form."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    for chunk in [c.text for c in split_specs(text)] or [text]:
        out.extend(_list_ideas(chunk) or [chunk])
    return out


def read_ideas(text: str) -> list[Spec]:
    """Every idea of `text` as a spec; SpecError naming the idea of each problem."""
    texts = idea_texts(text)
    if len(texts) > MAX_IDEAS:
        raise SpecError([f"{len(texts)} ideas in one go; at most {MAX_IDEAS}"])
    if len(texts) == 1:
        return [parse(texts[0])]
    specs: list[Spec] = []
    problems: list[str] = []
    for n, idea in enumerate(texts, 1):
        try:
            specs.append(parse(idea))
        except SpecError as err:
            problems += [f"idea {n}: {p}" for p in err.problems]
    if problems:
        raise SpecError(problems[:20])
    return specs


def with_context(spec: Spec, *, origin: str = "", repo: str | None = None) -> Spec:
    """A captured spec with where it came from (forwards) in its notes and a default repo."""
    notes = "\n\n".join(part for part in (spec.notes, origin.strip()) if part)
    if notes == spec.notes and (spec.repo or not repo):
        return spec
    return make_spec(**{**spec.model_dump(), "notes": notes, "repo": spec.repo or repo})
