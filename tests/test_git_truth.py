"""Git truth under rewrites (issue 10): reverts, evidence that leaves the default branch, exact
commit counts, a default branch that moves, incremental cost, skipped folders, plan bases that
left the branch. Real git repositories (the git CLI in temp dirs) and a real PostgreSQL."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import asyncpg

from core.backlog import Backlog
from core.git.gitlog import LogParser, log_args, parse_log
from core.git.reconcile import Reconciler
from core.git.repos import Repos
from core.leases import Leases
from core.models import Lane, Status
from core.settings import Settings, load_settings
from core.spec import make_spec
from tests.filing import OP, file, kinds
from tests.test_git_helpers import GitRepo


async def outbox(pool: asyncpg.Pool, kind: str) -> list[dict]:
    rows = await pool.fetch("select payload from outbox where kind = $1 order by id", kind)
    return [r["payload"] for r in rows]


async def scan(rec: Reconciler):
    summary = await rec.run()
    assert not summary.errors, [r.error for r in summary.errors]
    return summary


# ------------------------------------------------------------------ 1. reverts never close


async def test_a_revert_links_as_a_revert_and_never_closes(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    k1 = await file(backlog, "fix thing")
    repo = make_repo("svc")
    repo.commit("init")
    # the commit it reverts was never on main (a branch); the revert names the key, closing
    # words included, in the quoted subject
    repo.git("checkout", "-q", "-b", "topic")
    fix = repo.commit(f"Fix thing; Closes {k1}")
    repo.git("checkout", "-q", "main")
    revert = repo.commit(f'Revert "Fix thing; Closes {k1}"\n\nThis reverts commit {fix}.\n')
    await Repos(backlog).add(repo.path, OP)
    summary = await scan(Reconciler(backlog))
    (res,) = summary.repos
    assert res.closed == 0 and res.reverts == 1
    task = await backlog.get(k1)
    assert task.status is Status.OPEN and task.verified_at is None
    hist = await backlog.history(k1)
    links = {e.details["sha"]: e.details for e in hist if e.kind == "commit_linked"}
    assert links[revert]["revert"] is True and links[revert]["reverts"] == [fix]
    assert links[revert]["closes"] is False and links[revert]["on_default_branch"] is True
    assert links[fix]["on_default_branch"] is False
    row = await pool.fetchrow("select closes, reverts from task_commits where sha = $1", revert)
    assert row["closes"] is False and row["reverts"] == [fix]


# ------------------------------------------------- 2. evidence that leaves the default branch


async def test_reverted_evidence_loses_verification_and_a_reverted_revert_restores_it(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    key = await file(backlog, "fix thing")
    repo = make_repo("svc")
    repo.commit("init")
    fix = repo.commit(f"Fix thing\n\nCloses {key}\n", files={"app.py": "fixed\n"})
    await Repos(backlog).add(repo.path, OP)
    rec = Reconciler(backlog)
    await scan(rec)
    assert (await backlog.get(key)).verified_at is not None

    repo.git("revert", "--no-edit", fix)
    revert = repo.head()
    (res,) = (await scan(rec)).repos
    assert res.evidence_lost == 1 and res.closed == 0
    task = await backlog.get(key)
    assert task.status is Status.DONE and task.verified_at is None and task.commits == [fix]
    lost = (await backlog.history(key))[-1]
    assert lost.kind == "evidence_lost" and lost.actor == "git"
    assert lost.details["reason"] == "reverted" and lost.details["reverted_by"] == revert
    (notice,) = await outbox(pool, "evidence_lost")
    assert notice["key"] == key and notice["reason"] == "reverted"
    assert notice["commits"] == [fix] and notice["branch"] == "main"
    assert notice["reverted_by"] == revert
    (u,) = (await Reconciler(backlog).unverified()).items
    assert u.task.key == key and u.evidence.startswith("evidence reverted")
    # nothing new: nothing happens twice
    again = await scan(rec)
    assert again.repos[0].status == "unchanged" and len(await outbox(pool, "evidence_lost")) == 1

    # the revert is reverted (git 2.43+ calls it "Reapply"): the evidence is back
    repo.git("revert", "--no-edit", revert)
    summary = await scan(rec)
    assert summary.verified == [key]
    task = await backlog.get(key)
    assert task.verified_at is not None and task.commits == [fix]
    assert (await kinds(backlog, key))[-1] == "verified"
    assert await pool.fetchval("select evidence_lost from tasks where number = 1") is None
    assert (await Reconciler(backlog).unverified()).items == []

    # and reverting the reapply takes it away again (a chain of three)
    repo.git("revert", "--no-edit", "HEAD")
    (res,) = (await scan(rec)).repos
    assert res.evidence_lost == 1 and (await backlog.get(key)).verified_at is None
    assert len(await outbox(pool, "evidence_lost")) == 2


async def test_evidence_force_pushed_away_loses_verification_then_a_reland_verifies(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    key = await file(backlog, "fix thing")
    other = await file(backlog, "mentioned only")
    repo = make_repo("svc")
    base = repo.commit("init")
    fix = repo.commit(f"Closes {key}")
    repo.commit(f"see {other}")
    await Repos(backlog).add(repo.path, OP)
    rec = Reconciler(backlog)
    await scan(rec)
    assert (await backlog.get(key)).verified_at is not None

    # `git reset --hard HEAD~2` and a force-push
    repo.git("reset", "-q", "--hard", base)
    repo.commit("unrelated")
    (res,) = (await scan(rec)).repos
    assert res.rewritten and res.left_default == 2 and res.evidence_lost == 1
    task = await backlog.get(key)
    assert task.status is Status.DONE and task.verified_at is None
    on_default = await pool.fetchval("select on_default from task_commits where sha = $1", fix)
    assert on_default is False
    (notice,) = await outbox(pool, "evidence_lost")
    assert notice["reason"] == "left_default_branch" and notice["reverted_by"] is None
    assert notice["commits"] == [fix] and notice["branch"] == "main"
    assert (await backlog.get(other)).status is Status.OPEN  # a mention was never evidence
    rewritten = await pool.fetchrow(
        "select details from events where kind = 'history_rewritten' order by id desc limit 1"
    )
    assert rewritten["details"]["left_default"] == 2

    # the fix lands again as a new commit: a closing commit is evidence again
    reland = repo.commit(f"Fix thing again\n\nCloses: {key}\n")
    (res,) = (await scan(rec)).repos
    assert res.reverified == 1 and res.closed == 0
    task = await backlog.get(key)
    assert task.verified_at is not None and task.commits == [reland]
    verified = (await backlog.history(key))[-1]
    assert verified.kind == "verified" and verified.details["replaced"] == [fix]
    assert (await outbox(pool, "task_verified"))[-1]["key"] == key


async def test_evidence_merged_in_the_same_scan_as_its_revert_does_not_close(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    key = await file(backlog, "x")
    repo = make_repo("svc")
    repo.commit("init")
    await Repos(backlog).add(repo.path, OP)
    rec = Reconciler(backlog)
    await scan(rec)
    fix = repo.commit(f"Fixes {key}")
    repo.git("revert", "--no-edit", fix)
    (res,) = (await scan(rec)).repos
    assert res.closed == 0 and res.evidence_lost == 0
    assert (await backlog.get(key)).status is Status.OPEN


async def test_agent_completion_loses_verification_when_its_commit_is_reverted(
    backlog: Backlog, leases: Leases, pool: asyncpg.Pool, make_repo, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    repo = make_repo("api")
    repo.commit("init")
    await Repos(backlog).add(repo.path, OP)
    key = await file(backlog, "agent work", repo="api")
    work = repo.commit("the work (no key in the message)")
    lease = await leases.claim(codex)
    await leases.complete(lease.key, codex, lease.epoch, commits=[work[:9]])
    rec = Reconciler(backlog)
    assert (await scan(rec)).verified == [key]
    repo.git("revert", "--no-edit", work)
    (res,) = (await scan(rec)).repos
    assert res.evidence_lost == 1
    (notice,) = await outbox(pool, "evidence_lost")
    assert notice["reason"] == "reverted" and notice["commits"] == [work[:9]]
    assert (await backlog.get(key)).verified_at is None


# ------------------------------------------------------------ 3. the commit count is exact


def rev_count(repo: GitRepo, branch: str = "main") -> int:
    return int(repo.git("rev-list", "--count", branch))


async def test_commit_count_matches_git_after_rewrites_and_a_resync(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    repo = make_repo("svc")
    for i in range(12):
        repo.commit(f"c{i}")
    await Repos(backlog).add(repo.path, OP)
    rec = Reconciler(backlog)

    async def count() -> int:
        (info,) = await Repos(backlog).all()
        return info.commits_seen

    await scan(rec)
    assert await count() == rev_count(repo) == 12
    repo.git("reset", "-q", "--hard", "HEAD~3")
    repo.commit("new")
    await scan(rec)
    assert await count() == rev_count(repo) == 10
    # rewritten again, and the old cursor garbage-collected: the branch is compared in full
    repo.git("reset", "-q", "--hard", "HEAD~4")
    repo.commit("newer")
    repo.commit("newest")
    repo.git("reflog", "expire", "--expire=now", "--all")
    repo.git("gc", "-q", "--prune=now")
    (res,) = (await scan(rec)).repos
    assert res.resynced and res.new_on_default == 2 and res.left_default == 4
    assert await count() == rev_count(repo) == 8
    assert await pool.fetchval("select count(*) from git_commits") == 8


# ------------------------------------------------------- 4. the default branch can move


async def test_a_renamed_default_branch_is_followed(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    key = await file(backlog, "x")
    repo = make_repo("svc")
    repo.commit("init")
    info = await Repos(backlog).add(repo.path, OP)
    assert info.default_branch == "main" and not info.branch_pinned
    rec = Reconciler(backlog)
    await scan(rec)
    repo.git("branch", "-m", "main", "trunk")
    repo.commit(f"Fixes {key}")
    (res,) = (await scan(rec)).repos
    assert res.branch == "trunk" and res.branch_changed_from == "main" and res.closed == 1
    (info,) = await Repos(backlog).all()
    assert info.default_branch == "trunk" and info.last_error is None
    (notice,) = await outbox(pool, "default_branch_changed")
    assert notice["from"] == "main" and notice["to"] == "trunk" and notice["repo"] == "svc"

    # checking out another branch in the work tree does not move the default branch
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("on a feature")
    (res,) = (await scan(rec)).repos
    assert res.branch == "trunk" and res.branch_changed_from is None and res.new_on_default == 0


async def test_a_clone_follows_origin_head(
    backlog: Backlog, pool: asyncpg.Pool, make_repo, tmp_path: Path
) -> None:
    key = await file(backlog, "x")
    upstream = make_repo("upstream", branch="master")
    upstream.commit("init")
    upstream.git("branch", "develop")
    clone = GitRepo.__new__(GitRepo)
    clone.path, clone.n = tmp_path / "clone", 0
    upstream.git("clone", "-q", str(upstream.path), str(clone.path))
    info = await Repos(backlog).add(clone.path, OP)
    assert info.default_branch == "master"
    rec = Reconciler(backlog)
    await scan(rec)

    upstream.git("checkout", "-q", "develop")
    upstream.commit(f"Fixes {key}")
    clone.git("fetch", "-q", "origin")
    clone.git("remote", "set-head", "origin", "develop")
    (res,) = (await scan(rec)).repos
    assert res.branch == "develop" and res.branch_changed_from == "master"
    assert res.closed == 1 and (await backlog.get(key)).status is Status.DONE


async def test_a_pinned_branch_that_vanished_names_the_right_command(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    repo = make_repo("svc")
    repo.commit("init")
    repo.git("branch", "release")
    info = await Repos(backlog).add(repo.path, OP, branch="release")
    assert info.default_branch == "release" and info.branch_pinned
    rec = Reconciler(backlog)
    await scan(rec)
    repo.git("branch", "-m", "release", "release-2")
    (res,) = (await rec.run()).repos
    assert res.status == "error"
    assert "--branch NEW" in res.error and "--follow" in res.error
    assert "fix the path" not in res.error
    # following the repository's default again
    info = await Repos(backlog).add(repo.path, OP, follow=True)
    assert info.default_branch == "main" and not info.branch_pinned
    changed = await pool.fetchrow(
        "select actor, details from events where kind = 'repo_branch_set'"
    )
    assert changed["actor"] == "operator:test"
    assert changed["details"] == {"repo": "svc", "from": "release", "to": "main", "pinned": False}
    (res,) = (await scan(rec)).repos
    assert res.branch == "main" and res.status == "ok"
    (info,) = await Repos(backlog).all()
    assert info.last_error is None


# --------------------------------------------- 5. an incremental scan costs what is new


def fast_import(path: Path, main_commits: int, branches: int, seed: int = 7) -> None:
    """A repo with `main_commits` on main and `branches` unmerged branches of 1-4 commits
    each, written by one `git fast-import` (the git CLI, quickly)."""
    rnd = random.Random(seed)
    GitRepo(path)
    out: list[bytes] = []

    def data(b: bytes) -> bytes:
        return b"data %d\n%s" % (len(b), b)

    mark, ts = 0, 1_700_000_000
    main: list[int] = []
    for i in range(main_commits):
        mark += 1
        ts += 60
        out += [b"commit refs/heads/main", b"mark :%d" % mark]
        out += [b"committer Dev <dev@example.com> %d +0000" % ts, data(b"main %d\n" % i)]
        if main:
            out.append(b"from :%d" % main[-1])
        out += [b"M 644 inline f%d.txt" % (i % 5), data(b"%d\n" % i)]
        main.append(mark)
    for b in range(branches):
        parent = rnd.choice(main)
        for j in range(rnd.randint(1, 4)):
            mark += 1
            ts += 1
            out += [b"commit refs/heads/wip/%d" % b, b"mark :%d" % mark]
            out += [b"committer Dev <dev@example.com> %d +0000" % ts, data(b"wip %d.%d\n" % (b, j))]
            out += [b"from :%d" % parent, b"M 644 inline w%d.txt" % b, data(b"%d\n" % j)]
            parent = mark
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=path, input=b"\n".join(out) + b"\n", check=True
    )


async def test_incremental_scan_reads_only_what_is_new_among_hundreds_of_branches(
    backlog: Backlog, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = tmp_path / "busy"
    fast_import(path, main_commits=200, branches=300)
    repo = GitRepo.__new__(GitRepo)
    repo.path, repo.n = path, 0
    total = int(repo.git("rev-list", "--count", "--all"))
    await Repos(backlog).add(path, OP)
    rec = Reconciler(backlog)

    first = await scan(rec)
    assert first.commits_read == total and first.repos[0].new_on_default == 200

    noop = await scan(rec)
    assert noop.repos[0].status == "unchanged" and noop.commits_read == 0

    repo.git("checkout", "-q", "main")
    repo.commit("one new commit on main")
    one = await scan(rec)
    assert one.commits_read == 1 and one.repos[0].new_on_default == 1

    repo.git("checkout", "-q", "wip/17")
    repo.commit("one new commit on a branch")
    one = await scan(rec)
    assert one.commits_read == 1 and one.repos[0].new_on_default == 0

    # a new branch at a commit already read, and a deleted branch: git runs, reads nothing
    repo.git("branch", "copy-of-17", "wip/17")
    repo.git("branch", "-D", "wip/18")
    nothing = await scan(rec)
    assert nothing.repos[0].status == "ok" and nothing.commits_read == 0

    # a branch merged into main: its commits are new on the default branch (stored, closing
    # references count), and nothing else is read again
    repo.git("checkout", "-q", "main")
    on_branch = int(repo.git("rev-list", "--count", "main..wip/17"))
    repo.git("merge", "-q", "--no-ff", "-m", "merge wip/17", "wip/17")
    merged = await scan(rec)
    assert merged.repos[0].new_on_default == on_branch + 1
    assert merged.commits_read == on_branch + 1
    assert await pool.fetchval("select count(*) from git_commits") == rev_count(repo)


async def test_a_mention_on_a_branch_read_once_still_closes_when_merged(
    backlog: Backlog, pool: asyncpg.Pool, make_repo
) -> None:
    key = await file(backlog, "x")
    repo = make_repo("svc")
    repo.commit("init")
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit(f"Closes {key}")
    repo.git("checkout", "-q", "main")
    await Repos(backlog).add(repo.path, OP)
    rec = Reconciler(backlog)
    await scan(rec)
    assert (await backlog.get(key)).status is Status.OPEN
    repo.commit("unrelated on main")  # the feature tip is now excluded from reads
    await scan(rec)
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    (res,) = (await scan(rec)).repos
    assert res.closed == 1 and (await backlog.get(key)).status is Status.DONE


# --------------------------------------------------------------- 9. skipped folders


async def test_skipped_folders_under_the_roots_are_reported(
    backlog: Backlog, pool: asyncpg.Pool, make_repo, tmp_path: Path
) -> None:
    good = make_repo("good")
    good.commit("init")
    junk = tmp_path / "repos" / "junk"
    junk.mkdir(parents=True)
    (junk / ".git").write_text("this is not a gitdir link\n")
    settings: Settings = load_settings(
        database_url=backlog.settings.database_url,
        data_dir=tmp_path,
        repo_roots=[str(tmp_path / "repos"), str(tmp_path / "nowhere")],
        _env_file=None,
    )
    summary = await Reconciler(Backlog(pool, settings)).run()
    assert summary.discovered == ["good"]
    skipped = {s.path: s.reason for s in summary.skipped}
    assert "not a gitdir link" in skipped[str(junk)]
    assert "does not exist" in skipped[str(tmp_path / "nowhere")]
    assert {s.path for s in await Repos(backlog).skipped()} == set(skipped)
    events = await pool.fetchval("select count(*) from events where kind = 'repo_skipped'")
    assert events == 2
    await Reconciler(Backlog(pool, settings)).run()  # the same skips again: no new events
    assert await pool.fetchval("select count(*) from events where kind = 'repo_skipped'") == 2

    (junk / ".git").unlink()
    GitRepo(junk).commit("now a repository")
    summary = await Reconciler(Backlog(pool, settings)).run()
    assert summary.discovered == ["junk"]
    assert [s.path for s in await Repos(backlog).skipped()] == [str(tmp_path / "nowhere")]


# ------------------------------------------------- 10. a plan base that left the branch


async def test_drift_says_when_the_plan_base_left_the_branch(
    backlog: Backlog, leases: Leases, pool: asyncpg.Pool, make_repo, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    repo = make_repo("ingest")
    first = repo.commit("init")
    repo.commit("second")
    await Repos(backlog).add(repo.path, OP)
    rec = Reconciler(backlog)
    await scan(rec)
    task = await backlog.file(make_spec(title="plan", repo="ingest"), OP, lane=Lane.AUTONOMOUS)
    base = task.base_sha
    assert base == repo.head()

    # force-pushed away: the scan puts an event on the task, the claim's drift says so
    repo.git("reset", "-q", "--hard", first)
    repo.commit("rewritten")
    await scan(rec)
    lost = [e for e in await backlog.history(task.key) if e.kind == "plan_base_lost"]
    assert len(lost) == 1 and lost[0].details["base_sha"] == base
    lease = await leases.claim(codex)
    drift = lease.drift
    assert drift["base_left_branch"] is True and drift["commits_since"] is None
    assert f"ob replan {task.key}" in drift["warning"] and "no longer on main" in drift["warning"]
    await leases.release(lease.key, codex, lease.epoch)

    # a base no scan has seen yet, rewritten away before the next scan: git says so
    repo.commit("after the scan")
    await pool.execute("update tasks set base_sha = $1", repo.head())
    repo.git("reset", "-q", "--hard", "HEAD~1")
    repo.commit("rewritten again")
    lease = await leases.claim(codex)
    assert lease.drift["base_left_branch"] is True and lease.drift["source"] == "git"
    await leases.release(lease.key, codex, lease.epoch)

    # a base still on the branch counts the commits on the branch now ("rewritten" and
    # "rewritten again", which no scan has read yet: the claim reads git, issue 15)
    await pool.execute("update tasks set base_sha = $1", first)
    lease = await leases.claim(codex)
    assert lease.drift["base_left_branch"] is False and lease.drift["commits_since"] == 2
    # and replanning clears it
    await leases.release(lease.key, codex, lease.epoch)


async def test_a_bare_repository_follows_its_head(
    backlog: Backlog, pool: asyncpg.Pool, make_repo, tmp_path: Path
) -> None:
    key = await file(backlog, "x")
    src = make_repo("src")
    src.commit("init")
    bare = tmp_path / "server.git"
    src.git("clone", "-q", "--bare", str(src.path), str(bare))
    info = await Repos(backlog).add(bare, OP)
    assert info.default_branch == "main"
    rec = Reconciler(backlog)
    await scan(rec)
    src.git("checkout", "-q", "-b", "stable")
    src.commit(f"Fixes {key}")
    src.git("push", "-q", str(bare), "stable")
    src.git("--git-dir", str(bare), "symbolic-ref", "HEAD", "refs/heads/stable")
    (res,) = (await scan(rec)).repos
    assert res.branch == "stable" and res.branch_changed_from == "main" and res.closed == 1


def test_the_log_parser_reads_any_chunking_of_real_git_output(make_repo) -> None:
    repo = make_repo("odd")
    repo.commit("first", files={"a.txt": "1\n", "dir/b.txt": "2\n"})
    repo.commit("second\n\n" + "long body line\n" * 5000, files={"c d.txt": "3\n"})
    repo.commit("empty", files={})
    repo.git("checkout", "-q", "-b", "side", "HEAD~1")
    repo.commit("on the side", files={"e.txt": "4\n"})
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge side", "side")
    out = subprocess.run(
        ["git", *log_args(files=True, topo=True), "main"],
        cwd=repo.path,
        capture_output=True,
        check=True,
    ).stdout
    whole = parse_log(out)
    assert [c.subject for c in whole] == ["merge side", "on the side", "empty", "second", "first"]
    assert whole[3].files == ["c d.txt"] and whole[4].files == ["a.txt", "dir/b.txt"]
    assert whole[0].files == [] and len(whole[0].parents) == 2
    for size in (1, 2, 3, 7, 64, 4096):
        p = LogParser()
        got = [c for i in range(0, len(out), size) for c in p.feed(out[i : i + size])]
        assert got + p.close() == whole, size
