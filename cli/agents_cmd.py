"""`ob agent add|rotate|list|revoke` (operator) and `ob dep add|rm`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import JsonOpt, console, operator, print_json, run_backlog

if TYPE_CHECKING:
    from core.backlog import Backlog

agent_app = typer.Typer(help="Register agents and manage their tokens.", no_args_is_help=True)
dep_app = typer.Typer(help="Prerequisite links between tasks.", no_args_is_help=True)


@agent_app.command("add")
def agent_add(
    name: Annotated[str, typer.Argument(help="e.g. claude-code, codex, grok")],
    git_email: Annotated[
        list[str] | None,
        typer.Option("--git-email", help="Commit author email of this agent (repeat)."),
    ] = None,
) -> None:
    """Register an agent (or a revoked one again) and print its token (shown once; store it in
    the agent's env)."""

    from core.agents import Agents

    async def main(b: Backlog) -> None:
        info, token = await Agents(b).add(name, operator(), git_email)
        console().print(f"agent [bold]{info.name}[/bold] registered. Its token (shown only now):")
        print(token)
        console().print("give it to the agent as OB_AGENT_TOKEN; `ob agent revoke` withdraws it")

    run_backlog(main)


@agent_app.command("rotate")
def agent_rotate(name: str) -> None:
    """Give an agent a new token: the old one stops working at once; its leases are kept."""

    from core.agents import Agents

    async def main(b: Backlog) -> None:
        info, token = await Agents(b).rotate(name, operator())
        console().print(f"agent [bold]{info.name}[/bold] has a new token (shown only now):")
        print(token)
        console().print(
            "the old token no longer works; give this one to the agent as OB_AGENT_TOKEN "
            "(the tasks it holds stay its own)"
        )

    run_backlog(main)


@agent_app.command("list")
def agent_list(as_json: JsonOpt = False) -> None:
    """Agents, and which tasks each holds with lease time left."""

    from cli.output import ago, plain_table
    from core.agents import Agents

    async def main(b: Backlog) -> None:
        infos = await Agents(b).all()
        if as_json:
            print_json(infos)
            return
        table = plain_table("agent", "status", "holds", "lease left", "git emails")
        now = datetime.now(UTC)
        for a in infos:
            status = f"revoked {ago(a.revoked_at, now)}" if a.revoked_at else "active"
            holds = "\n".join(f"{h.key} {h.title[:40]}" for h in a.holding) or "-"
            left = "\n".join(ago(h.lease_expires_at, now) for h in a.holding)
            table.add_row(a.name, status, holds, left, ", ".join(a.git_emails))
        console().print(table if infos else "no agents yet; `ob agent add NAME` registers one")

    run_backlog(main)


@agent_app.command("revoke")
def agent_revoke(name: str) -> None:
    """Revoke an agent's token; the tasks it holds go back to the queue."""

    from core.agents import Agents

    async def main(b: Backlog) -> None:
        n = await Agents(b).revoke(name, operator())
        console().print(f"revoked {name}; {n} lease(s) returned to the queue")

    run_backlog(main)


@dep_app.command("add")
def dep_add(key: str, prerequisite: str) -> None:
    """KEY waits until PREREQUISITE is done."""

    from core.deps import Prerequisites

    async def main(b: Backlog) -> None:
        task = await Prerequisites(b).add(key, prerequisite, operator())
        console().print(
            f"{task.key} now waits on {', '.join(task.blocked_by) or 'nothing unfinished'}"
        )

    run_backlog(main)


@dep_app.command("rm")
def dep_rm(key: str, prerequisite: str) -> None:
    """Remove a prerequisite link."""

    from core.deps import Prerequisites

    async def main(b: Backlog) -> None:
        task = await Prerequisites(b).remove(key, prerequisite, operator())
        console().print(f"{task.key} no longer waits on {prerequisite.upper()}")

    run_backlog(main)
