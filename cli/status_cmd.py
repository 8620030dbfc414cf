"""`ob status` (is everything running?) and `ob outbox` (notices waiting or dead, and retrying
them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import JsonOpt, console, print_json, run_backlog

if TYPE_CHECKING:
    from core.backlog import Backlog
    from core.git.repos import TruthAge
    from core.outbox import Notice, OutboxStats
    from core.supervise import WorkerStatus

outbox_app = typer.Typer(
    help="Notices for the operator's chat that are not delivered yet, and why.",
    invoke_without_command=True,
)

STATE_STYLE = {"running": "green", "ok": "green", "failing": "red", "stopped": "dim", "off": "dim"}


def status(as_json: JsonOpt = False) -> None:
    """Is `ob serve` running, and is each of its parts well? Plus the notices waiting, and how
    fresh the truth is (repos whose fetch fails or is too old). Exits with status 1 when no
    `ob serve` is running."""
    from core.git.repos import Repos
    from core.outbox import Outbox
    from core.supervise import StatusBoards

    async def main(b: Backlog) -> tuple[list[WorkerStatus], OutboxStats, TruthAge]:
        return await StatusBoards(b).read(), await Outbox(b).stats(), await Repos(b).truth()

    boards, outbox, truth = run_backlog(main)
    running = any(not w.gone for w in boards)
    if as_json:
        print_json({"database": "ok", "processes": boards, "outbox": outbox, "truth": truth})
    else:
        show_status(boards, outbox, truth)
    if not running:  # scripts and health checks rely on it
        raise typer.Exit(1)


def show_status(boards: list[WorkerStatus], outbox: OutboxStats, truth: TruthAge) -> None:
    from rich.markup import escape
    from rich.text import Text

    from cli.output import ago, plain_table

    out = console()
    out.print("database: [green]ok[/green]")
    live = [w for w in boards if not w.gone]
    if not live:
        out.print("[yellow]no `ob serve` is running[/yellow] (none reported in the last 2 minutes)")
    for w in boards:
        seen = "[dim]gone[/dim]" if w.gone else "[green]up[/green]"
        out.print(f"\nob serve {w.worker}: {seen}, last report {ago(w.seen_at)}")
        table = plain_table("part", "state", "detail", "last ok", "last error", overflow="fold")
        for p in w.parts:
            error = ""
            if p.last_error and p.state == "failing":
                error = f"{p.last_error} ({ago(p.last_error_at)}, {p.failures} in a row)"
            table.add_row(
                p.name,
                Text(p.state.value, style=STATE_STYLE.get(p.state.value, "")),
                p.detail or "",
                ago(p.last_ok_at),
                Text(error, style="red"),
            )
        out.print(table)
    out.print("\n" + outbox_line(outbox))
    out.print(truth_line(truth))
    for r in truth.repos:
        good = f"last good fetch {ago(r.last_fetch_at)}" if r.last_fetch_at else "never fetched"
        why = f": fetch failed {ago(r.fetch_error_at)}, {r.fetch_error}" if r.fetch_error else ""
        stale = " (stale)" if r.stale else ""
        out.print(f"  {escape(r.name)}{stale}: {good}{escape(why)}", style="red", highlight=False)


def truth_line(t: TruthAge) -> str:
    line = f"git: {t.fetched} repo(s) fetched"
    if t.failing_total:
        line += f", [red]{t.failing_total} failing to fetch[/red]"
    if t.stale_total:
        line += f", [red]{t.stale_total} not fetched for over {t.max_age}s[/red] (OB_TRUTH_MAX_AGE)"
    return line


def outbox_line(s: OutboxStats) -> str:
    from cli.output import ago

    line = f"notices: {s.pending} waiting"
    if s.oldest_pending_at is not None:
        line += f" (oldest {ago(s.oldest_pending_at)})"
    if s.dead:
        line += f", [red]{s.dead} dead[/red]: `ob outbox --dead` says why"
    return line


@outbox_app.callback()
def outbox(
    ctx: typer.Context,
    dead: Annotated[bool, typer.Option("--dead", help="Only notices Telegram refused.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List notices not delivered yet: waiting ones (with their last error) and dead ones."""
    if ctx.invoked_subcommand is not None:
        return
    from core.outbox import Outbox

    async def main(b: Backlog) -> list[Notice]:
        return await Outbox(b).undelivered(dead_only=dead, limit=limit)

    notices = run_backlog(main)
    if as_json:
        print_json(notices)
        return
    if not notices:
        console().print("no dead notices" if dead else "every notice is delivered")
        return
    from rich.text import Text

    from cli.output import ago, plain_table

    table = plain_table("id", "kind", "task", "since", "tries", "state", "last error")
    for n in notices:
        state = Text("dead", style="red") if n.dead_at else Text(f"next {ago(n.available_at)}")
        table.add_row(
            str(n.id),
            n.kind.value,
            n.key or "",
            ago(n.created_at),
            str(n.attempts),
            state,
            n.last_error or "",
        )
    console().print(table)
    if any(n.dead_at for n in notices):
        console().print("`ob outbox retry --dead` sends the dead ones again")


@outbox_app.command("retry")
def retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Notice ids (see `ob outbox`).")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead notice.")] = False,
) -> None:
    """Send dead notices again (after fixing what Telegram refused)."""
    from cli.app import fail
    from core.outbox import Outbox

    if not ids and not dead:
        fail("give notice ids, or --dead for all of them")

    async def main(b: Backlog) -> int:
        return await Outbox(b).retry_dead(None if dead else ids)

    n = run_backlog(main)
    console().print(f"{n} notice(s) will be sent again" if n else "no dead notice matched")


def register(app: typer.Typer) -> None:
    app.command("status", rich_help_panel="Setup")(status)
    app.add_typer(outbox_app, name="outbox", rich_help_panel="Setup")
