"""`ob`: the operator's command line.

Operator commands talk to the backlog directly; agent verbs (see `ob next --help`) go through
the agent gateway with the agent's token.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

# ob uses no pydantic plugins; looking for them scans every installed distribution's entry
# points (about 80 ms of each `ob` run). Set PYDANTIC_DISABLE_PLUGINS yourself to override.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer  # noqa: E402

from cli.agent_verbs import register as register_agent_verbs  # noqa: E402
from cli.agents_cmd import agent_app, dep_app
from cli.app import (
    JsonOpt,
    KeyArg,
    console,
    fail,
    operator,
    print_json,
    reported,
    run,
    run_backlog,
    settings,
)
from cli.questions_cmd import register as register_question_commands
from cli.repo_cmd import register as register_git_commands
from cli.repo_cmd import show_unverified
from cli.status_cmd import register as register_status_commands

if TYPE_CHECKING:
    from core.backlog import Backlog
    from core.models import Lane
    from core.spec import Spec

app = typer.Typer(
    name="ob",
    help=(
        "Operator Backlog: one backlog for you and your AI coding agents.\n\n"
        "You file and approve work (`ob add`, `ob approve`); agents claim approved work "
        "through the gateway that `ob serve` runs; git decides what is done."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _lane(value: str | None) -> Lane | None:
    from core.models import parse_lane

    if value is None:
        return None
    try:
        return parse_lane(value)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def _read_spec(path: Path) -> Spec:
    """A text-form spec from a file, or from stdin for '-'."""
    from core.spec import parse

    if str(path) == "-":
        text = sys.stdin.read()
    else:
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            fail(f"cannot read {path}: {err}")
    with reported():
        return parse(text)


# ----------------------------------------------------------------- setup


@app.command(rich_help_panel="Setup")
def init() -> None:
    """Set up the database (starting the embedded server if OB_DATABASE_URL is unset)."""
    from core.db import migrate_database

    cfg = settings()
    applied = run(migrate_database(cfg))
    where = "embedded server in " + str(cfg.data_dir) if not cfg.database_url else "OB_DATABASE_URL"
    console().print(f"database ready ({where}); {len(applied)} migration(s) applied")


@app.command("migrate", rich_help_panel="Setup")
def migrate_cmd() -> None:
    """Apply pending database migrations (safe to run from several processes at once)."""
    from core.db import migrate_database

    applied = run(migrate_database(settings()))
    for m in applied:
        console().print(f"applied {m.version:03d}_{m.name}")
    console().print("up to date" if not applied else f"{len(applied)} migration(s) applied")


@app.command(rich_help_panel="Setup")
def serve() -> None:
    """Run the main job: migrations, the agent gateway, the bot and the scheduler."""
    from cli.serve import serve_forever

    run(serve_forever(settings()), fast_loop=True)


# ----------------------------------------------------------------- operator


@app.command(rich_help_panel="Operator")
def add(
    title: Annotated[str | None, typer.Argument(help="One-line title.", show_default=False)] = None,
    repo: Annotated[str | None, typer.Option("--repo", "-r", help="Repository name.")] = None,
    priority: Annotated[
        str | None, typer.Option("--priority", "-p", help="P0-P3 (default P2).")
    ] = None,
    lane: Annotated[
        str | None,
        typer.Option("--lane", "-l", help="triage, decision, investigation or autonomous."),
    ] = None,
    trigger: Annotated[str | None, typer.Option(help="Why this becomes urgent.")] = None,
    trigger_on: Annotated[
        str | None, typer.Option(help="Date (YYYY-MM-DD) before which agents do not take it.")
    ] = None,
    step: Annotated[
        list[str] | None, typer.Option("--step", "-s", help="A plan step (repeat).")
    ] = None,
    risk: Annotated[list[str] | None, typer.Option("--risk", help="A known risk (repeat).")] = None,
    notes: Annotated[str | None, typer.Option(help="Free-text notes.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Read a spec in the text form from a file ('-' = stdin)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """File a task. You are the operator, so it is approved at once into its lane.

    Give a title and flags, or a whole spec in the text form with --file (or on stdin):

    \b
      ob add "Migrate ingest workers to asyncpg" -r nexus-ingest -p P1 -l autonomous \\
          -s "swap psycopg2 for asyncpg" -s "run the 10k-row load test"
      ob add -f spec.txt
    """
    from core.spec import make_spec

    if file is None and title is None and not sys.stdin.isatty():
        file = Path("-")
    if file is not None:
        if title or step or risk:
            fail("give either --file or a title with flags, not both")
        spec = _read_spec(file)
        overrides = {
            k: v
            for k, v in {
                "repo": repo,
                "priority": priority,
                "trigger": trigger,
                "trigger_on": trigger_on,
                "notes": notes,
            }.items()
            if v is not None
        }
        if overrides:
            with reported():
                spec = make_spec(**{**spec.model_dump(), **overrides})
    elif title is None:
        fail('give a title (ob add "Fix the login timeout") or a spec with --file')
    else:
        with reported():
            spec = make_spec(
                title=title,
                repo=repo,
                priority=priority or 2,
                trigger=trigger,
                trigger_on=trigger_on,
                steps=step or [],
                risks=risk or [],
                notes=notes or "",
            )
    chosen_lane = _lane(lane)

    async def main(b: Backlog) -> None:
        task = await b.file(spec, operator(), lane=chosen_lane)
        if as_json:
            print_json(task)
        else:
            console().print(
                f"filed [bold]{task.key}[/bold] into {task.lane.value if task.lane else '-'}"
            )

    run_backlog(main)


@app.command("list", rich_help_panel="Operator")
def list_cmd(
    status: Annotated[
        list[str] | None, typer.Option("--status", help="draft, open, claimed, done, rejected.")
    ] = None,
    lane: Annotated[list[str] | None, typer.Option("--lane", "-l", help="Lane (repeat).")] = None,
    repo: Annotated[str | None, typer.Option("--repo", "-r")] = None,
    search: Annotated[str | None, typer.Option("--search", "-q", help="Text search.")] = None,
    blocked: Annotated[
        bool, typer.Option("--blocked", help="Only tasks waiting on prerequisites.")
    ] = False,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Include done and rejected tasks.")
    ] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 200,
    unverified: Annotated[
        bool, typer.Option("--unverified", help="Done tasks git has not confirmed yet.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List tasks (open work by default), by priority then age."""
    from core.models import parse_lane, parse_status
    from core.tasks import TaskFilter

    if unverified:
        return show_unverified(as_json, limit)
    try:
        flt = TaskFilter(
            status=[parse_status(s) for s in status] if status else None,
            lane=[parse_lane(v) for v in lane] if lane else None,
            repo=repo,
            text=search,
            blocked=True if blocked else None,
            include_closed=all_,
            limit=limit,
        )
    except ValueError as err:
        fail(str(err))

    async def main(b: Backlog) -> None:
        tasks = await b.list(flt)
        if as_json:
            print_json(tasks)
        elif not tasks:
            console().print("no tasks match")
        else:
            from cli.output import task_table

            console().print(task_table(tasks))

    run_backlog(main)


@app.command(rich_help_panel="Operator")
def show(key: KeyArg, as_json: JsonOpt = False) -> None:
    """Show one task: its spec, status, lease and blockers."""

    async def main(b: Backlog) -> None:
        task = await b.get(key)
        if as_json:
            print_json(task)
        else:
            from cli.output import task_card

            console().print(task_card(task))

    run_backlog(main)


@app.command(rich_help_panel="Operator")
def approve(
    key: KeyArg,
    lane: Annotated[
        str | None,
        typer.Option("--lane", "-l", help="Lane (default: the draft's suggestion, else triage)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a draft into a lane."""
    chosen = _lane(lane)

    async def main(b: Backlog) -> None:
        task = await b.approve(key, operator(), chosen)
        if as_json:
            print_json(task)
        else:
            console().print(
                f"approved [bold]{task.key}[/bold] into {task.lane.value if task.lane else '-'}"
            )

    run_backlog(main)


@app.command(rich_help_panel="Operator")
def reject(
    key: KeyArg,
    reason: Annotated[
        str | None, typer.Option("--reason", "-m", help="Why (shown to agents).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject a draft or an open task (an agent holding it loses its lease)."""

    async def main(b: Backlog) -> None:
        task = await b.reject(key, operator(), reason)
        if as_json:
            print_json(task)
        else:
            console().print(f"rejected [bold]{task.key}[/bold]")

    run_backlog(main)


@app.command("lane", rich_help_panel="Operator")
def lane_cmd(
    key: KeyArg,
    lane: Annotated[str, typer.Argument(help="triage, decision, investigation or autonomous.")],
    as_json: JsonOpt = False,
) -> None:
    """Move an approved task to another lane."""
    chosen = _lane(lane)
    assert chosen is not None

    async def main(b: Backlog) -> None:
        task = await b.move_lane(key, chosen, operator())
        if as_json:
            print_json(task)
        else:
            console().print(f"moved [bold]{task.key}[/bold] to {chosen.value}")

    run_backlog(main)


@app.command(rich_help_panel="Operator")
def edit(
    key: KeyArg,
    title: Annotated[str | None, typer.Option("--title", "-t")] = None,
    repo: Annotated[str | None, typer.Option("--repo", "-r")] = None,
    priority: Annotated[str | None, typer.Option("--priority", "-p")] = None,
    trigger: Annotated[str | None, typer.Option()] = None,
    trigger_on: Annotated[str | None, typer.Option(help="YYYY-MM-DD, or '' to clear.")] = None,
    step: Annotated[
        list[str] | None, typer.Option("--step", "-s", help="Replace the steps (repeat).")
    ] = None,
    risk: Annotated[
        list[str] | None, typer.Option("--risk", help="Replace the risks (repeat).")
    ] = None,
    notes: Annotated[str | None, typer.Option()] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Replace the whole spec from a text-form file ('-' = stdin)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Edit a task's spec fields (not done or rejected ones)."""
    changes: dict[str, object] = {
        k: v
        for k, v in {
            "title": title,
            "repo": repo,
            "priority": priority,
            "trigger": trigger,
            "trigger_on": trigger_on,
            "steps": step,
            "risks": risk,
            "notes": notes,
        }.items()
        if v is not None
    }
    spec = _read_spec(file) if file is not None else None
    if spec is None and not changes:
        fail("nothing to change; give flags such as --title or --priority, or --file")

    async def main(b: Backlog) -> None:
        done = await b.edit_from_spec(key, spec, operator()) if spec else None
        if changes:
            done = await b.edit(key, operator(), **changes)
        assert done is not None
        if as_json:
            print_json(done.task)
        else:
            console().print(f"edited [bold]{done.task.key}[/bold]: {done.summary()}")

    run_backlog(main)


@app.command(rich_help_panel="Operator")
def log(key: KeyArg, as_json: JsonOpt = False) -> None:
    """Show a task's history: who did what, when."""

    async def main(b: Backlog) -> None:
        evs = await b.history(key)
        if as_json:
            print_json(evs)
        else:
            from cli.output import history_table

            console().print(history_table(evs))

    run_backlog(main)


@app.command("spec", rich_help_panel="Operator")
def spec_cmd(key: KeyArg) -> None:
    """Print a task in the spec text form (edit it and feed it to `ob edit KEY -f -`)."""
    from core.backlog import spec_of
    from core.spec import render

    async def main(b: Backlog) -> None:
        print(render(spec_of(await b.get(key))), end="")

    run_backlog(main)


app.add_typer(agent_app, name="agent", rich_help_panel="Operator")
app.add_typer(dep_app, name="dep", rich_help_panel="Operator")
register_question_commands(app)
register_agent_verbs(app)
register_git_commands(app)
register_status_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
