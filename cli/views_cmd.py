"""`ob digest` (the daily lane digest, from the same core data the bot sends) and `ob feed`
(recent events across the backlog, followed with -f)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import JsonOpt, console, print_json, run_backlog

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import RenderableType

    from core.backlog import Backlog
    from core.decisions import Pending
    from core.digest import Digest
    from core.feed import FeedItem


def digest(as_json: JsonOpt = False) -> None:
    """Today's lane digest: lanes, what waits for your decision (agents' questions, the
    decision lane, commits that say they close another repo's task), drafts, work in progress
    and done by agent, blocked chains, drifted plans, unverified completions, undelivered
    notices."""
    from core.digest import Digests

    d = run_backlog(lambda b: Digests(b).build())
    if as_json:
        print_json(d)
        return
    for part in digest_parts(d):
        console().print(part)


def digest_parts(d: Digest) -> list[RenderableType]:
    from rich.text import Text

    from cli.output import ago, plain_table

    def heading(title: str, total: int | None = None) -> Text:
        count = f": {total}" if total is not None else ""
        return Text(f"\n{title}{count}", style="bold")

    def items(rows: Sequence[tuple[str, ...]]) -> RenderableType:
        table = plain_table(overflow="fold")
        for _ in rows[0] if rows else ():
            table.add_column()
        table.show_header = False
        for row in rows:
            table.add_row("  " + row[0], *row[1:])
        return table

    out: list[RenderableType] = [
        Text(f"Daily lane digest · {d.built_at:%Y-%m-%d %H:%M} UTC", style="bold")
    ]
    lanes = [
        (
            load.lane.short if load.lane else "drafts",
            str(load.total),
            f"{load.claimed} claimed" if load.claimed else "",
            f"oldest {ago(load.oldest_at, d.built_at)}" if load.total and load.oldest_at else "",
        )
        for load in d.lanes
    ]
    out += [heading("Lanes"), items(lanes)]
    decide = d.decide
    if decide.total:
        out.append(
            heading("Waiting for your decision (questions, the decision lane)", decide.total)
        )
        out.append(items([_pending_row(p, d.built_at) for p in decide.items]))
    asks = d.cross_repo
    if asks.total:
        head = heading("Commits that say they close another repo's task", asks.total)
        head.append(" (ob cross-repo)")
        rows = [
            (str(a.id), a.key, a.title, a.repo, a.sha[:10], a.subject, ago(a.asked_at, d.built_at))
            for a in asks.items
        ]
        out += [head, items(rows)]
    aw = d.awaiting_approval
    out.append(heading("Awaiting approval", aw.total))
    if aw.items:
        out.append(items([(i.key, i.title, i.who or "", ago(i.at, d.built_at)) for i in aw.items]))
    if d.back_today.total:
        out.append(heading("Back today (snoozed until today)", d.back_today.total))
        out.append(
            items([(i.key, i.title, i.lane.short if i.lane else "") for i in d.back_today.items])
        )
    out.append(heading("In progress"))
    progress = [
        (agent, ", ".join(f"{i.key} (lease {ago(i.at, d.built_at)})" for i in held))
        for agent, held in d.in_progress.items()
    ]
    out.append(items(progress) if progress else Text("  nobody holds a task"))
    out.append(heading("Done in the last 24 h", d.done_24h_total))
    done = [
        (
            i.key,
            i.title,
            who,
            ", ".join(c[:10] for c in i.commits[:3]) or "no evidence",
            "verified" if i.verified else "unverified",
        )
        for who, finished in d.done_24h.items()
        for i in finished
    ]
    if done:
        out.append(items(done))
    if d.done_without_evidence:
        out.append(Text(f"  {d.done_without_evidence} completed without a commit", "yellow"))
    out.append(heading("Blocked", d.blocked.total))
    if d.blocked.items:
        out.append(
            items(
                [(i.key, i.title, "waits on " + ", ".join(i.blocked_by)) for i in d.blocked.items]
            )
        )
    out.append(heading("Drifted plans", d.drifted.total))
    if d.drifted.items:
        out.append(
            items(
                [
                    (p.key, p.title, f"{p.commits_since} commit(s) on {p.repo} since approval")
                    for p in d.drifted.items
                ]
            )
        )
    un = d.unverified
    flagged = f" ({un.flagged} for more than {un.days} day(s))" if un.flagged else ""
    out.append(heading(f"Unverified completions{flagged}", un.total))
    if un.items:
        out.append(
            items(
                [
                    (
                        ("! " if u.flagged else "") + u.task.key,
                        u.task.title,
                        u.task.completed_by or "",
                        u.evidence,
                    )
                    for u in un.items
                ]
            )
        )
    n = d.notices
    if n.dead:
        out.append(Text(f"\n{n.dead} notice(s) could not be delivered: ob outbox --dead", "red"))
    if n.pending:
        out.append(Text(f"\n{n.pending} notice(s) waiting, the oldest {ago(n.oldest_pending_at)}"))
    return out


def _pending_row(p: Pending, now: datetime) -> tuple[str, ...]:
    """A decision waiting for the operator: the task, the question or title, why it comes
    first (an agent waits on it, the work it releases), its age."""
    from cli.output import ago

    why = [f"{p.by} is waiting"] if p.agent_waiting else []
    if p.unblocks:
        why.append(f"unblocks {p.unblocks}")
    what = f"{p.question.ref}: {p.question.text}" if p.question is not None else p.title
    return (p.key, what, ", ".join(why), ago(p.at, now))


def feed(
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="What this agent did (or was done to).")
    ] = None,
    repo: Annotated[str | None, typer.Option("--repo", "-r", help="Only this repo.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, help="How many recent events.")
    ] = 30,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing events as they happen.")
    ] = False,
    heartbeats: Annotated[
        bool, typer.Option("--heartbeats", help="Include lease heartbeats.")
    ] = False,
    every: Annotated[
        float, typer.Option(min=0.2, max=60, help="With -f: seconds between looks.")
    ] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Recent events across the backlog: who did what to which task, oldest first (one JSON
    object per line with --json -f)."""
    import asyncio

    from core.feed import Feed, FeedFilter

    who = agent.strip().lower() if agent else None
    flt = FeedFilter(agent=who, repo=repo, heartbeats=heartbeats)

    async def main(b: Backlog) -> None:
        follower = await Feed(b).follow(flt) if follow else None
        shown = await Feed(b).recent(flt, limit)
        if as_json and not follow:
            print_json(shown)
            return
        if not shown and not follow:
            console().print("no events match")
        for item in shown:
            print_item(item, as_json)
        while follower is not None:
            await asyncio.sleep(every)
            for item in await follower.poll():
                print_item(item, as_json)

    run_backlog(main)


def print_item(item: FeedItem, as_json: bool) -> None:
    """One event on one line: when, who, what, which task, the details that say most."""
    if as_json:
        print(item.model_dump_json(), flush=True)
        return
    from rich.text import Text

    details = ", ".join(
        f"{k}={v}" for k, v in item.details.items() if v not in (None, "", [], {}) and k != "title"
    )
    line = Text(f"{item.at:%Y-%m-%d %H:%M:%S} ", style="dim")
    line.append(f"{item.actor} ", style="cyan")
    line.append(f"{item.kind} ", style="bold")
    if item.key:
        line.append(f"{item.key} {item.title or ''} ")
    line.append(details[:300], style="dim")
    console().print(line, soft_wrap=True)
