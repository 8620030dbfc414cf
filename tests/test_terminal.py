"""The operator's terminal (issue 17), as a user runs it: real `ob` processes against a real
database. Repair verbs, bulk decisions, the inbox drain, the digest and the feed, and one clear
line for every mistake."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.backlog import Backlog
from core.db import create_pool
from core.leases import Lease, Leases
from core.migrate import migrate
from core.models import Actor, Lane, Status
from core.settings import load_settings
from core.spec import make_spec
from core.tasks import TaskFilter
from tests.test_cli import ob

Env = dict[str, str]
CODEX = Actor.agent("codex", 1)


def run(env: Env, cwd: Path, *args: str, stdin: str | None = None):
    return ob(*args, env=env, cwd=cwd, stdin=stdin)


async def arun(env: Env, cwd: Path, *args: str, stdin: str | None = None):
    return await asyncio.to_thread(ob, *args, env=env, cwd=cwd, stdin=stdin)


def test_repo_rm(cli_env: Env, tmp_path: Path, make_repo) -> None:
    repo = make_repo("web")
    repo.commit("init")
    assert run(cli_env, tmp_path, "repo", "add", str(repo.path)).returncode == 0
    assert run(cli_env, tmp_path, "add", "fix it", "-r", "web").returncode == 0
    r = run(cli_env, tmp_path, "repo", "rm", "web")
    assert r.returncode == 0, r.stderr
    assert "removed repo web" in r.stdout and "1 unfinished task(s) still name web" in r.stdout
    assert f"ob repo add {repo.path}" in r.stdout
    r = run(cli_env, tmp_path, "repo", "list")
    assert "no repos yet" in r.stdout
    r = run(cli_env, tmp_path, "repo", "rm", "web")
    assert r.returncode == 1 and r.stderr.strip() == (
        "error: no repo named 'web'; see `ob repo list`"
    )
    task = json.loads(run(cli_env, tmp_path, "show", "OB-1", "--json").stdout)
    assert task["repo"] == "web"


@pytest.fixture
async def cli_backlog(cli_env: Env) -> AsyncIterator[Backlog]:
    """The backlog of the `ob` process's database, for what an agent would have done."""
    url = cli_env["OB_DATABASE_URL"]
    await migrate(url)
    pool = await create_pool(url, max_size=4)
    yield Backlog(pool, load_settings(database_url=url, _env_file=None))
    await pool.close()


async def drafts(backlog: Backlog, *specs: dict) -> None:
    for spec in specs:
        await backlog.file(make_spec(**spec), CODEX)


async def test_bulk_decisions_say_where_each_went(
    cli_env: Env, cli_backlog: Backlog, tmp_path: Path
) -> None:
    await drafts(
        cli_backlog,
        {"title": "bump a pin", "lane": "autonomous"},
        {"title": "rotate the credentials", "lane": "autonomous", "priority": "P0"},
        {"title": "an idea"},
        {"title": "another idea"},
    )
    r = await arun(cli_env, tmp_path, "approve", "OB-1", "OB-3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "approved OB-1 into autonomous_safe (the lane codex suggested; --lane chooses)",
        "approved OB-3 into requires_triage (no lane was suggested; --lane chooses)",
    ]
    r = await arun(cli_env, tmp_path, "approve", "OB-2")
    assert r.returncode == 1 and "OB-2 is P0 and codex suggests autonomous_safe" in r.stderr
    r = await arun(cli_env, tmp_path, "approve", "OB-1", "OB-2", "--lane", "decision")
    assert r.returncode == 1
    assert r.stdout.strip() == "approved OB-2 into requires_decision"
    assert "cannot approve OB-1: it is already approved" in r.stderr
    r = await arun(cli_env, tmp_path, "reject", "OB-4", "OB-3", "-m", "dup", "--json")
    assert r.returncode == 0, r.stderr
    assert [(t["key"], t["status"], t["rejected_reason"]) for t in json.loads(r.stdout)] == [
        ("OB-4", "rejected", "dup"),
        ("OB-3", "rejected", "dup"),
    ]
    r = await arun(cli_env, tmp_path, "reopen", "OB-4", "-m", "wanted after all")
    assert r.returncode == 0, r.stderr
    assert "reopened OB-4: a draft again; approve it with `ob approve OB-4 --lane LANE`" in r.stdout
    r = await arun(cli_env, tmp_path, "reopen", "OB-1")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "error: cannot reopen OB-1: it is open; only done and rejected tasks reopen"
    )


async def claimed_by_codex(backlog: Backlog, title: str) -> tuple[Actor, Lease]:
    """A task the operator filed into autonomous_safe, claimed by the agent codex."""
    from core.agents import Agents

    op = Actor.operator("cli")
    await backlog.file(make_spec(title=title), op, lane=Lane.AUTONOMOUS)
    _, token = await Agents(backlog).add("codex", op)
    codex = await Agents(backlog).authenticate(token)
    lease = await Leases(backlog).claim(codex)
    assert lease is not None and lease.task.title == title
    return codex, lease


async def test_rejecting_a_prerequisite_says_which_tasks_came_back(
    cli_env: Env, cli_backlog: Backlog, tmp_path: Path
) -> None:
    from core.deps import Prerequisites

    op = Actor.operator("cli")
    await claimed_by_codex(cli_backlog, "ship the report")
    await cli_backlog.file(make_spec(title="also waits"), op, lane=Lane.DECISION)
    await cli_backlog.file(make_spec(title="get access"), op, lane=Lane.TRIAGE)
    await cli_backlog.file(make_spec(title="unrelated"), op, lane=Lane.TRIAGE)
    for key in ("OB-1", "OB-2"):
        await Prerequisites(cli_backlog).add(key, "OB-3", op)
    r = await arun(cli_env, tmp_path, "reject", "OB-3", "-m", "no access")
    assert r.returncode == 0, r.stderr
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert lines[0] == "rejected OB-3; 2 task(s) waited on it and come back to you:"
    assert lines[1] == (
        "OB-1 ship the report: moved from autonomous_safe to requires_decision"
        " (codex's lease on it ended)"
    )
    assert lines[2] == "OB-2 also waits: stays in requires_decision"
    assert "`ob dep rm OB-1 OB-3`" in r.stdout and "`ob reopen OB-3`" in r.stdout
    assert (await cli_backlog.get("OB-1")).lane is Lane.DECISION

    # JSON: the rejected task, and the tasks handed back
    await Prerequisites(cli_backlog).add("OB-1", "OB-4", op)
    r = await arun(cli_env, tmp_path, "reject", "OB-4", "--json")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["key"] == "OB-4" and answer["status"] == "rejected"
    (back,) = answer["handed_back"]
    assert (back["key"], back["from_lane"], back["lane"], back["moved"]) == (
        "OB-1",
        "requires_decision",
        "requires_decision",
        False,
    )


async def test_show_says_which_questions_wait_for_an_answer(
    cli_env: Env, cli_backlog: Backlog, tmp_path: Path
) -> None:
    from core.questions import Questions

    codex, lease = await claimed_by_codex(cli_backlog, "a session cache")
    await Questions(cli_backlog).ask(
        "OB-1", codex, lease.epoch, "Redis or Postgres?", ["redis", "pg"]
    )
    r = await arun(cli_env, tmp_path, "show", "OB-1")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())
    assert "open question Q1 from codex" in said and "Redis or Postgres?" in said, said
    assert "1. redis / 2. pg" in said and "ob answer Q1" in said
    assert "lease ended" not in said  # codex holds the task and may be waiting for it

    # the lease ends with the question open: the card says why the task waits in decision
    await Leases(cli_backlog).release("OB-1", codex, lease.epoch, "need an answer")
    r = await arun(cli_env, tmp_path, "show", "OB-1")
    said = " ".join(r.stdout.split())
    assert "lane requires_decision" in said
    assert "codex's lease ended before an answer, so it waits in requires_decision" in said, said
    assert "your answer sends it back to autonomous_safe" in said
    r = await arun(cli_env, tmp_path, "show", "OB-1", "--json")
    shown = json.loads(r.stdout)
    assert shown["key"] == "OB-1" and shown["lane"] == "requires_decision"
    (q,) = shown["open_questions"]
    assert (q["id"], q["asked_by"], q["text"], q["options"], q["status"]) == (
        1,
        "agent:codex",
        "Redis or Postgres?",
        ["redis", "pg"],
        "pending",
    )
    assert q["left_open_at"] is not None and q["answer_with"] == "ob answer Q1 TEXT"
    said = " ".join((await arun(cli_env, tmp_path, "digest")).stdout.split())
    assert "Waiting for your decision (questions, the decision lane): 1" in said
    assert "OB-1 Q1: Redis or Postgres?" in said

    assert (await arun(cli_env, tmp_path, "answer", "Q1", "2")).returncode == 0
    r = await arun(cli_env, tmp_path, "show", "OB-1")
    assert "open question" not in r.stdout and "Decision: pg" in " ".join(r.stdout.split())
    assert (
        json.loads((await arun(cli_env, tmp_path, "show", "OB-1", "--json")).stdout)[
            "open_questions"
        ]
        == []
    )


async def test_cross_repo_closes_are_decided_from_the_terminal(
    cli_env: Env, cli_backlog: Backlog, tmp_path: Path, make_repo
) -> None:
    from core.git.reconcile import Reconciler
    from tests.test_git_remotes import ingest_and_web

    _, web = await ingest_and_web(cli_backlog, make_repo)
    op = Actor.operator("cli")
    for title in ("pool exhaustion", "retry storms", "slow queries"):
        await cli_backlog.file(make_spec(title=title, repo="nexus-ingest"), op, lane=Lane.TRIAGE)
    rec = Reconciler(cli_backlog)
    await rec.run()
    sha = web.commit("Client retries\n\nCloses OB-1\nFixes OB-2\nResolves OB-3\n")
    await rec.run()
    assert (await cli_backlog.get("OB-1")).status is Status.OPEN  # nothing closed by itself

    r = await arun(cli_env, tmp_path, "cross-repo")
    assert r.returncode == 0, r.stderr
    rows = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert "3 commit(s) in one repo say they close another repo's task:" in rows[0]
    for n, title in ((1, "pool exhaustion"), (2, "retry storms"), (3, "slow queries")):
        assert any(
            row.startswith(f"{n} OB-{n} {title} nexus-ingest web {sha[:10]} Client retries")
            for row in rows
        ), rows
    assert "`ob cross-repo close ID`" in r.stdout and "`ob cross-repo ignore ID`" in r.stdout

    r = await arun(cli_env, tmp_path, "cross-repo", "close", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"closed OB-1 with commit {sha[:10]} in web as its evidence"
    task = await cli_backlog.get("OB-1")
    assert task.status is Status.DONE and task.verified_at is not None and task.commits == [sha]
    assert (await cli_backlog.history("OB-1"))[-1].actor == "operator:cli"
    r = await arun(cli_env, tmp_path, "cross-repo", "ignore", "OB-2")  # by its task's key
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"ignored commit {sha[:10]} in web: OB-2 stays as it is"
    assert (await cli_backlog.get("OB-2")).status is Status.OPEN
    r = await arun(cli_env, tmp_path, "cross-repo", "close", "1")
    assert r.returncode == 1 and "OB-1: already closed by operator:cli" in r.stderr
    r = await arun(cli_env, tmp_path, "cross-repo", "close", "OB-2")
    assert r.returncode == 1
    assert "OB-2 has no commit of another repo waiting for your decision" in r.stderr
    r = await arun(cli_env, tmp_path, "cross-repo", "ignore", "99")
    assert r.returncode == 1 and "no cross-repo close #99" in r.stderr

    # the one left is in the digest too, and in --json
    r = await arun(cli_env, tmp_path, "digest")
    said = " ".join(r.stdout.split())
    assert "Commits that say they close another repo's task: 1 (ob cross-repo)" in said, said
    assert f"3 OB-3 slow queries web {sha[:10]} Client retries" in said
    (left,) = json.loads((await arun(cli_env, tmp_path, "cross-repo", "--json")).stdout)
    assert (left["id"], left["key"], left["repo"], left["sha"], left["decision"]) == (
        3,
        "OB-3",
        "web",
        sha,
        None,
    )
    # git decides: a reverted commit closes nothing
    web.git("revert", "--no-edit", sha)
    await rec.run()
    r = await arun(cli_env, tmp_path, "cross-repo", "close", "3")
    assert r.returncode == 1 and "was reverted by" in r.stderr
    assert (await cli_backlog.get("OB-3")).status is Status.OPEN
    r = await arun(cli_env, tmp_path, "cross-repo", "ignore", "3")
    assert r.returncode == 0, r.stderr
    r = await arun(cli_env, tmp_path, "cross-repo")
    assert r.stdout.strip() == "no commit of one repo waits to close another repo's task"


async def test_inbox_walks_the_drafts_one_key_per_decision(
    cli_env: Env, cli_backlog: Backlog, tmp_path: Path
) -> None:
    await drafts(
        cli_backlog,
        {"title": "Add retries", "lane": "autonomous"},
        {"title": "add retries"},
        {"title": "Cache the embeddings", "priority": "P0"},
        {"title": "Drop the old API"},
        {"title": "Write the docs"},
    )
    keys = "a\nx\nz\nm\nnot wanted now\ns\nq\n"
    r = await arun(cli_env, tmp_path, "inbox", stdin=keys)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "card 1 of 5" in out and "card 5 of 5" in out
    assert "→ approved OB-1 into autonomous_safe" in out
    assert "likely a duplicate of OB-1 Add retries (open)" in out
    assert "x dup of OB-1" in out
    assert "→ rejected OB-2: duplicate of OB-1" in out
    assert "unknown key 'z'" in out
    assert "→ rejected OB-3" in out
    assert out.rstrip().endswith("inbox: 1 approved, 2 rejected, 1 skipped; 1 left for next time")
    tasks = {t.key: t for t in await cli_backlog.list(TaskFilter(include_closed=True))}
    assert tasks["OB-1"].lane is Lane.AUTONOMOUS and tasks["OB-1"].status is Status.OPEN
    assert tasks["OB-2"].rejected_reason == "duplicate of OB-1"
    assert tasks["OB-3"].rejected_reason == "not wanted now"
    assert tasks["OB-4"].status is Status.DRAFT and tasks["OB-5"].status is Status.DRAFT

    r = await arun(cli_env, tmp_path, "inbox", stdin="")  # the end of the input stops it
    assert r.returncode == 0 and "card 1 of 2" in r.stdout and "2 left for next time" in r.stdout


async def test_digest_and_feed_in_the_terminal(
    cli_env: Env, cli_backlog: Backlog, tmp_path: Path
) -> None:
    await drafts(cli_backlog, {"title": "an agent idea", "repo": "web"})
    await cli_backlog.file(make_spec(title="ours", repo="api"), Actor.operator("cli"))
    r = await arun(cli_env, tmp_path, "digest")
    assert r.returncode == 0, r.stderr
    assert "Daily lane digest" in r.stdout and "Awaiting approval: 1" in r.stdout
    assert "OB-1" in r.stdout and "an agent idea" in r.stdout and "nobody holds a task" in r.stdout
    r = await arun(cli_env, tmp_path, "digest", "--json")
    data = json.loads(r.stdout)
    assert data["awaiting_approval"]["total"] == 1
    assert {lane["lane"]: lane["total"] for lane in data["lanes"]}["requires_triage"] == 1

    r = await arun(cli_env, tmp_path, "feed", "--agent", "codex")
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    assert "agent:codex filed OB-1 an agent idea" in line
    r = await arun(cli_env, tmp_path, "feed", "--repo", "api", "--json")
    assert [(e["kind"], e["key"]) for e in json.loads(r.stdout)] == [("filed", "OB-2")]

    follow = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "feed",
        "-f",
        "--json",
        "--every",
        "0.2",
        "--agent",
        "codex",
        env=cli_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert follow.stdout is not None
        first = json.loads(await asyncio.wait_for(follow.stdout.readline(), 30))
        assert first["kind"] == "filed" and first["key"] == "OB-1"  # the recent ones first
        await cli_backlog.approve("OB-1", Actor.operator("cli"), Lane.AUTONOMOUS)
        await drafts(cli_backlog, {"title": "a second idea"})
        new = json.loads(await asyncio.wait_for(follow.stdout.readline(), 30))
        assert (new["kind"], new["key"], new["actor"]) == ("filed", "OB-3", "agent:codex")
    finally:
        follow.terminate()
        await follow.wait()


async def test_append_a_step_and_see_what_is_snoozed(cli_env: Env, tmp_path: Path) -> None:
    r = await arun(cli_env, tmp_path, "add", "plan it", "-s", "measure")
    assert r.returncode == 0, r.stderr
    r = await arun(cli_env, tmp_path, "edit", "OB-1", "--add-step", "tune", "-S", "measure again")
    assert r.returncode == 0 and "edited OB-1: steps 1 → 3" in r.stdout
    r = await arun(cli_env, tmp_path, "spec", "OB-1")
    assert "- measure\n- tune\n- measure again\n" in r.stdout
    await arun(cli_env, tmp_path, "add", "later", "--trigger-on", "2999-01-01")
    r = await arun(cli_env, tmp_path, "list")
    (row,) = [line for line in r.stdout.splitlines() if line.startswith("OB-2")]
    assert "snoozed" in row and "until 2999-01-01" in row
    (row,) = [line for line in r.stdout.splitlines() if line.startswith("OB-1")]
    assert "open" in row
    r = await arun(cli_env, tmp_path, "show", "OB-2")
    assert "snoozed until 2999-01-01" in r.stdout


async def test_edit_refuses_another_tasks_spec(cli_env: Env, tmp_path: Path) -> None:
    for title in ("thirty-two", "thirty-three"):
        assert (await arun(cli_env, tmp_path, "add", title)).returncode == 0
    spec = (await arun(cli_env, tmp_path, "spec", "OB-1")).stdout
    (tmp_path / "s.txt").write_text(spec)
    r = await arun(cli_env, tmp_path, "edit", "OB-2", "-f", str(tmp_path / "s.txt"))
    assert r.returncode == 1 and r.stderr.splitlines() == [
        "error: the spec is OB-1's (key: OB-1); you are editing OB-2: edit OB-1 instead, or "
        "remove the key line"
    ]
    (tmp_path / "s.txt").write_text(spec.replace("lane: requires_triage", "lane: decision"))
    r = await arun(cli_env, tmp_path, "edit", "OB-1", "-f", str(tmp_path / "s.txt"))
    assert r.returncode == 1 and "`ob lane OB-1 decision`" in r.stderr
    assert json.loads((await arun(cli_env, tmp_path, "show", "OB-2", "--json")).stdout)[
        "title"
    ] == ("thirty-three")


async def test_bytes_that_are_not_utf8_are_said_to_be_so(cli_env: Env, tmp_path: Path) -> None:
    r = await arun(cli_env, tmp_path, "add", "caf\udcff")  # the shell passed b"caf\xff"
    assert r.returncode == 1 and r.stderr.splitlines() == [
        "error: argument 2 is not UTF-8 text ('caf\\xff'); ob reads its command line as UTF-8 "
        "(check the terminal's encoding, or LANG)"
    ]
    (tmp_path / "latin1.txt").write_bytes("Café au lait\nsteps:\n- öffnen\n".encode("latin-1"))
    r = await arun(cli_env, tmp_path, "add", "-f", str(tmp_path / "latin1.txt"))
    assert r.returncode == 1 and r.stderr.splitlines() == [
        f"error: {tmp_path / 'latin1.txt'} is not UTF-8 text (byte 0xe9 on line 1); save it as "
        "UTF-8"
    ]
    r = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", "add", "-f", "-"],
        env=cli_env,
        cwd=tmp_path,
        input=b"x\xff\n",
        capture_output=True,
    )
    assert r.returncode == 1 and r.stderr.decode().splitlines() == [
        "error: the standard input is not UTF-8 text (byte 0xff on line 1); save it as UTF-8"
    ]
    r = await arun(cli_env, tmp_path, "list", "--json")
    assert json.loads(r.stdout) == []


async def test_list_options_out_of_range_are_one_clear_line(cli_env: Env, tmp_path: Path) -> None:
    r = await arun(cli_env, tmp_path, "list", "--limit", "100000")
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["error: --limit must be between 1 and 10,000 (got 100,000)"]
    r = await arun(cli_env, tmp_path, "list", "-r", "not a repo")
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["error: repo: 'not a repo' is not a repository name"]
    r = await arun(cli_env, tmp_path, "list", "--unverified", "--limit", "0")
    assert r.returncode == 1 and "--limit must be between 1 and 10,000" in r.stderr


async def test_a_repo_nobody_registered_is_warned_about(
    cli_env: Env, tmp_path: Path, make_repo
) -> None:
    repo = make_repo("nexus-ingest")
    repo.commit("init")
    assert (await arun(cli_env, tmp_path, "repo", "add", str(repo.path))).returncode == 0
    r = await arun(cli_env, tmp_path, "add", "Migrate the workers", "-r", "nexus-ingst")
    assert r.returncode == 0 and "filed OB-1" in r.stdout  # filed all the same
    assert r.stderr.splitlines() == [
        "warning: no repo named 'nexus-ingst' is registered (did you mean nexus-ingest?): git "
        "will not verify OB-1 or show its drift; `ob edit OB-1 -r NAME` fixes the name, "
        "`ob repo add PATH` registers it"
    ]
    r = await arun(cli_env, tmp_path, "edit", "OB-1", "-r", "nexus-ingest")
    assert r.returncode == 0 and r.stderr == ""
    r = await arun(cli_env, tmp_path, "edit", "OB-1", "-r", "web")
    assert "warning: no repo named 'web' is registered:" in r.stderr
    r = await arun(cli_env, tmp_path, "add", "no repo at all")
    assert r.returncode == 0 and r.stderr == ""
