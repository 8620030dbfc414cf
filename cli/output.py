"""Rendering for the terminal: task tables, task cards, histories, JSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from core.backlog import Rejected, actor_name, shows_written_status, spec_of
from core.models import Event, Lane, Status, Task
from core.questions import Question
from core.spec import render
from core.todo_words import describe_status

STATUS_STYLE = {
    "draft": "yellow",
    "open": "green",
    "blocked": "magenta",
    "claimed": "cyan",
    "done": "dim",
    "rejected": "dim red",
    "snoozed": "blue",
}


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return ""
    now = now or datetime.now(UTC)
    secs = int((now - when).total_seconds())
    future = secs < 0
    secs = abs(secs)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            text = f"{secs // size}{unit}"
            break
    else:
        text = f"{secs}s"
    return f"in {text}" if future else f"{text} ago"


def plain_table(*columns: str, **column_options: Any) -> Table:
    """The CLI's borderless table, with these column headers."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in columns:
        table.add_column(col, **column_options)
    return table


def shown_status(task: Task, today: date | None) -> str:
    """The status a person reads: blocked and snoozed tasks say so."""
    if today is not None and not task.blocked and task.snoozed(today):
        return "snoozed"
    return task.display_status


def task_table(tasks: Sequence[Task], today: date | None = None) -> Table:
    """Tasks, one a row; with `today`, tasks snoozed past it show as snoozed, until when."""
    table = plain_table()
    for col in ("key", "P", "status", "lane", "repo", "title", "holder", "age"):
        table.add_column(col, no_wrap=col != "title", overflow="fold")
    for t in tasks:
        status = shown_status(t, today)
        said = f" ({t.status_word})" if t.status_word and shows_written_status(t) else ""
        table.add_row(
            t.key,
            f"P{t.priority}",
            Text(status + said, style=STATUS_STYLE.get(status, "")),
            t.lane.short if t.lane else "-",
            t.repo or "",
            t.title,
            t.lease_holder or "",
            f"until {t.trigger_on}" if status == "snoozed" else ago(t.status_at),
        )
    return table


def task_card(task: Task, today: date | None = None, questions: Sequence[Question] = ()) -> Panel:
    """A task as a panel: its state, who did what, what it waits for (prerequisites, the
    operator's answers to its open `questions`), then its spec."""
    lines = Text()
    status = shown_status(task, today)
    lines.append(f"{status}", style=STATUS_STYLE.get(status, ""))
    if status == "snoozed":
        lines.append(f" until {task.trigger_on} (agents and the drains leave it until then)")
    since = "since" if task.status_at <= datetime.now(UTC) else "dated"  # a planned day ahead
    lines.append(f" {since} {task.status_at:%Y-%m-%d %H:%M} UTC ({ago(task.status_at)})")
    if task.lane:
        lines.append(f" · lane {task.lane.value}")
    written = describe_status(task.status_word, task.status_date, task.status_reason)
    if written:
        lines.append(
            f"\nstatus as written: {written}", style="bold" if shows_written_status(task) else "dim"
        )
    lines.append(f"\nfiled by {task.created_by} {ago(task.created_at)}")
    if task.approved_by:
        lines.append(f" · approved by {task.approved_by}")
    if task.rejected_reason:
        lines.append(f"\nrejected: {task.rejected_reason}")
    if task.blocked_by:
        lines.append(f"\nblocked by {', '.join(task.blocked_by)}", style="magenta")
    if task.lease_holder:
        lines.append(
            f"\nheld by {task.lease_holder} (epoch {task.epoch}), lease expires "
            f"{ago(task.lease_expires_at)}",
            style="cyan",
        )
    for q in questions:
        question_lines(lines, q)
    if task.completed_by:
        verified = "verified" if task.verified_at else "unverified"
        commits = ", ".join(c[:10] for c in task.commits) or "no commits"
        lines.append(f"\ncompleted by {task.completed_by} ({commits}; {verified})")
        if task.completion_note:
            lines.append(f"\nnote: {task.completion_note}")
    lines.append("\n\n")
    bare = {"key": None, "status": None, "status_word": None, "status_date": None}
    lines.append(render(spec_of(task).model_copy(update={**bare, "status_reason": None})))
    return Panel(lines, title=f"[bold]{task.key}[/bold] {task.title}", title_align="left")


def question_lines(lines: Text, q: Question) -> None:
    """An open question on a task's card: who asked what, the options, why the task waits in
    requires_decision if its lease ended, and how to answer."""
    who = actor_name(q.asked_by)
    lines.append(f"\nopen question {q.ref} from {who} ({ago(q.asked_at)}): ", style="yellow")
    lines.append(q.text)
    if q.options:
        lines.append("\n  options: " + " / ".join(f"{i}. {o}" for i, o in enumerate(q.options, 1)))
    if q.left_open_at is not None:
        lines.append(f"\n  {who}'s lease ended before an answer, so it waits in requires_decision")
        if q.lane != Lane.DECISION:
            lines.append(f"; your answer sends it back to {q.lane.value}")
    lines.append(
        f"\n  answer: {q.answer_command} (an option's number or text, or free text)", style="bold"
    )


def history_table(evs: Sequence[Event]) -> Table:
    table = plain_table("when (UTC)", "actor", "event", "details", overflow="fold")
    for e in evs:
        details = ", ".join(f"{k}={v}" for k, v in e.details.items() if v not in (None, "", [], {}))
        table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.kind, details)
    return table


def rejected_lines(r: Rejected, *, why: bool = False) -> str:
    """What a rejection did (rich markup): the task (`why`: and the reason), and each task that
    waited on it and came back to the operator, with the ways on."""
    head = f"rejected [bold]{r.key}[/bold]"
    if why and r.rejected_reason:
        head += f": {escape(r.rejected_reason)}"
    if not r.handed_back:
        return head
    lines = [f"{head}; {len(r.handed_back)} task(s) waited on it and come back to you:"]
    for h in r.handed_back:
        was, now = (lane.value if lane else "-" for lane in (h.from_lane, h.lane))
        if h.moved:
            what = f"moved from {was} to {now}"
        elif h.status == Status.DRAFT:
            what = "a draft still: approve or reject it"
        else:
            what = f"stays in {now}"
        held = f" ({escape(h.lease_holder)}'s lease on it ended)" if h.lease_holder else ""
        lines.append(f"  [bold]{h.key}[/bold] {escape(h.title)}: {what}{held}")
    first = r.handed_back[0].key
    lines.append(
        f"go on without {r.key} (`ob dep rm {first} {r.key}`), bring it back "
        f"(`ob reopen {r.key}`), or reject the waiting task(s) too"
    )
    return "\n".join(lines)
