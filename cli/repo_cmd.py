"""Git commands: `ob repo add|set|rm|list`, `ob reconcile`, `ob replan`, `ob import-todo`,
`ob export-todo`, and `ob list --unverified`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import (
    JsonOpt,
    console,
    err_console,
    fail,
    operator,
    print_json,
    run_backlog,
    warn,
)

if TYPE_CHECKING:
    from rich.table import Table

    from core.backlog import Backlog
    from core.git.evidence import UnverifiedReport
    from core.git.reconcile import ReconcileSummary, RepoResult
    from core.git.repos import RepoInfo, SkippedFolder
    from core.git.todo import ExportResult, ImportResult

TODO_FILE = "TODO.md"  # for help texts; core.git.todo reads and writes it

repo_app = typer.Typer(help="The repository registry (git is the truth).", no_args_is_help=True)


@repo_app.command("add")
def repo_add(
    path: Annotated[
        str,
        typer.Argument(
            help="Path of a git work tree or bare repository, or the URL of one ob should keep"
            " a bare clone of (https://..., git@host:owner/repo.git, ssh://...).",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Registry name (default: folder name).")
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch",
            "-b",
            help="Pin the default branch (default: follow the repository's own: origin/HEAD,"
            " a bare repository's HEAD, else main/master).",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Drop a --branch pin: follow the repository's default."),
    ] = False,
    fetch: Annotated[
        bool | None,
        typer.Option(
            "--fetch/--no-fetch",
            help="Fetch its remote before each reconcile (the default), or never.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Register a repository by path, or by URL (ob keeps a bare clone under its data dir);
    re-adding a path updates its name, branch or fetching."""
    from core.git.remotes import looks_like_url
    from core.git.repos import Repos

    async def main(b: Backlog) -> None:
        if looks_like_url(path):
            with err_console().status(f"cloning {path} (bare) ..."):
                info = await Repos(b).add_remote(
                    path, operator(), name=name, branch=branch, follow=follow, fetch=fetch
                )
        else:
            info = await Repos(b).add(
                path, operator(), name=name, branch=branch, follow=follow, fetch=fetch
            )
        how = "pinned" if info.branch_pinned else "followed"
        console().print(
            f"repo [bold]{info.name}[/bold] at {info.path}"
            f" (default branch {info.default_branch}, {how}; {_fetching(info)})"
        )

    run_backlog(main)


def _fetching(info: RepoInfo) -> str:
    if info.remote is None:
        return "no remote: read as it is"
    if not info.fetch_enabled:
        return f"{info.remote} not fetched (--no-fetch)"
    return f"fetches {info.remote} before each reconcile"


@repo_app.command("set")
def repo_set(
    name: Annotated[str, typer.Argument(help="Registry name (see `ob repo list`).")],
    fetch: Annotated[
        bool,
        typer.Option(
            "--fetch/--no-fetch",
            help="Fetch its remote before each reconcile, or never.",
            show_default=False,
        ),
    ],
) -> None:
    """Change a registered repo: whether ob fetches its remote."""
    from core.git.repos import Repos

    async def main(b: Backlog) -> None:
        info = await Repos(b).set_fetch(name, fetch, operator())
        console().print(f"repo [bold]{info.name}[/bold]: {_fetching(info)}")

    run_backlog(main)


@repo_app.command("rm")
def repo_rm(
    name: Annotated[str, typer.Argument(help="Registry name (see `ob repo list`).")],
    as_json: JsonOpt = False,
) -> None:
    """Remove a repository from the registry: it is no longer scanned (nor discovered again
    under OB_REPO_ROOTS); its tasks keep its name."""
    from core.git.repos import Repos

    async def main(b: Backlog) -> None:
        gone = await Repos(b).remove(name, operator())
        if as_json:
            print_json(gone)
            return
        console().print(f"removed repo [bold]{gone.name}[/bold] ({gone.path}); it is not scanned")
        if gone.unfinished:
            console().print(
                f"{gone.unfinished} unfinished task(s) still name {gone.name}: git no longer"
                " verifies them or measures their drift"
            )
        console().print(f"`ob repo add {gone.path}` registers it again")

    run_backlog(main)


@repo_app.command("list")
def repo_list(as_json: JsonOpt = False) -> None:
    """Registered repositories and how their last scan went."""
    from rich.text import Text

    from cli.output import ago, plain_table
    from core.git.repos import Repos

    async def main(b: Backlog) -> None:
        infos = await Repos(b).all()
        skipped = await Repos(b).skipped()
        if as_json:
            print_json(infos)
            return
        if not infos:
            console().print("no repos yet; `ob repo add PATH` registers one (or set OB_REPO_ROOTS)")
        else:
            table = plain_table(
                "repo",
                "branch",
                "head",
                "commits",
                "last scan",
                "last fetch",
                "path",
                "problem",
                overflow="fold",
            )
            for r in infos:
                problems = [p for p in (r.last_error, _fetch_problem(r)) if p]
                table.add_row(
                    r.name + (" *" if r.discovered else ""),
                    (r.default_branch or "-") + (" (pinned)" if r.branch_pinned else ""),
                    (r.cursor_sha or "")[:10],
                    str(r.commits_seen),
                    ago(r.last_scan_at) or "never",
                    _last_fetch(r),
                    r.path + (" (ob's clone)" if r.managed else ""),
                    Text("; ".join(problems), style="red"),
                )
            console().print(table)
        print_skipped(skipped)

    run_backlog(main)


def _last_fetch(r: RepoInfo) -> str:
    from cli.output import ago

    if r.remote is None:
        return "no remote"
    if not r.fetch_enabled:
        return "off (--no-fetch)"
    return ago(r.last_fetch_at) or "never"


def _fetch_problem(r: RepoInfo) -> str | None:
    """A failing fetch: why, and how old the truth is."""
    if not r.fetch_error:
        return None
    from cli.output import ago

    good = f"last good fetch {ago(r.last_fetch_at)}" if r.last_fetch_at else "never fetched"
    return f"fetch failed {ago(r.fetch_error_at)} ({good}): {r.fetch_error}"


def print_skipped(skipped: list[SkippedFolder]) -> None:
    """Folders under OB_REPO_ROOTS that were not registered, and why."""
    if not skipped:
        return
    from rich.text import Text

    from cli.output import plain_table

    table = plain_table("skipped folder", "why", overflow="fold")
    for s in skipped:
        table.add_row(s.path, Text(s.reason, style="yellow"))
    console().print(f"[yellow]{len(skipped)} folder(s) under OB_REPO_ROOTS skipped:[/yellow]")
    console().print(table)


def _status(r: RepoResult) -> str:
    notes = []
    if r.fetch_error:
        notes.append(f"fetch failed: {r.fetch_error}")
    if r.branch_changed_from:
        notes.append(f"branch {r.branch_changed_from} -> {r.branch}")
    if r.rewritten:
        notes.append(f"rewritten, {r.left_default} left {r.branch or 'the branch'}")
    if r.evidence_lost:
        notes.append(f"{r.evidence_lost} lost evidence")
    if r.asked:
        notes.append(f"{r.asked} other repo's task(s): asked you, see `ob cross-repo`")
    if r.deepened:
        notes.append("deeper history: read again")
    return r.status + (f" ({'; '.join(notes)})" if notes else "")


def summary_table(summary: ReconcileSummary) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold", title="reconcile", title_justify="left")
    for col in ("repo", "status", "read", "new", "linked", "closed", "unknown keys", "time"):
        table.add_column(col, justify="left" if col in ("repo", "status") else "right")
    for r in sorted(summary.repos, key=lambda r: (r.status != "error", r.name)):
        status = _status(r)
        table.add_row(
            r.name,
            Text(
                status if not r.error else f"error: {r.error}",
                style="red" if r.error or r.fetch_error else "",
            ),
            str(r.commits_read),
            str(r.new_on_default),
            str(r.linked),
            str(r.closed)
            + (f" ({r.closed_while_claimed} held!)" if r.closed_while_claimed else ""),
            str(r.unknown_keys),
            f"{r.seconds:.2f}s",
        )
    return table


def reconcile_cmd(
    repo: Annotated[
        list[str] | None, typer.Argument(help="Only these repos (default: all).")
    ] = None,
    fetch: Annotated[
        bool,
        typer.Option(
            "--fetch/--no-fetch", help="Fetch the remotes first (--no-fetch: this run reads as is)."
        ),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Reconcile now: fetch the remotes, read new commits, link and close tasks, verify
    completions."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from core.git.reconcile import Reconciler

    async def main(b: Backlog) -> ReconcileSummary:
        rec = Reconciler(b)
        if as_json:
            return await rec.run(repo or None, fetch=fetch)
        with Progress(
            TextColumn("[bold]reconciling"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err_console(),
            transient=True,
        ) as progress:
            bar = progress.add_task("", total=None)

            def start(names: list[str]) -> None:
                progress.update(bar, total=len(names))

            def done(res: RepoResult) -> None:
                progress.update(bar, advance=1, description=res.name)

            return await rec.run(repo or None, fetch=fetch, on_start=start, on_progress=done)

    summary = run_backlog(main)
    if as_json:
        print_json(
            {
                "repos": [vars(r) for r in summary.repos],
                "discovered": summary.discovered,
                "skipped": [s.model_dump(mode="json") for s in summary.skipped],
                "verified": summary.verified,
                "commits_read": summary.commits_read,
                "seconds": summary.seconds,
            }
        )
    else:
        if summary.discovered:
            console().print(f"discovered: {', '.join(summary.discovered)}")
        print_skipped(summary.skipped)
        if summary.repos:
            console().print(summary_table(summary))
        lost = summary.total("evidence_lost")
        console().print(
            f"{len(summary.repos)} repo(s) in {summary.seconds:.2f}s,"
            f" {summary.commits_read} commit(s) read: "
            f"{summary.total('closed')} closed, {summary.total('linked')} linked, "
            f"{len(summary.verified) + summary.total('reverified')} verified"
            + (f" ({', '.join(summary.verified[:10])})" if summary.verified else "")
            + (f", [red]{lost} lost their evidence[/red]" if lost else "")
            + f", {summary.total('unknown_keys')} unknown key(s), "
            f"{len(summary.errors)} error(s)"
            + (
                f", [red]{len(summary.fetch_errors)} fetch(es) failed[/red]"
                if summary.fetch_errors
                else ""
            )
            + (f", {len(summary.skipped)} folder(s) skipped" if summary.skipped else "")
        )
    if summary.errors:
        raise typer.Exit(4)


def replan_cmd(
    key: Annotated[str, typer.Argument(help="Task key, e.g. OB-12.", show_default=False)],
) -> None:
    """Reset a task's plan base to its repo's current HEAD (after revising the plan)."""
    from core.git.drift import Drift

    async def main(b: Backlog) -> None:
        task = await Drift(b).replan(key, operator())
        console().print(f"{task.key} is now planned against {(task.base_sha or '')[:10]}")

    run_backlog(main)


def import_todo_cmd(
    path: Annotated[
        list[Path] | None, typer.Argument(help="TODO.md files (or repo folders).")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help=f"The {TODO_FILE} of every registered repo.")
    ] = False,
    approve: Annotated[
        bool, typer.Option("--approve", help="File approved tasks instead of drafts.")
    ] = False,
    repo: Annotated[
        str | None, typer.Option("--repo", "-r", help="Repo of specs without a repo line.")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            "-n",
            help="Show what would be filed, updated and skipped, and why; write nothing.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Import TODO.md files as people write them: new items become drafts (or approved), keyed
    specs update their task, nothing is filed twice.

    Specs (a heading with status/priority/steps/… lines, or parts between `---` lines),
    checklists and bullet lists are read; done, dropped and checked items are skipped and
    counted; an item that does not read is listed with its line and why, and the rest is
    imported. A spec is matched by its `key:`, else by its title within the repo; a field changed
    in the file since the last sync updates the task, one changed in the backlog too is a
    conflict (reported, not resolved).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    from core.git.repos import Repos
    from core.git.todo import TodoFiles

    if not path and not all_:
        fail("give TODO.md paths, or --all for every registered repo")

    unknown: str | None = None

    async def main(b: Backlog) -> list[ImportResult]:
        nonlocal unknown
        if repo is not None:
            unknown = await Repos(b).unregistered_name(repo)
        targets: list[tuple[str | None, Path]] = [(repo, p) for p in path or []]
        if all_:
            targets += await TodoFiles(b).repo_files()
        if as_json:
            return [
                await TodoFiles(b).import_file(
                    p, operator(), approve=approve, repo=r, dry_run=dry_run
                )
                for r, p in targets
            ]
        out = []
        with Progress(
            TextColumn("[bold]importing[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console(),
            transient=True,
        ) as progress:
            for r, p in targets:
                bar = progress.add_task(p.name, total=None)

                def step(stage: str, done: int, total: int, bar: TaskID = bar, p: Path = p) -> None:
                    progress.update(
                        bar, description=f"{p.name}: {stage}", completed=done, total=total
                    )

                out.append(
                    await TodoFiles(b).import_file(
                        p, operator(), approve=approve, repo=r, dry_run=dry_run, on_progress=step
                    )
                )
                progress.remove_task(bar)
        return out

    results = run_backlog(main)
    if unknown is not None:
        warn(
            f"{unknown}: git will not verify the tasks filed for it or show their drift;"
            " `ob repo add PATH` registers it"
        )
    if as_json:
        print_json([r.model_dump(mode="json") for r in results])
        return
    for r in results:
        print_import(r)
    if not results:
        console().print("no TODO.md files found")


def _listed(keys: list[str], limit: int = 20) -> str:
    return ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")


def print_import(r: ImportResult) -> None:
    """One import's outcome: a summary line, then what needs the operator's eyes (updates,
    conflicts, unreadable items, warnings); a dry run shows every item and what it would do."""
    from rich.markup import escape
    from rich.text import Text

    from cli.output import plain_table

    verb = "would be filed" if r.dry_run else "filed"
    why = []
    if r.checked:
        why.append(f"{r.checked} checked item(s)")
    if len(r.skipped) > r.checked:
        why.append(f"{len(r.skipped) - r.checked} done, dropped or repeated")
    line = (
        f"{escape(r.path)}: {len(r.created)} {verb}"
        + (f" ({escape(_listed(r.created))})" if r.created and not r.dry_run else "")
        + (f", {len(r.updated)} updated ({_listed(r.updated)})" if r.updated else "")
        + f", {len(r.existing)} already in the backlog, {len(r.skipped)} skipped"
        + (f" ({', '.join(why)})" if why else "")
        + (f", [red]{len(r.conflicts)} conflict(s)[/red]" if r.conflicts else "")
        + (f", [yellow]{len(r.unreadable)} could not be read[/yellow]" if r.unreadable else "")
    )
    console().print(line)
    if r.dry_run:
        table = plain_table("line", "would", "key", "title", "why", overflow="fold")
        for p in r.items:
            what = {"file": "file", "update": "update", "same": "-", "backlog_newer": "-"}.get(
                p.action, p.action
            )
            detail = p.why or ", ".join(f"{f}" for f in p.changes)
            style = {"conflict": "red", "unreadable": "yellow", "update": "cyan"}.get(p.action, "")
            table.add_row(str(p.line), Text(what, style=style), p.key or "", p.title, detail)
        console().print(table)
        console().print("dry run: nothing was written")
        return
    for c in r.conflicts:
        console().print(Text(f"  conflict {c}", style="red"))
    for u in r.unreadable:
        console().print(Text(f"  not read: {u}", style="yellow"))
    for w in r.warnings[:20]:
        console().print(Text(f"  warning {w}", style="yellow"))


def export_todo_cmd(
    repo: Annotated[str, typer.Argument(help="Repo name.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help=f"Where to write ('-' = stdout; default the repo's {TODO_FILE})."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show the diff; write nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also rewrite keyed specs edited in the file since the last sync."
        ),
    ] = False,
) -> None:
    """Write a repo's tasks into its TODO.md, keeping everything a person wrote.

    Specs that carry a `key:` line are rewritten in place from the backlog (in their own shape:
    a heading spec stays one, a checklist item stays one); the repo's unfinished tasks the file
    does not hold are appended; every other line is kept byte for byte. A keyed spec edited in
    the file since the last sync is left as it is (import it first, or --force). The file an
    export replaces is kept next to it: TODO.md.orig the first time (your original), then
    TODO.md.orig.1, .2, …; ob never overwrites or deletes one.
    """
    from core.git.repos import Repos
    from core.git.todo import TodoFiles, repo_todo_file

    to_stdout = output is not None and str(output) == "-"

    async def main(b: Backlog) -> ExportResult:
        info = await Repos(b).get(repo)
        target = None if to_stdout else (output or repo_todo_file(info.path))
        if target is None and not to_stdout:
            fail(
                f"{repo} has no work tree ({info.path} is a bare repository), so no {TODO_FILE}"
                f" to write in place: `ob export-todo {repo} -o FILE`, or `-o -` for the"
                " standard output"
            )
        return await TodoFiles(b).export_file(repo, target, dry_run=dry_run, force=force)

    res = run_backlog(main)
    if to_stdout:
        print(res.text, end="")
        return
    if dry_run:
        print(res.diff, end="")
    for k in res.kept:
        err_console().print(f"[yellow]kept as written:[/yellow] {k}")
    if res.by_title:
        console().print(
            f"{len(res.by_title)} task(s) are in the file without their key (matched by title):"
            f" left as written ({_listed(res.by_title)}); add `key: OB-n` under one to let ob"
            " update it"
        )
    what = f"{len(res.rewritten)} rewritten, {len(res.appended)} appended" + (
        f" ({_listed(res.appended)})" if res.appended else ""
    )
    if not res.changed:  # owned specs written as they were: nothing was rewritten
        console().print(f"{res.path}: up to date, nothing to write")
    elif dry_run:
        console().print(f"{res.path}: would change ({what}); dry run, nothing written")
    else:
        kept = f"; the previous file is kept as {res.backup}" if res.backup else ""
        if res.backup and not res.backup.endswith(".orig"):
            kept += " (the earlier backups stay too, until you delete them)"
        console().print(f"wrote {res.path}: {what}{kept}", highlight=False)


def show_unverified(as_json: bool, limit: int) -> None:
    """Done tasks git has not confirmed (`ob list --unverified`)."""
    from rich.text import Text

    from cli.output import ago, plain_table
    from core.git.reconcile import Reconciler

    async def main(b: Backlog) -> UnverifiedReport:
        return await Reconciler(b).unverified(limit)

    report = run_backlog(main)
    items = report.items
    if as_json:
        print_json(items)
        return
    if not items:
        console().print("every completion is verified by git")
        return
    table = plain_table(
        "key", "repo", "title", "done by", "done", "commits", "evidence", overflow="fold"
    )
    for u in items:
        t = u.task
        table.add_row(
            Text(t.key + (" !" if u.flagged else ""), style="red" if u.flagged else ""),
            t.repo or "",
            t.title,
            t.completed_by or "",
            ago(t.completed_at),
            ", ".join(c[:10] for c in t.commits) or "-",
            u.evidence,
        )
    console().print(table)
    if report.flagged:
        console().print(
            f"[red]{report.flagged} flagged[/red]: unverified for more than {report.days} day(s)"
        )
    if report.total > len(items):
        console().print(f"{len(items)} of {report.total} shown; raise --limit to see more")


def register(app: typer.Typer) -> None:
    app.add_typer(repo_app, name="repo", rich_help_panel="Git")
    app.command("reconcile", rich_help_panel="Git")(reconcile_cmd)
    app.command("replan", rich_help_panel="Git")(replan_cmd)
    app.command("import-todo", rich_help_panel="Git")(import_todo_cmd)
    app.command("export-todo", rich_help_panel="Git")(export_todo_cmd)
