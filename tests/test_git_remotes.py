"""Planning against the truth (issue 15): ob fetches the remotes before it reads, the drift is
read from git at claim time, a commit closes only tasks of its own repo, the holder's late
`done` is accepted, empty and shallow repositories are read right. Real git everywhere: a bare
"origin" in a temp dir, the operator's clone registered with ob, an agent's clone that pushes.
"""

from __future__ import annotations

import asyncpg

from core.backlog import Backlog
from core.git.reconcile import Reconciler
from core.git.repos import add_repo, list_repos
from core.leases import Leases
from core.models import Lane, Status
from core.spec import make_spec
from tests.filing import OP, file, kinds
from tests.test_git_helpers import GitRepo


async def scan(rec: Reconciler, **kw):
    summary = await rec.run(**kw)
    assert not summary.errors, [r.error for r in summary.errors]
    return summary


def seeded(make_forge, name: str = "svc"):
    """An origin with one commit, the operator's clone and an agent's clone."""
    forge = make_forge(name)
    agent = forge.clone("agent")
    agent.commit("init", files={"ingest/writer.py": "v1\n"})
    agent.git("push", "-q", "origin", "main")
    mine = forge.clone("operator")
    return forge, mine, agent


# ------------------------------------------------------------- 1. ob fetches before it reads


async def test_a_pushed_closing_commit_closes_without_a_manual_fetch(
    backlog: Backlog, pool: asyncpg.Pool, make_forge
) -> None:
    forge, mine, agent = seeded(make_forge)
    await add_repo(backlog, mine.path, OP, name="svc")
    key = await file(backlog, "batch inserts", repo="svc")
    rec = Reconciler(backlog)
    await scan(rec)
    sha = agent.commit(f"Batch the inserts\n\nCloses {key}\n")
    agent.git("push", "-q", "origin", "main")

    (res,) = (await scan(rec)).repos
    assert res.fetched and res.fetch_error is None
    assert res.closed == 1
    task = await backlog.get(key)
    assert task.status is Status.DONE and task.verified_at is not None and task.commits == [sha]
    # the work tree was not touched: no pull, no merge, no checkout
    assert mine.head() != sha
    assert mine.git("status", "--porcelain") == ""
    (info,) = await list_repos(backlog)
    assert info.last_fetch_at is not None and info.fetch_error is None
    assert info.commits_seen == 2


# ------------------------------------------------------- 2. the drift is read at claim time


async def test_the_claim_reads_the_drift_from_git_not_from_the_last_reconcile(
    backlog: Backlog, leases: Leases, make_repo, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    repo = make_repo("nexus-ingest")
    repo.commit("init", files={"ingest/writer.py": "v1\n"})
    await add_repo(backlog, repo.path, OP)
    await scan(Reconciler(backlog))
    task = await backlog.file(
        make_spec(title="Batch inserts", repo="nexus-ingest", steps=["rewrite ingest/writer.py"]),
        OP,
        lane=Lane.AUTONOMOUS,
    )
    change = repo.commit("writer: flush every 100 rows", files={"ingest/writer.py": "v2\n"})
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == task.key
    drift = lease.drift
    assert drift["commits_since"] == 1 and drift["head_sha"] == change
    assert drift["files_in_steps"] == ["ingest/writer.py"]


# --------------------------------------------------- 3. a commit closes its own repo's tasks


async def test_a_commit_in_another_repo_does_not_close_the_task(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    ingest, web = make_repo("nexus-ingest"), make_repo("web")
    ingest.commit("init")
    web.commit("init")
    await add_repo(backlog, ingest.path, OP)
    await add_repo(backlog, web.path, OP)
    key = await file(backlog, "pool exhaustion", repo="nexus-ingest")
    loose = await file(backlog, "no repo at all")
    rec = Reconciler(backlog)
    await scan(rec)
    wrong = web.commit(f"Closes {key}, Closes {loose}")
    await scan(rec)
    task = await backlog.get(key)
    assert task.status is Status.OPEN and task.verified_at is None
    assert (await backlog.get(loose)).status is Status.DONE  # a task of no repo: closed
    assert await kinds(backlog, key) == ["filed", "commit_linked"]
    web.git("revert", "--no-edit", wrong)
    await scan(rec)
    task = await backlog.get(key)
    assert task.status is Status.OPEN and task.verified_at is None


# ------------------------------------------- 4. the holder's done after the commit closed it


async def test_the_holders_done_after_a_commit_closed_the_task_is_accepted(
    backlog: Backlog, leases: Leases, pool: asyncpg.Pool, make_forge, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    forge, mine, agent = seeded(make_forge)
    await add_repo(backlog, mine.path, OP, name="svc")
    key = await file(backlog, "batch inserts", repo="svc")
    lease = await leases.claim(codex)
    assert lease is not None
    sha = agent.commit(f"Batch the inserts\n\nCloses: {key}\n")
    agent.git("push", "-q", "origin", "main")
    await scan(Reconciler(backlog))
    assert (await backlog.get(key)).status is Status.DONE

    task = await leases.complete(key, codex, lease.epoch, commits=[sha], note="batched by 100")
    assert task.status is Status.DONE and task.already_closed_by == sha
    assert task.completion_note == "batched by 100" and task.lease_holder is None
    assert task.verified_at is not None
    assert (await kinds(backlog, key))[-1] == "completed"


# ------------------------------------------------------------- 5./6. registry repairs


async def test_an_empty_repository_registers_and_its_first_commit_is_scanned(
    backlog: Backlog, tmp_path
) -> None:
    repo = GitRepo(tmp_path / "empty")
    info = await add_repo(backlog, repo.path, OP)
    assert info.default_branch == "main"
    rec = Reconciler(backlog)
    (res,) = (await scan(rec)).repos
    assert res.error is None and res.new_on_default == 0
    key = await file(backlog, "first", repo="empty")
    repo.commit(f"Closes {key}")
    (res,) = (await scan(rec)).repos
    assert res.closed == 1


async def test_a_deepened_shallow_clone_is_rescanned(
    backlog: Backlog, pool: asyncpg.Pool, make_forge
) -> None:
    forge = make_forge("deep")
    agent = forge.clone("agent")
    old_key = await file(backlog, "old work")
    for i in range(9):
        agent.commit(f"change {i}" + (f"\n\nCloses {old_key}\n" if i == 1 else ""))
    agent.git("push", "-q", "origin", "main")
    shallow = forge.clone("shallow", "--depth", "3", url=f"file://{forge.path}")
    await add_repo(backlog, shallow.path, OP)
    rec = Reconciler(backlog)
    await scan(rec, fetch=False)
    (info,) = await list_repos(backlog)
    assert info.commits_seen == 3

    shallow.git("fetch", "-q", "--deepen", "100")
    await scan(rec, fetch=False)
    (info,) = await list_repos(backlog)
    assert info.commits_seen == int(shallow.git("rev-list", "--count", "HEAD")) == 9
    assert (await backlog.get(old_key)).status is Status.DONE
