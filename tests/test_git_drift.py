"""Plan drift: the base recorded at approval, the drift in every claim, `replan`."""

from __future__ import annotations

import shutil

import asyncpg

from core.backlog import Backlog
from core.git.drift import Drift, drifted_plans, path_tokens
from core.git.reconcile import Reconciler
from core.git.repos import Repos
from core.leases import Leases
from core.models import Actor, Lane
from core.spec import make_spec

OP = Actor.operator("test")


def test_path_tokens() -> None:
    steps = ["swap psycopg2 for asyncpg in `ingest/db.py`.", "run the load test (see README.md)"]
    assert path_tokens(steps) == ["README.md", "ingest/db.py"]


async def test_claim_carries_the_drift_and_replan_resets_it(
    backlog: Backlog, leases: Leases, pool: asyncpg.Pool, make_repo, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    repo = make_repo("ingest")
    repo.commit("init", files={"ingest/db.py": "x\n", "ingest/api.py": "y\n"})
    await Repos(backlog).add(repo.path, OP)
    rec = Reconciler(backlog)
    await rec.run()
    base = repo.head()
    task = await backlog.file(
        make_spec(
            title="Migrate to asyncpg",
            repo="ingest",
            steps=["swap psycopg2 for asyncpg in ingest/db.py", "update api.py callers"],
        ),
        OP,
        lane=Lane.AUTONOMOUS,
    )
    assert task.base_sha == base
    repo.commit("pool tweaks", files={"ingest/db.py": "x2\n"})
    repo.commit(f"start {task.key}", files={"docs/notes.md": "n\n"})
    repo.commit("api cleanup", files={"ingest/api.py": "y2\n", "other.txt": "o\n"})
    await rec.run()
    assert [d.key for d in (await drifted_plans(pool, "OB")).items] == [task.key]

    lease = await leases.claim(codex)
    drift = lease.drift
    assert drift["source"] == "reconciler" and drift["base_sha"] == base
    assert drift["commits_since"] == 3
    assert [s.split(" ", 1)[1] for s in drift["subjects"]] == [
        "api cleanup",
        f"start {task.key}",
        "pool tweaks",
    ]
    assert drift["files_in_steps"] == ["ingest/api.py", "ingest/db.py"]
    assert drift["already_referenced"] is True
    assert drift["references"][0]["repo"] == "ingest"
    await leases.release(lease.key, codex, lease.epoch)

    replanned = await Drift(backlog).replan(task.key, OP)
    assert replanned.base_sha == repo.head()
    assert (await backlog.history(task.key))[-1].kind == "replanned"
    lease = await leases.claim(codex)
    assert lease.drift["commits_since"] == 0 and lease.drift["subjects"] == []


async def test_drift_before_a_scan_uses_one_git_call_and_never_fails_a_claim(
    backlog: Backlog, leases: Leases, pool: asyncpg.Pool, make_repo, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    repo = make_repo("web")
    repo.commit("init")
    await Repos(backlog).add(repo.path, OP)  # never reconciled
    # an agent's draft, approved by the operator: approval records the HEAD
    draft = await backlog.file(make_spec(title="draft", repo="web"), codex)
    assert draft.base_sha is None
    approved = await backlog.approve(draft.key, OP, Lane.AUTONOMOUS)
    assert approved.base_sha == repo.head()
    repo.commit("a change")
    lease = await leases.claim(codex)
    assert lease.drift["source"] == "git" and lease.drift["commits_since"] == 1
    await leases.release(lease.key, codex, lease.epoch)

    # the repo vanished: the claim still succeeds, the drift says why it is missing
    shutil.rmtree(repo.path)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == draft.key
    assert "error" in lease.drift


async def test_claim_without_repo_or_base_has_no_drift(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    await backlog.file(make_spec(title="no repo"), OP, lane=Lane.AUTONOMOUS)
    await backlog.file(
        make_spec(title="unregistered repo", repo="nowhere"), OP, lane=Lane.AUTONOMOUS
    )
    first = await leases.claim(codex)
    second = await leases.claim(codex)
    assert first.drift is None and second.drift is None
    assert second.task.base_sha is None
