"""`ob`: the operator's command line.

Operator commands talk to the backlog directly; agent verbs (see `ob next --help`) go through
the agent gateway with the agent's token.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
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
    err_console,
    fail,
    operator,
    print_json,
    read_text,
    reported,
    rewrap_help,
    run,
    run_backlog,
    settings,
    warn,
)
from cli.crossrepo_cmd import register as register_crossrepo_commands
from cli.inbox_cmd import inbox
from cli.questions_cmd import register as register_question_commands
from cli.repo_cmd import register as register_git_commands
from cli.repo_cmd import show_unverified
from cli.status_cmd import register as register_status_commands
from cli.views_cmd import digest, feed

if TYPE_CHECKING:
    from core.backlog import Backlog
    from core.models import Lane, Task
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


def _read_specs(path: Path) -> list[Spec]:
    """The text-form specs of a file, or of stdin for '-': one, or several separated by `---`
    lines or `## Title` headings (all of them read, or none)."""
    from core.spec import SpecError, parse
    from core.todo_format import split_specs

    text = read_text(path)
    chunks = split_specs(text)
    with reported():
        if len(chunks) < 2:
            return [parse(text)]
        specs, problems = [], []
        for n, chunk in enumerate(chunks, 1):
            try:
                specs.append(parse(chunk.text))
            except SpecError as err:
                problems += [f"spec {n} (line {chunk.line}): {p}" for p in err.problems]
        if problems:
            raise SpecError(problems[:20])
        return specs


def _read_spec(path: Path) -> Spec:
    """Exactly one text-form spec from a file (or stdin for '-')."""
    specs = _read_specs(path)
    if len(specs) > 1:
        fail(
            f"that file holds {len(specs)} specs (separated by `---` lines or `## Title`"
            " headings); give one"
        )
    return specs[0]


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
    from gateway.server import CannotListen

    try:
        run(serve_forever(settings()), fast_loop=True)
    except CannotListen as err:
        fail(str(err))


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

    Give a title and flags, or a whole spec in the text form with --file (or on stdin); a file
    holding several specs (separated by `---` lines or `## Title` headings) files each of them.
    For a TODO.md as people write it (checklists, prose, done items), use `ob import-todo`.

    \b
      ob add "Migrate ingest workers to asyncpg" -r nexus-ingest -p P1 -l autonomous \\
          -s "swap psycopg2 for asyncpg" -s "run the 10k-row load test"
      ob add -f spec.txt
    """
    from core.spec import make_spec, status_warning

    if file is None and title is None and not sys.stdin.isatty():
        file = Path("-")
    if file is not None:
        if title or step or risk:
            fail("give either --file or a title with flags, not both")
        specs = _read_specs(file)
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
                specs = [make_spec(**{**s.model_dump(), **overrides}) for s in specs]
    elif title is None:
        fail('give a title (ob add "Fix the login timeout") or a spec with --file')
    else:
        with reported():
            specs = [
                make_spec(
                    title=title,
                    repo=repo,
                    priority=priority or 2,
                    trigger=trigger,
                    trigger_on=trigger_on,
                    steps=step or [],
                    risks=risk or [],
                    notes=notes or "",
                )
            ]
    chosen_lane = _lane(lane)
    for s in specs:
        warning = status_warning(s)
        if warning:
            err_console().print(f"[yellow]warning:[/yellow] {s.title[:60]}: {warning}")

    async def main(b: Backlog) -> None:
        from core.git.repos import Repos

        tasks = await b.file_many(specs, operator(), lane=chosen_lane)
        if as_json:
            print_json(tasks[0] if len(tasks) == 1 else tasks)
        else:
            lanes = sorted({t.lane.value if t.lane else "-" for t in tasks})
            keys = ", ".join(f"[bold]{t.key}[/bold]" for t in tasks)
            console().print(f"filed {keys} into {', '.join(lanes)}")
        for task in tasks:
            if warning := await Repos(b).unregistered(task):
                warn(warning)

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
    limit: Annotated[int, typer.Option(help="At most this many rows (1 to 10,000).")] = 200,
    unverified: Annotated[
        bool, typer.Option("--unverified", help="Done tasks git has not confirmed yet.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List tasks (open work by default), by priority then age."""
    from pydantic import ValidationError

    from core.errors import plain_problems
    from core.models import parse_lane, parse_status
    from core.tasks import MAX_LIMIT, TaskFilter

    if not 1 <= limit <= MAX_LIMIT:
        fail(f"--limit must be between 1 and {MAX_LIMIT:,} (got {limit:,})")
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
    except ValidationError as err:
        fail("; ".join(plain_problems(err.errors())))
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
            from core.shaping import local_today

            console().print(task_table(tasks, local_today(b.settings.tz)))

    run_backlog(main)


@app.command(rich_help_panel="Operator")
def show(key: KeyArg, as_json: JsonOpt = False) -> None:
    """Show one task: its spec, status, lease, blockers, the agents' questions that wait for
    your answer, and its plan's drift."""
    from core.questions import Questions

    async def main(b: Backlog) -> None:
        task = await b.get(key)
        questions = await Questions(b).open_of(task.key)
        if as_json:
            asked = [{**q.model_dump(), "answer_with": q.answer_command} for q in questions]
            print_json({**task.model_dump(), "open_questions": asked})
            return
        from cli.agent_verbs import print_drift
        from cli.output import task_card
        from core.git.drift import Drift
        from core.shaping import local_today

        console().print(task_card(task, local_today(b.settings.tz), questions))
        print_drift(await Drift(b).of_task(task.key))

    run_backlog(main)


KeysArg = Annotated[
    list[str], typer.Argument(help="Task keys, e.g. OB-12 OB-13.", show_default=False)
]


Decided = tuple["Task", str]  # the task, and the line that says what happened to it


def _each(
    keys: list[str], decide: Callable[[Backlog, str], Awaitable[Decided]], as_json: bool
) -> None:
    """Decide each task in turn; one that cannot be decided says why in a line and the others
    go on. Exit status 1 when any failed."""
    from core.errors import BacklogError

    async def main(b: Backlog) -> tuple[list[Task], int]:
        done, failed = [], 0
        for key in keys:
            try:
                task, line = await decide(b, key)
            except BacklogError as err:
                failed += 1
                typer.echo(typer.style("error:", fg="red") + f" {err.message}", err=True)
                continue
            done.append(task)
            if not as_json:
                console().print(line)
        return done, failed

    done, failed = run_backlog(main)
    if as_json and done:
        print_json(done if len(keys) > 1 else done[0])
    if failed:
        raise typer.Exit(1)


@app.command(rich_help_panel="Operator")
def approve(
    keys: KeysArg,
    lane: Annotated[
        str | None,
        typer.Option(
            "--lane",
            "-l",
            help="Lane (default: the one the draft's filer suggested, else triage; P0/P1 work "
            "goes to autonomous only when you name it).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve drafts into a lane (one key or several); says the lane each went to."""
    from core.backlog import actor_name
    from core.models import Status

    chosen = _lane(lane)

    async def decide(b: Backlog, key: str) -> Decided:
        draft = await b.get(key)
        task = await b.approve(key, operator(), chosen)
        line = f"approved [bold]{task.key}[/bold] into {task.lane.value if task.lane else '-'}"
        if chosen is None and draft.status == Status.DRAFT:
            if draft.lane is None:
                line += " (no lane was suggested; --lane chooses)"
            else:
                who = actor_name(draft.created_by)
                line += f" (the lane {who} suggested; --lane chooses)"
        return task, line

    _each(keys, decide, as_json)


@app.command(rich_help_panel="Operator")
def reject(
    keys: KeysArg,
    reason: Annotated[
        str | None, typer.Option("--reason", "-m", help="Why (shown to agents).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject drafts or open tasks (one key or several; an agent holding one loses its lease).

    Tasks waiting on a rejected task would wait forever: each comes back to you in
    requires_decision (a draft stays a draft), and the answer names them."""

    from cli.output import rejected_lines

    async def decide(b: Backlog, key: str) -> Decided:
        task = await b.reject(key, operator(), reason)
        return task, rejected_lines(task)

    _each(keys, decide, as_json)


@app.command(rich_help_panel="Operator")
def reopen(
    key: KeyArg,
    reason: Annotated[
        str | None, typer.Option("--reason", "-m", help="Why (kept in the history).")
    ] = None,
    lane: Annotated[
        str | None,
        typer.Option("--lane", "-l", help="Reopen a done task into this lane (default: its own)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Undo a decision: a done task is open again (agents may take it again), a rejected one is
    a draft again. The completion or rejection stays in `ob log`."""
    from core.models import Status

    chosen = _lane(lane)

    async def main(b: Backlog) -> None:
        task = await b.reopen(key, operator(), reason, lane=chosen)
        if as_json:
            print_json(task)
        elif task.status == Status.DRAFT:
            console().print(
                f"reopened [bold]{task.key}[/bold]: a draft again; approve it with "
                f"`ob approve {task.key} --lane LANE`"
            )
        else:
            console().print(
                f"reopened [bold]{task.key}[/bold]: open in {task.lane.value if task.lane else '-'}"
                " again"
            )

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
    add_step: Annotated[
        list[str] | None, typer.Option("--add-step", "-S", help="Append a step (repeat).")
    ] = None,
    risk: Annotated[
        list[str] | None, typer.Option("--risk", help="Replace the risks (repeat).")
    ] = None,
    add_risk: Annotated[
        list[str] | None, typer.Option("--add-risk", help="Append a risk (repeat).")
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
    if spec is None and not changes and not add_step and not add_risk:
        fail("nothing to change; give flags such as --title or --priority, or --file")

    async def main(b: Backlog) -> None:
        done = await b.edit_from_spec(key, spec, operator()) if spec else None
        if changes or add_step or add_risk:
            done = await b.edit(key, operator(), add_steps=add_step, add_risks=add_risk, **changes)
        assert done is not None
        if as_json:
            print_json(done.task)
        else:
            console().print(f"edited [bold]{done.task.key}[/bold]: {done.summary()}")
        if "repo" in done.changes:
            from core.git.repos import Repos

            if warning := await Repos(b).unregistered(done.task):
                warn(warning)

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


app.command("inbox", rich_help_panel="Operator")(inbox)
app.command("digest", rich_help_panel="Operator")(digest)
app.command("feed", rich_help_panel="Operator")(feed)
app.add_typer(agent_app, name="agent", rich_help_panel="Operator")
app.add_typer(dep_app, name="dep", rich_help_panel="Operator")
register_question_commands(app)
register_agent_verbs(app)
register_git_commands(app)
register_crossrepo_commands(app)
register_status_commands(app)
rewrap_help(app)


def check_argv(args: list[str]) -> None:
    """Each argument is text: bytes that are not UTF-8 are said to be so, once."""
    for i, arg in enumerate(args, 1):
        if any("\udc80" <= ch <= "\udcff" for ch in arg):  # bytes that did not decode
            shown = repr(os.fsencode(arg))[2:-1]
            fail(
                f"argument {i} is not UTF-8 text ('{shown[:80]}'); ob reads its command line as "
                "UTF-8 (check the terminal's encoding, or LANG)"
            )


def main() -> None:
    try:
        check_argv(sys.argv[1:])
    except typer.Exit as err:
        sys.exit(err.exit_code)
    app()


if __name__ == "__main__":
    main()
