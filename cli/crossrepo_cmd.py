"""`ob cross-repo`: commits in one repo that say they close another repo's task, waiting for the
operator, and `ob cross-repo close` / `ignore` to decide them as the bot's [Close it] / [Ignore]
do (core.git.crossrepo)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import JsonOpt, console, operator, print_json, run_backlog

if TYPE_CHECKING:
    from core.backlog import Backlog
    from core.git.crossrepo import CrossRepoAsk, OpenAsks

crossrepo_app = typer.Typer(
    help=(
        "Commits in one repo that say they close another repo's task (a commit closes only its "
        "own repo's tasks by itself): with no command, lists those waiting for you; `close` "
        "closes the task with the commit as its evidence, `ignore` leaves the task as it is."
    ),
    invoke_without_command=True,
)

AskArg = Annotated[
    str,
    typer.Argument(
        help="The id `ob cross-repo` lists, or the task's key when one commit waits for it.",
        show_default=False,
    ),
]


@crossrepo_app.callback()
def cross_repo(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1, max=1000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List the commits that say they close another repo's task and wait for your decision,
    oldest first."""
    if ctx.invoked_subcommand is not None:
        return
    from core.git.crossrepo import CrossRepo

    async def main(b: Backlog) -> OpenAsks:
        return await CrossRepo(b).waiting(limit)

    found = run_backlog(main)
    if as_json:
        print_json(found.items)
        return
    if not found.items:
        console().print("no commit of one repo waits to close another repo's task")
        return
    from rich.text import Text

    from cli.output import ago, plain_table

    table = plain_table(
        "id", "task", "title", "repo", "commit in", "sha", "subject", "by", "asked", overflow="fold"
    )
    for a in found.items:
        table.add_row(
            str(a.id),
            a.key,
            Text(a.title),
            Text(a.task_repo or "-"),
            Text(a.repo),
            a.sha[:10],
            Text(a.subject),
            Text(a.by or ""),
            ago(a.asked_at),
        )
    shown = f" (the oldest {len(found.items)})" if found.total > len(found.items) else ""
    console().print(
        f"{found.total} commit(s) in one repo say they close another repo's task{shown}:"
    )
    console().print(table)
    console().print(
        "close the task with that commit as its evidence: `ob cross-repo close ID` (or the"
        " task's key); or leave the task as it is: `ob cross-repo ignore ID`",
        highlight=False,
    )


def _decide(ref: str, close: bool, as_json: bool) -> None:
    from core.git.crossrepo import CrossRepo

    async def main(b: Backlog) -> CrossRepoAsk:
        crossrepo = CrossRepo(b)
        return await crossrepo.decide(await crossrepo.resolve(ref), close, operator())

    done = run_backlog(main)
    if as_json:
        print_json(done)
    elif close:
        line = f"closed {done.key} with commit {done.sha[:10]} in {done.repo} as its evidence"
        console().print(line, highlight=False)
    else:
        line = f"ignored commit {done.sha[:10]} in {done.repo}: {done.key} stays as it is"
        console().print(line, highlight=False)


@crossrepo_app.command("close")
def close(ask: AskArg, as_json: JsonOpt = False) -> None:
    """Close the task with the other repo's commit as its evidence (verified; git must still
    show the commit on that repo's default branch, not reverted)."""
    _decide(ask, True, as_json)


@crossrepo_app.command("ignore")
def ignore(ask: AskArg, as_json: JsonOpt = False) -> None:
    """Ignore the commit: the task stays as it is (the decision is in its history)."""
    _decide(ask, False, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(crossrepo_app, name="cross-repo", rich_help_panel="Git")
