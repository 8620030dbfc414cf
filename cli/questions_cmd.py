"""`ob questions` (what agents asked you, most-blocking first) and `ob answer`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import JsonOpt, console, operator, print_json, run_backlog

if TYPE_CHECKING:
    from core.backlog import Backlog
    from core.decisions import Ranked
    from core.models import Task
    from core.questions import Question


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel="Operator")(questions)
    app.command(rich_help_panel="Operator")(answer)


def questions(
    limit: Annotated[int, typer.Option(help="At most this many.", min=1, max=500)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Open questions from agents, the ones holding up the most work first.

    An agent waiting on it comes first, then the waiting work it releases, then the oldest."""
    from core.decisions import Decisions, PendingKind

    async def main(b: Backlog) -> Ranked:
        return await Decisions(b).ranked([PendingKind.QUESTION], limit)

    found = run_backlog(main)
    if as_json:
        print_json(found.items)
        return
    if not found.items:
        console().print("no open questions")
        return
    from cli.output import ago, plain_table

    table = plain_table(
        "Q", "task", "asked by", "asked", "question", "options", "state", overflow="fold"
    )
    for item in found.items:
        q = item.question
        assert q is not None
        state = "agent waiting" if item.agent_waiting else "lease ended" if q.left_open_at else ""
        if item.unblocks:
            state = f"{state}, unblocks {item.unblocks}".lstrip(", ")
        options = " / ".join(f"{i}. {o}" for i, o in enumerate(q.options, 1))
        table.add_row(q.ref, q.key, q.asked_by, ago(q.asked_at), q.text, options, state)
    console().print(table)
    console().print("answer with `ob answer Q<id> TEXT` (an option's number or text, or free text)")


def answer(
    ref: Annotated[
        str,
        typer.Argument(
            help="The question (Q7), or a task key when the task has one open question.",
            show_default=False,
        ),
    ],
    text: Annotated[
        str,
        typer.Argument(
            help="The answer: an option's number or text, or free text.", show_default=False
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Answer an agent's question (ob answer Q7 postgres; ob answer OB-12 2).

    The waiting agent gets the answer at once; it is written into the task's history and
    notes."""
    from core.questions import Questions

    async def main(b: Backlog) -> tuple[Question, Task]:
        q = await Questions(b).answer(ref, operator(), text)
        return q, await b.get(q.key)

    q, task = run_backlog(main)
    if as_json:
        print_json(q)
        return
    console().print(f"answered {q.ref} ({q.key}): {q.answer}", highlight=False)
    if q.left_open_at is not None and task.lane is not None:
        console().print(f"{q.key} is in {task.lane.value} now, its decision in the notes")
