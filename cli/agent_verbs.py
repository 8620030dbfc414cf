"""Agent verbs: `ob next`, `ob heartbeat`, `ob done`, `ob release`, `ob handoff`, `ob file`,
`ob findings`, `ob ask`, `ob wait-answer`. They call the gateway (OB_URL) with the agent's token
(OB_AGENT_TOKEN); the agent's identity comes from the token, never from a flag."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.app import JsonOpt, KeyArg, console, fail, print_json, read_text, settings

if TYPE_CHECKING:
    from cli.gateway_client import GatewayClient

EpochOpt = Annotated[
    int | None,
    typer.Option("--epoch", help="Lease epoch (default: the one `ob next` got on this machine)."),
]
SpecFile = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="A spec in the text form from a file ('-' = stdin)."),
]


WaitOpt = Annotated[
    int,
    typer.Option(
        "--wait",
        "-w",
        min=0,
        help="Seconds to wait (the gateway is asked again every minute until then).",
    ),
]


def register(app: typer.Typer) -> None:
    panel = "Agent verbs (via the gateway)"
    for fn in (next_, heartbeat, done, release, handoff, file, findings, ask):
        app.command(fn.__name__.rstrip("_"), rich_help_panel=panel)(fn)
    app.command("wait-answer", rich_help_panel=panel)(wait_answer)


def _client() -> GatewayClient:
    from cli.gateway_client import GatewayClient, GatewayError

    try:
        return GatewayClient(settings())
    except GatewayError as err:
        fail(str(err), 2)


def _call(
    client: GatewayClient,
    as_json: bool,
    method: str,
    path: str,
    body: Any = None,
    *,
    waits: int = 0,
) -> Any:
    from cli.gateway_client import GatewayError

    try:
        return client.call(method, path, body, waits=waits)
    except GatewayError as err:
        if as_json:
            print(json.dumps({"status": err.status, **err.body}, indent=2))
        else:
            fail(str(err), 1)
        raise typer.Exit(4 if err.status == 409 else 1) from None


def _epoch(client: GatewayClient, key: str, epoch: int | None) -> int:
    from cli.gateway_client import GatewayError

    if epoch is not None:
        return epoch
    try:
        known = client.remembered_epoch(key)
    except GatewayError as err:
        fail(str(err))
    if known is None:
        fail(f"no lease on {key.upper()} remembered here; pass --epoch N (from `ob next`)")
    return known


def _fenced(
    key: str,
    action: str,
    epoch: int | None,
    as_json: bool,
    *,
    ends_lease: bool = True,
    **body: Any,
) -> Any:
    """A write to a task you hold: presents the given epoch, else the one `ob next` remembered,
    and forgets it once the write ends the lease."""
    client = _client()
    path = f"/v1/tasks/{key}/{action}"
    res = _call(client, as_json, "POST", path, {"epoch": _epoch(client, key, epoch), **body})
    if ends_lease:
        client.epochs.forget(key)
    return res


def _show(res: Any, as_json: bool, text: str) -> None:
    if as_json:
        print_json(res)
        return
    replayed = isinstance(res, dict) and (
        res.get("replayed") or (res.get("task") or {}).get("replayed")
    )
    console().print(text + (" (a retry: this had gone through already)" if replayed else ""))


def _spec_body(
    title: str | None,
    spec_file: Path | None,
    steps: list[str] | None,
    repo: str | None,
    lane: str | None,
) -> dict[str, Any]:
    if spec_file is not None:
        return {"text": read_text(spec_file)}
    if not title:
        fail("give a title, or a spec with --file")
    return {"spec": {"title": title, "steps": steps or [], "repo": repo, "lane": lane}}


def _waiting(seconds: int, ask: Callable[[int], Any], done: Callable[[Any], bool]) -> Any:
    """`ask(wait)` with waits the gateway allows, again and again until `done(answer)` or
    `seconds` are used up; the last answer."""
    from core.models import MAX_WAIT_SECONDS

    deadline = time.monotonic() + seconds
    while True:
        left = max(0, math.ceil(deadline - time.monotonic()))
        answer = ask(min(left, MAX_WAIT_SECONDS))
        if done(answer) or left <= MAX_WAIT_SECONDS:
            return answer


def next_(
    repo: Annotated[
        list[str] | None, typer.Option("--repo", "-r", help="Only these repos (repeat).")
    ] = None,
    lease: Annotated[
        int | None, typer.Option("--lease", help="Lease seconds (default OB_LEASE_TTL).")
    ] = None,
    wait: WaitOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Claim the best ready task and a lease on it (--wait N: wait for one).

    With --wait, the claim waits for a task to become ready (approved, unblocked, released, a
    lease expired) instead of answering that nothing is ready."""
    client = _client()
    body = {"repos": repo or None, "lease_seconds": lease}

    def claim(seconds: int) -> Any:
        return _call(
            client, as_json, "POST", "/v1/claim", {**body, "wait_seconds": seconds}, waits=seconds
        )

    res = _waiting(wait, claim, lambda r: r["lease"] is not None)
    if res["lease"]:
        got = res["lease"]
        client.epochs.remember(got["key"], got["epoch"], got["task"]["lease_holder"])
    if as_json:
        print_json(res)
        return
    if not res["lease"]:
        console().print(res["message"])
        return
    task = res["lease"]["task"]
    console().print(
        f"[bold]{task['key']}[/bold] {task['title']}  (epoch {res['lease']['epoch']}, "
        f"lane {task['lane']})"
    )
    for i, step in enumerate(task["steps"], 1):
        console().print(f"  {i}. {step}")
    print_drift(res["lease"].get("drift"))
    console().print(res["message"])


def print_drift(drift: dict[str, Any] | None) -> None:
    """What moved on the default branch since the plan was approved: re-check before acting
    (and how fresh that is: the last fetch of the repo's remote)."""
    if not drift:
        return
    if "error" in drift:
        console().print(f"[yellow]drift unknown:[/yellow] {drift['error']}")
        return
    if drift.get("fetched_at"):
        from datetime import datetime

        from cli.output import ago

        fetched = ago(datetime.fromisoformat(drift["fetched_at"]))
        console().print(f"[dim]as of the last fetch of {drift.get('repo')}, {fetched}[/dim]")
    if drift.get("base_left_branch"):
        console().print(
            f"[yellow]{drift.get('warning') or 'the plan base left the branch'}[/yellow]"
        )
        return
    n = drift.get("commits_since", 0)
    if not n and not drift.get("already_referenced"):
        console().print(
            f"plan is current with {drift.get('repo')} (no commits since it was approved)"
        )
        return
    if n:
        console().print(
            f"[yellow]{n} commit(s) on {drift.get('repo')} since the plan was approved:[/yellow]"
        )
    else:
        console().print(f"no commits on {drift.get('repo')} since the plan was approved")
    for subject in drift.get("subjects", []):
        console().print(f"  {subject}", highlight=False)
    if drift.get("files_in_steps"):
        console().print(f"  files your steps name changed: {', '.join(drift['files_in_steps'])}")
    if drift.get("already_referenced"):
        here = (None, drift.get("repo"))
        mentions = dict.fromkeys(  # in order, each once (two clones of one history: once)
            r["sha"][:10] + ("" if r.get("repo") in here else f" ({r['repo']})")
            for r in drift.get("references", [])
        )
        console().print(
            f"[yellow]commits already mention this task:[/yellow] {', '.join(mentions)}"
        )


def heartbeat(key: KeyArg, epoch: EpochOpt = None, as_json: JsonOpt = False) -> None:
    """Extend your lease on a task."""
    res = _fenced(key, "heartbeat", epoch, as_json, ends_lease=False)
    _show(res, as_json, f"lease on {res['key']} extended to {res['lease_expires_at']}")


def done(
    key: KeyArg,
    commit: Annotated[
        list[str] | None, typer.Option("--commit", "-c", help="Commit SHA (repeat).")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", "-m")] = None,
    epoch: EpochOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Complete a task (unverified until git shows the commits on the default branch)."""
    res = _fenced(key, "complete", epoch, as_json, commits=commit or [], note=note)
    closed_by = res.get("already_closed_by")
    if closed_by:
        check = "verified" if res.get("verified_at") else "unverified"
        _show(
            res,
            as_json,
            f"{res['key']} was already closed by commit {closed_by[:10]} ({check}); your note"
            " and commits are recorded",
        )
        return
    _show(res, as_json, f"{res['key']} done (unverified until git confirms)")


def release(
    key: KeyArg,
    reason: Annotated[str | None, typer.Option("--reason", "-m")] = None,
    epoch: EpochOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a task back to the queue unfinished."""
    res = _fenced(key, "release", epoch, as_json, reason=reason)
    _show(res, as_json, f"released {res['key']}")


def handoff(
    key: KeyArg,
    title: Annotated[
        str | None, typer.Option("--title", "-t", help="The prerequisite's title.")
    ] = None,
    step: Annotated[list[str] | None, typer.Option("--step", "-s", help="A step (repeat).")] = None,
    spec_file: SpecFile = None,
    reason: Annotated[
        str | None, typer.Option("--reason", "-m", help="Why the task cannot go on.")
    ] = None,
    epoch: EpochOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """File a prerequisite for your task and give the task back, in one step."""
    prerequisite = _spec_body(title, spec_file, step, None, None)
    res = _fenced(key, "handoff", epoch, as_json, reason=reason, prerequisite=prerequisite)
    p = res["prerequisite"]
    _show(
        res, as_json, f"handed off {res['task']['key']}: it now waits on {p['key']} ({p['status']})"
    )


def file(
    title: Annotated[str | None, typer.Argument(show_default=False)] = None,
    repo: Annotated[str | None, typer.Option("--repo", "-r")] = None,
    lane: Annotated[str | None, typer.Option("--lane", "-l", help="Suggested lane.")] = None,
    step: Annotated[list[str] | None, typer.Option("--step", "-s")] = None,
    spec_file: SpecFile = None,
    as_json: JsonOpt = False,
) -> None:
    """File a task as an agent: it is a draft until the operator approves it."""
    client = _client()
    res = _call(
        client, as_json, "POST", "/v1/tasks", _spec_body(title, spec_file, step, repo, lane)
    )
    _show(res, as_json, f"filed {res['key']} as a draft for the operator")


def findings(
    key: KeyArg,
    text: Annotated[str | None, typer.Argument(help="What you found ('-' = stdin).")] = None,
    epoch: EpochOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Finish an investigation with findings; the operator decides what happens next."""
    if text is None or text == "-":
        text = read_text(Path("-"))
    res = _fenced(key, "findings", epoch, as_json, text=text)
    _show(res, as_json, f"{res['key']} moved to requires_decision with your findings")


def _question_line(q: dict[str, Any]) -> str:
    if q["status"] == "answered":
        return f"Q{q['id']} ({q['key']}) answered by {q['answered_by']}: {q['answer']}"
    if q["task_status"] in ("done", "rejected"):
        return f"Q{q['id']}: {q['key']} is {q['task_status']}; no answer is coming"
    return (
        f"Q{q['id']} ({q['key']}) is not answered yet; wait on with "
        f"`ob wait-answer {q['id']} --wait 600` (waiting keeps your lease)"
    )


def _await_answer(client: GatewayClient, as_json: bool, qid: int, seconds: int) -> Any:
    def look(wait: int) -> Any:
        return _call(client, as_json, "GET", f"/v1/questions/{qid}?wait={wait}", waits=wait)

    return _waiting(seconds, look, lambda q: q["status"] == "answered")


def ask(
    key: KeyArg,
    text: Annotated[str, typer.Argument(help="The question, in a sentence.", show_default=False)],
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="An answer you expect: one button each (repeat)."),
    ] = None,
    wait: WaitOpt = 0,
    epoch: EpochOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the operator to decide something about a task you hold.

    ob ask OB-12 "Redis or Postgres for this cache?" -o redis -o postgres --wait 600

    With --wait, wait for the answer (waiting keeps your lease). The answer is also written
    into the task's notes."""
    client = _client()
    body = {"epoch": _epoch(client, key, epoch), "text": text, "options": option or []}
    q = _call(client, as_json, "POST", f"/v1/tasks/{key}/questions", body)
    if wait:
        q = _await_answer(client, as_json, q["id"], wait)
    if as_json:
        print_json(q)
    elif q["status"] == "pending" and not wait:
        console().print(
            f"asked Q{q['id']} about {q['key']}; wait for the answer with "
            f"`ob wait-answer {q['id']} --wait 600`"
        )
    else:
        console().print(_question_line(q), highlight=False)


def wait_answer(
    question: Annotated[int, typer.Argument(help="The question's id (from `ob ask`).", min=1)],
    wait: WaitOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """The answer to a question you asked (--wait N: wait for it, keeping your lease)."""
    q = _await_answer(_client(), as_json, question, wait)
    if as_json:
        print_json(q)
    else:
        console().print(_question_line(q), highlight=False)
