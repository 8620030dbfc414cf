"""Shaping a task in a few words or one tap: the amendments a reply to a card or a preview
carries (`step: …`, `risk: …`, `P0`, `lane decision`, `trigger: …`, `repo: x`, free text for
the notes), and snoozing (the trigger date that hides a task until that day).

Values are checked by the spec rules when the amended spec is built, so a reply can never store
what the text form would refuse.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from core.models import Lane, Task, parse_lane, parse_priority
from core.spec import EDITABLE, Spec, SpecError, make_spec

_LINE = re.compile(
    r"^(?P<name>steps?|risks?|priority|prio|lane|trigger|trigger[ _]on|repo|title|notes?)"
    r"[ \t]*(?::[ \t]*|[ \t]+)(?P<value>\S.*)$",
    re.I,
)
_PRIORITY = re.compile(r"^P[0-3]$", re.I)
_BULLET = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])[ \t]+(\S.*)$")
# Without a colon, only a one-word lane, repo or priority is a directive (`lane decision`);
# "lane changes are slow" is a note.
_BARE = {"lane", "repo", "priority", "prio"}


class Amendment(BaseModel):
    """What a reply changes; empty fields change nothing."""

    title: str | None = None
    repo: str | None = None
    priority: int | None = None
    lane: Lane | None = None
    trigger: str | None = None
    trigger_on: date | None = None
    steps: list[str] = []
    risks: list[str] = []
    notes: list[str] = []


def parse_amendment(text: str) -> Amendment:
    """Read a reply line by line: a directive per line, bullets as steps, anything else is a
    note. SpecError for a directive with a value that cannot be right (`priority: P7`)."""
    a = Amendment()
    problems: list[str] = []
    for raw in text.replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if _PRIORITY.match(line):
            a.priority = int(line[1])
            continue
        bullet = _BULLET.match(line)
        if bullet:
            a.steps.append(bullet.group(1).strip())
            continue
        m = _LINE.match(line)
        name = m.group("name").lower().replace("_", " ") if m else ""
        value = m.group("value").strip() if m else ""
        colon = m is not None and line[len(name) :].lstrip().startswith(":")
        if m is None or not (colon or (name in _BARE and len(value.split()) == 1)):
            a.notes.append(raw.rstrip())
            continue
        try:
            _apply(a, name, value)
        except ValueError as err:
            if not colon:  # "lane nowhere": words, not a directive
                a.notes.append(raw.rstrip())
                continue
            problems.append(f"{name}: {err}")
    if problems:
        raise SpecError(problems)
    return a


def _apply(a: Amendment, name: str, value: str) -> None:
    if name in ("step", "steps"):
        a.steps.append(value)
    elif name in ("risk", "risks"):
        a.risks.append(value)
    elif name in ("priority", "prio"):
        a.priority = parse_priority(value)
    elif name == "lane":
        a.lane = parse_lane(value)
    elif name == "trigger":
        a.trigger = value
    elif name == "trigger on":
        try:
            a.trigger_on = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not a date like 2026-12-01") from None
    elif name == "repo":
        a.repo = value
    elif name == "title":
        a.title = value
    else:
        a.notes.append(value)


def changes(current: Spec | Task, a: Amendment) -> dict[str, Any]:
    """The spec fields the amendment sets (for Backlog.edit), checked by the spec rules; the
    lane is not a spec edit and is left to the caller."""
    out: dict[str, Any] = {}
    for name in ("title", "repo", "priority", "trigger", "trigger_on"):
        value = getattr(a, name)
        if value is not None:
            out[name] = value
    if a.steps:
        out["steps"] = [*current.steps, *a.steps]
    if a.risks:
        out["risks"] = [*current.risks, *a.risks]
    if a.notes:
        out["notes"] = "\n".join(part for part in (current.notes, *a.notes) if part)
    fields = {f: getattr(current, f) for f in EDITABLE}
    make_spec(**{**fields, **out})  # raises SpecError naming what the spec rules refuse
    return out


def amend_spec(spec: Spec, a: Amendment) -> Spec:
    """A preview's spec with the amendment applied (its lane too)."""
    update = changes(spec, a)
    if a.lane is not None:
        update["lane"] = a.lane
    return make_spec(**{**spec.model_dump(), **update})


def describe(before: Spec | Task, a: Amendment, lane_before: Lane | None) -> list[str]:
    """What the amendment changed, in words: one line per change."""
    out = []
    if a.title is not None and a.title != before.title:
        out.append(f"title → {a.title}")
    if a.repo is not None and a.repo != before.repo:
        out.append(f"repo {before.repo or '-'} → {a.repo}")
    if a.priority is not None and a.priority != before.priority:
        out.append(f"priority P{before.priority} → P{a.priority}")
    if a.lane is not None and a.lane != lane_before:
        out.append(f"lane {lane_before.short if lane_before else '-'} → {a.lane.short}")
    if a.trigger is not None and a.trigger != before.trigger:
        out.append(f"trigger → {a.trigger}")
    if a.trigger_on is not None and a.trigger_on != before.trigger_on:
        out.append(f"trigger on → {a.trigger_on.isoformat()}")
    out += [f"+ step: {s}" for s in a.steps]
    out += [f"+ risk: {r}" for r in a.risks]
    out += [f"+ note: {n.strip()}" for n in a.notes]
    return out


# ------------------------------------------------------------------ snooze


class Later(StrEnum):
    """When a snoozed task comes back."""

    TOMORROW = "tm"
    NEXT_WEEK = "nw"

    @property
    def label(self) -> str:
        return "tomorrow" if self == Later.TOMORROW else "next week"


def local_today(tz: ZoneInfo, now: datetime | None = None) -> date:
    """The operator's calendar day."""
    return (now or datetime.now(tz)).astimezone(tz).date()


def snooze_until(later: Later, today: date) -> date:
    """Tomorrow, or the Monday of next week."""
    if later == Later.TOMORROW:
        return today + timedelta(days=1)
    return today + timedelta(days=7 - today.weekday())
