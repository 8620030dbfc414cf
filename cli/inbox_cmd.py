"""`ob inbox`: the drafts awaiting approval, walked in the terminal one card at a time, one key
per decision, as the bot's /inbox walks them on the phone."""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING

import typer

from cli.app import console, operator, run_backlog

if TYPE_CHECKING:
    from core.backlog import Backlog
    from core.models import Lane, Task

# One key per decision.
LANE_KEYS = {
    "t": "requires_triage",
    "d": "requires_decision",
    "i": "requires_investigation",
    "a": "autonomous_safe",
}
REJECT, REJECT_WHY, DUPLICATE, SKIP, QUIT = "r", "m", "x", "s", "q"


def read_key() -> str | None:
    """One key: a keypress on a terminal, else the first character of the next line (scripts,
    pipes); None at the end of the input."""
    if sys.stdin.isatty():
        key = typer.getchar()
        typer.echo(key)
        return key.strip().lower()[:1]
    line = sys.stdin.readline()
    if not line:
        typer.echo()
        return None
    return line.strip().lower()[:1]


def read_line() -> str | None:
    line = sys.stdin.readline()
    return line.strip() or None


def keys_line(task: Task) -> str:
    from core.models import Lane

    lanes = ", ".join(f"[bold]{k}[/bold] {Lane(v).short}" for k, v in LANE_KEYS.items())
    line = f"approve: {lanes} · [bold]r[/bold] reject, [bold]m[/bold] +reason"
    if task.duplicate_of:
        line += f", [bold]x[/bold] dup of {task.duplicate_of}"
    return line + " · [bold]s[/bold] skip, [bold]q[/bold] quit › "


async def _duplicate_line(b: Backlog, task: Task) -> str | None:
    if not task.duplicate_of:
        return None
    from core.errors import NotFound

    try:
        original = await b.get(task.duplicate_of)
    except NotFound:
        return None
    state = original.display_status
    if original.rejected_reason:
        state += f": {original.rejected_reason}"
    return f"[yellow]likely a duplicate of {original.key}[/yellow] {original.title} ({state})"


def inbox() -> None:
    """Walk the drafts awaiting approval, oldest first, one key per decision: approve into a
    lane, reject (with a reason), reject as a duplicate, skip, quit."""
    from cli.output import rejected_lines, task_card
    from core.errors import BacklogError, NotFound
    from core.models import Lane, Status
    from core.shaping import local_today
    from core.tasks import TaskFilter

    async def main(b: Backlog) -> tuple[Counter[str], int]:
        flt = TaskFilter(status=[Status.DRAFT], due_by=local_today(b.settings.tz), limit=10_000)
        queue = sorted(await b.list(flt), key=lambda t: t.created_at)
        tally: Counter[str] = Counter()
        out = console()
        if not queue:
            out.print("inbox: no drafts waiting")
        position = 0
        while queue:
            try:
                task = await b.get(queue[0].key)
            except NotFound:
                task = None
            if task is None or task.status != Status.DRAFT:  # decided elsewhere meanwhile
                queue.pop(0)
                tally["changed elsewhere"] += 1
                continue
            position += 1
            out.print(f"\n[bold]inbox[/bold]: card {position} of {position + len(queue) - 1}")
            out.print(task_card(task))
            duplicate = await _duplicate_line(b, task)
            if duplicate:
                out.print(duplicate)
            while True:
                out.print(keys_line(task), end="")
                key = read_key()
                if key is None or key == QUIT:
                    return tally, len(queue)
                try:
                    outcome = await _decide(b, task, key)
                except BacklogError as err:
                    out.print(f"[red]{err.message}[/red]")
                    continue
                if outcome is not None:
                    break
                out.print(f"unknown key {key!r}")
            tally[outcome] += 1
            queue.pop(0)
        return tally, 0

    async def _decide(b: Backlog, task: Task, key: str) -> str | None:
        """Carry out the key's decision; its outcome (None: not a key)."""
        lane: Lane | None = Lane(LANE_KEYS[key]) if key in LANE_KEYS else None
        if lane is not None:
            done = await b.approve(task.key, operator(), lane)
            console().print(f"→ approved {done.key} into {lane.value}")
            return "approved"
        if key in (REJECT, REJECT_WHY):
            reason = None
            if key == REJECT_WHY:
                console().print("reason › ", end="")
                reason = read_line()
            rejected = await b.reject(task.key, operator(), reason)
            console().print("→ " + rejected_lines(rejected))
            return "rejected"
        if key == DUPLICATE and task.duplicate_of:
            rejected = await b.reject_duplicate(task.key, operator())
            console().print("→ " + rejected_lines(rejected, why=True))
            return "rejected"
        if key == SKIP:
            return "skipped"
        return None

    tally, left = run_backlog(main)
    parts = [f"{n} {what}" for what, n in tally.items() if n]
    if parts or left:
        console().print(
            "\ninbox: "
            + (", ".join(parts) or "nothing decided")
            + (f"; {left} left for next time" if left else "")
        )
