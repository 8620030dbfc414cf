"""Reconciliation against real git repositories and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from core.backlog import Backlog
from core.errors import LeaseError
from core.git.reconcile import Reconciler
from core.git.repos import Repos
from core.leases import Leases
from core.models import Status
from tests.filing import OP, file, kinds


async def event_count(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("select count(*) from events")


async def test_closes_from_default_branch_links_the_rest_and_is_idempotent(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    keys = [await file(backlog, f"task {i}") for i in range(1, 7)]  # OB-1..OB-6
    repo = make_repo("web")
    repo.commit("initial")
    repo.commit("refactor the login form, see OB-1")
    repo.git("checkout", "-q", "-b", "feature")
    feature_sha = repo.commit("Closes OB-2 on a branch")
    repo.git("checkout", "-q", "main")
    repo.commit("Fixes OB-3, OB-4 and OB-99")
    trailer_sha = repo.commit(
        "Tidy the API\n\nBody text mentions ob-6.\n\nAgent: Codex\nCloses: OB-5\n"
    )
    await Repos(backlog).add(repo.path, OP)
    rec = Reconciler(backlog)

    summary = await rec.run()
    (res,) = summary.repos
    assert res.error is None and res.status == "ok"
    assert res.closed == 3 and res.unknown_keys == 1
    assert res.new_on_default == 4 and res.commits_read == 5
    tasks = {k: await backlog.get(k) for k in keys}
    assert [tasks[k].status for k in keys] == [
        Status.OPEN,
        Status.OPEN,
        Status.DONE,
        Status.DONE,
        Status.DONE,
        Status.OPEN,
    ]
    assert tasks["OB-5"].commits == [trailer_sha] and tasks["OB-5"].verified_at is not None
    assert tasks["OB-5"].completed_by == "git:codex"
    hist = await backlog.history("OB-5")
    assert [e.kind for e in hist] == ["filed", "closed_by_commit"]
    assert hist[1].actor == "git:codex" and hist[1].details["repo"] == "web"
    assert await kinds(backlog, "OB-2") == ["filed", "commit_linked"]
    linked = (await backlog.history("OB-2"))[1].details
    assert linked["sha"] == feature_sha and linked["on_default_branch"] is False
    assert await kinds(backlog, "OB-1") == ["filed", "commit_linked"]
    assert await kinds(backlog, "OB-6") == ["filed", "commit_linked"]  # body mention
    rows = await pool.fetch(
        "select payload from outbox where kind = 'task_closed_by_commit' order by id"
    )
    assert len(rows) == 3
    p5 = next(r["payload"] for r in rows if r["payload"]["key"] == "OB-5")
    assert (p5["sha"], p5["repo"], p5["agent"]) == (trailer_sha, "web", "codex")

    # nothing new: the ref files say so, no git runs, nothing is written twice
    before = await event_count(pool)
    again = await rec.run()
    assert again.repos[0].status == "unchanged"
    assert await event_count(pool) == before

    # the branch is merged: now its closing reference counts
    repo.git("merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    third = await rec.run()
    assert third.repos[0].closed == 1
    assert (await backlog.get("OB-2")).status is Status.DONE
    assert await kinds(backlog, "OB-2") == ["filed", "commit_linked", "closed_by_commit"]

    # forcing a full rescan (cursor forgotten) writes no duplicate events
    before = await event_count(pool)
    await pool.execute("update repos set cursor_sha = null, ref_tips = '{}'")
    await pool.execute("delete from git_commits")
    full = await rec.run()
    assert full.repos[0].closed == 0 and full.repos[0].linked == 0
    assert await event_count(pool) == before
    assert (
        await pool.fetchval("select count(*) from outbox where kind = 'task_closed_by_commit'") == 4
    )


async def test_author_email_maps_to_agent(
    backlog: Backlog, pool: asyncpg.Pool, make_repo, make_agent
) -> None:
    await make_agent("claude", git_emails=["Claude@Bots.example"])
    key = await file(backlog, "x")
    repo = make_repo("api")
    repo.commit(f"Resolves {key}", email="claude@bots.example")
    await Repos(backlog).add(repo.path, OP)
    await Reconciler(backlog).run()
    hist = await backlog.history(key)
    assert hist[-1].kind == "closed_by_commit" and hist[-1].actor == "git:claude"
    assert hist[-1].details["agent"] == "claude"


async def test_closing_a_claimed_task_revokes_and_flags(
    backlog: Backlog, leases: Leases, pool: asyncpg.Pool, make_repo, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    key = await file(backlog, "x")
    lease = await leases.claim(codex)
    assert lease is not None and lease.drift is None  # no repo: no drift, no git
    repo = make_repo("api")
    repo.commit(f"Fix {key} by hand")
    await Repos(backlog).add(repo.path, OP)
    summary = await Reconciler(backlog).run()
    assert summary.repos[0].closed_while_claimed == 1
    task = await backlog.get(key)
    assert task.status is Status.DONE and task.lease_holder is None
    assert await kinds(backlog, key) == [
        "filed",
        "claimed",
        "closed_by_commit",
        "closed_while_claimed",
    ]
    flagged = await pool.fetchrow("select payload from outbox where kind = 'closed_while_claimed'")
    assert flagged["payload"]["holder"] == "codex"
    with pytest.raises(LeaseError):
        await leases.heartbeat(key, codex, lease.epoch)


async def test_force_push_rewritten_history(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    k1 = await file(backlog, "one")
    k2 = await file(backlog, "two")
    k3 = await file(backlog, "three")
    repo = make_repo("svc")
    base = repo.commit("base")
    gone = repo.commit(f"wip towards {k1}")
    await Repos(backlog).add(repo.path, OP)
    rec = Reconciler(backlog)
    await rec.run()
    assert await pool.fetchval("select count(*) from git_commits") == 2

    # force-push: the tip is rewritten; the old cursor is no longer an ancestor
    repo.git("reset", "-q", "--hard", base)
    new = repo.commit(f"Closes {k2}")
    summary = await rec.run()
    (res,) = summary.repos
    assert res.rewritten and res.closed == 1 and res.error is None
    shas = {r["sha"] for r in await pool.fetch("select sha from git_commits")}
    assert shas == {base, new} and gone not in shas
    assert (await backlog.get(k2)).status is Status.DONE
    assert await pool.fetchval("select cursor_sha from repos") == new

    # rewritten again and the old cursor garbage-collected: a window is rescanned
    repo.git("reset", "-q", "--hard", base)
    newer = repo.commit(f"Closes {k3}")
    repo.git("reflog", "expire", "--expire=now", "--all")
    repo.git("gc", "-q", "--prune=now")
    summary = await rec.run()
    (res,) = summary.repos
    assert res.rewritten and res.closed == 1 and res.error is None, res
    shas = {r["sha"] for r in await pool.fetch("select sha from git_commits")}
    assert shas == {base, newer}
    assert (await backlog.get(k3)).status is Status.DONE
    assert await pool.fetchval("select count(*) from events where kind = 'history_rewritten'") == 2


async def test_two_repos_mention_one_key(backlog: Backlog, pool: asyncpg.Pool, make_repo) -> None:
    key = await file(backlog, "shared", repo="api")
    a, b = make_repo("api"), make_repo("web")
    a.commit(f"Closes {key}: server side")
    b.commit(f"client side of {key}")
    b.commit(f"Fixes {key} in the client too")
    await Repos(backlog).add(a.path, OP)
    await Repos(backlog).add(b.path, OP)
    summary = await Reconciler(backlog).run()
    assert sum(r.closed for r in summary.repos) == 1
    rows = await pool.fetch(
        "select r.name from task_commits tc join repos r on r.id = tc.repo_id order by r.name"
    )
    assert [r["name"] for r in rows] == ["api", "web", "web"]
    hist = await kinds(backlog, key)
    assert hist.count("closed_by_commit") == 1 and hist.count("commit_linked") == 2


async def test_huge_and_non_utf8_messages(backlog: Backlog, pool: asyncpg.Pool, make_repo) -> None:
    k1 = await file(backlog, "huge")
    k2 = await file(backlog, "latin-1")
    repo = make_repo("odd")
    # 2.4 MB: keys are searched in the first MiB (OB-777 beyond it is not seen)
    repo.commit(f"Closes {k1}\n\nsee OB-424242\n" + ("lorem ipsum " * 200_000) + "\nOB-777\n")
    repo.git("config", "i18n.commitEncoding", "latin-1")
    latin = repo.commit(f"Fixes {k2}: caf\xe9 cr\xe8me".encode("latin-1") + b"\n\nna\xefve\n")
    repo.git("config", "--unset", "i18n.commitEncoding")
    # and a message in no encoding at all (raw bytes, no encoding header)
    repo.commit(b"Refs OB-1 \xff\xfe broken bytes\n")
    await Repos(backlog).add(repo.path, OP)
    summary = await Reconciler(backlog).run()
    (res,) = summary.repos
    assert res.error is None and res.closed == 2 and res.unknown_keys == 1
    subject = await pool.fetchval("select subject from git_commits where sha = $1", latin)
    assert subject == f"Fixes {k2}: café crème"
    assert (await backlog.get(k1)).status is Status.DONE
    linked = (await backlog.history(k1))[-1]
    assert linked.kind == "commit_linked" and linked.details["subject"].endswith("broken bytes")


async def test_repo_path_that_disappeared_is_skipped(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    key = await file(backlog, "x")
    gone, fine = make_repo("gone"), make_repo("fine")
    gone.commit("init")
    fine.commit("init")
    await Repos(backlog).add(gone.path, OP)
    await Repos(backlog).add(fine.path, OP)
    shutil.rmtree(gone.path)
    fine.commit(f"Closes {key}")
    summary = await Reconciler(backlog).run()
    by_name = {r.name: r for r in summary.repos}
    assert by_name["gone"].status == "error" and "does not exist" in by_name["gone"].error
    assert by_name["fine"].status == "ok" and by_name["fine"].closed == 1
    repos = {r.name: r for r in await Repos(backlog).all()}
    assert "does not exist" in repos["gone"].last_error and repos["fine"].last_error is None


async def test_verification_of_agent_completions(
    backlog: Backlog, leases: Leases, pool: asyncpg.Pool, make_repo, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    repo = make_repo("api")
    repo.commit("init")
    await Repos(backlog).add(repo.path, OP)
    k1 = await file(backlog, "on a branch", repo="api")
    k2 = await file(backlog, "no evidence", repo="api")
    repo.git("checkout", "-q", "-b", "work")
    sha = repo.commit("the work")
    lease = await leases.claim(codex)
    await leases.complete(lease.key, codex, lease.epoch, commits=[sha[:8]])
    lease = await leases.claim(codex)
    await leases.complete(lease.key, codex, lease.epoch)
    rec = Reconciler(backlog)
    assert (await rec.run()).verified == []
    assert [u.task.key for u in (await Reconciler(backlog).unverified()).items] == [k1, k2]

    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge work", "work")
    assert (await rec.run()).verified == [k1]
    assert (await backlog.get(k1)).verified_at is not None
    assert (await kinds(backlog, k1))[-1] == "verified"
    assert await rec.verify() == []  # once only
    await pool.execute("update tasks set completed_at = now() - interval '5 days'")
    (left,) = (await Reconciler(backlog).unverified()).items
    assert left.task.key == k2 and left.flagged and left.evidence == "no commits"


async def test_discovery_and_default_branch(
    backlog: Backlog, pool: asyncpg.Pool, make_repo, tmp_path: Path
) -> None:
    old = make_repo("legacy", branch="master")
    old.commit("init")
    trunk = make_repo("trunk", branch="trunk")
    trunk.commit("init")
    upstream = make_repo("upstream", branch="develop")
    upstream.commit("init")
    clone = tmp_path / "repos" / "clone"
    old.git("clone", "-q", str(upstream.path), str(clone))
    added = (await Repos(backlog).discover([tmp_path / "repos"])).added
    branches = {r.name: r.default_branch for r in added}
    assert branches == {
        "legacy": "master",
        "trunk": "trunk",
        "upstream": "develop",
        "clone": "develop",
    }
    assert (await Repos(backlog).discover([tmp_path / "repos"])).added == []
    info = await Repos(backlog).add(trunk.path, OP, name="trunk-renamed", branch="release")
    assert info.name == "trunk-renamed" and info.default_branch == "release"
    summary = await Reconciler(backlog).run(["trunk-renamed"])
    assert "release" in summary.repos[0].error


async def test_branch_reset_to_an_older_commit(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    repo = make_repo("svc")
    a = repo.commit("a")
    repo.commit("b")
    c = repo.commit("c")
    await Repos(backlog).add(repo.path, OP)
    rec = Reconciler(backlog)
    await rec.run()
    repo.git("reset", "-q", "--hard", a)
    (res,) = (await rec.run()).repos
    assert res.rewritten and res.commits_read == 0
    assert [r["sha"] for r in await pool.fetch("select sha from git_commits")] == [a]
    repo.git("reset", "-q", "--hard", c)  # pushed again
    (res,) = (await rec.run()).repos
    assert not res.rewritten and res.new_on_default == 2
    assert await pool.fetchval("select count(*) from git_commits") == 3


async def test_two_reconcilers_at_once_write_everything_once(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    keys = [await file(backlog, f"t{i}") for i in range(1, 9)]
    repos = [make_repo(f"r{i}") for i in range(3)]
    for i, repo in enumerate(repos):
        for k in keys:  # every repo closes every task: all of them race for the same rows
            repo.commit(f"Closes {k} (repo {i})")
        await Repos(backlog).add(repo.path, OP)
    a, b = Reconciler(backlog), Reconciler(backlog)
    first, second = await asyncio.gather(a.run(), b.run())
    assert not first.errors and not second.errors
    assert first.total("closed") + second.total("closed") == len(keys)
    for k in keys:
        assert (await kinds(backlog, k)).count("closed_by_commit") == 1
    assert await pool.fetchval("select count(*) from task_commits") == 3 * len(keys)
    assert await pool.fetchval(
        "select count(*) from events where kind = 'commit_linked'"
    ) == 2 * len(keys)
