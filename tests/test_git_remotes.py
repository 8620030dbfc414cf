"""Planning against the truth (issue 15): ob fetches the remotes before it reads, the drift is
read from git at claim time, a commit closes only tasks of its own repo, the holder's late
`done` is accepted, empty and shallow repositories are read right. Real git everywhere: a bare
"origin" in a temp dir, the operator's clone registered with ob, an agent's clone that pushes.
"""

from __future__ import annotations

import asyncio
import shutil

import asyncpg

from bot.render import digest as render_digest
from core.backlog import Backlog
from core.digest import Digests
from core.git.reconcile import Reconciler
from core.git.remotes import default_remote, looks_like_url, normalise_url
from core.git.repos import Repos, truth_age
from core.leases import Leases
from core.models import Lane, Status
from core.spec import make_spec
from tests.filing import OP, file, kinds
from tests.test_git_helpers import GitRepo


async def scan(rec: Reconciler, **kw):
    summary = await rec.run(**kw)
    assert not summary.errors, [r.error for r in summary.errors]
    return summary


async def ingest_and_web(backlog: Backlog, make_repo) -> tuple[GitRepo, GitRepo]:
    """Two registered repos with a commit each: nexus-ingest and web."""
    ingest, web = make_repo("nexus-ingest"), make_repo("web")
    for repo in (ingest, web):
        repo.commit("init")
        await Repos(backlog).add(repo.path, OP)
    return ingest, web


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
    await Repos(backlog).add(mine.path, OP, name="svc")
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
    (info,) = await Repos(backlog).all()
    assert info.last_fetch_at is not None and info.fetch_error is None
    assert info.commits_seen == 2


# ------------------------------------------------------- 2. the drift is read at claim time


async def test_the_claim_reads_the_drift_from_git_not_from_the_last_reconcile(
    backlog: Backlog, leases: Leases, make_repo, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    repo = make_repo("nexus-ingest")
    repo.commit("init", files={"ingest/writer.py": "v1\n"})
    await Repos(backlog).add(repo.path, OP)
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
    ingest, web = await ingest_and_web(backlog, make_repo)
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
    await Repos(backlog).add(mine.path, OP, name="svc")
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
    info = await Repos(backlog).add(repo.path, OP)
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
    await Repos(backlog).add(shallow.path, OP)
    rec = Reconciler(backlog)
    await scan(rec, fetch=False)
    (info,) = await Repos(backlog).all()
    assert info.commits_seen == 3

    shallow.git("fetch", "-q", "--deepen", "100")
    await scan(rec, fetch=False)
    (info,) = await Repos(backlog).all()
    assert info.commits_seen == int(shallow.git("rev-list", "--count", "HEAD")) == 9
    assert (await backlog.get(old_key)).status is Status.DONE


async def test_the_late_done_over_rest_and_mcp(
    gateway: str, backlog: Backlog, make_forge, make_agent
) -> None:
    import httpx
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    _, token = await make_agent("codex")
    _, other = await make_agent("grok")
    forge, mine, agent = seeded(make_forge)
    await Repos(backlog).add(mine.path, OP, name="svc")
    k1 = await file(backlog, "one", repo="svc")
    k2 = await file(backlog, "two", repo="svc")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway, headers=auth, timeout=30) as c:
        e1 = (await c.post("/v1/claim")).json()["lease"]["epoch"]
        e2 = (await c.post("/v1/claim")).json()["lease"]["epoch"]
        sha = agent.commit(f"Both\n\nCloses: {k1}\nCloses: {k2}\n")
        agent.git("push", "-q", "origin", "main")
        await scan(Reconciler(backlog))

        body = {"epoch": e1, "commits": [sha[:12]], "note": "done in one go"}
        r = await c.post(f"/v1/tasks/{k1}/complete", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["already_closed_by"] == sha and r.json()["status"] == "done"
        assert r.json()["completion_note"] == "done in one go" and r.json()["commits"] == [sha]
        again = await c.post(f"/v1/tasks/{k1}/complete", json=body)
        assert again.status_code == 200 and again.json()["replayed"] is True
        assert again.json()["already_closed_by"] == sha  # a retry answers as the first did
        stale = await c.post(f"/v1/tasks/{k1}/complete", json={**body, "epoch": e1 + 5})
        assert stale.status_code == 409
    async with httpx.AsyncClient(
        base_url=gateway, headers={"Authorization": f"Bearer {other}"}, timeout=30
    ) as c:
        r = await c.post(f"/v1/tasks/{k2}/complete", json={"epoch": e2})
        assert r.status_code == 409  # not the holder: refused as before
    http = httpx.AsyncClient(headers=auth, timeout=30)
    async with (
        streamable_http_client(f"{gateway}/mcp/", http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        res = await session.call_tool("complete_task", {"key": k2, "epoch": e2, "note": "also"})
        assert not res.is_error, res
        assert res.structured_content["already_closed_by"] == sha
    assert (await backlog.get(k2)).completion_note == "also"


async def test_the_late_done_from_the_agent_cli_says_the_commit_closed_it(
    gateway: str, backlog: Backlog, make_forge, make_agent, tmp_path
) -> None:
    """`ob done` after the reconciler closed the task says so, verified, also when it is a
    retry of a done whose answer was lost; never "unverified until git confirms"."""
    import os

    from tests.test_agent_cli import ob

    _, token = await make_agent("codex")
    forge, mine, agent = seeded(make_forge)
    await Repos(backlog).add(mine.path, OP, name="svc")
    key = await file(backlog, "one", repo="svc")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(OB_URL=gateway, OB_AGENT_TOKEN=token, OB_DATA_DIR=str(tmp_path), COLUMNS="200")
    code, _, err = await ob(env, "next")
    assert code == 0, err
    sha = agent.commit(f"One\n\nCloses: {key}\n")
    agent.git("push", "-q", "origin", "main")
    await scan(Reconciler(backlog))
    for _ in range(2):  # the second: a retry, its epoch given as after a lost answer
        code, out, err = await ob(env, "done", key, "-c", sha, "-m", "shipped", "--epoch", "1")
        assert code == 0, err
        assert f"{key} was already closed by commit {sha[:10]} (verified)" in out, out
        assert "unverified" not in out


# ----------------------------------------------------- failures, opt-outs, several processes


async def test_a_fetch_that_fails_is_shown_and_the_round_goes_on(
    backlog: Backlog, make_forge, make_repo
) -> None:
    forge, mine, agent = seeded(make_forge)
    await Repos(backlog).add(mine.path, OP, name="svc")
    local = make_repo("local")
    local.commit("init")
    await Repos(backlog).add(local.path, OP)
    rec = Reconciler(backlog)
    await scan(rec)
    (svc, _) = sorted(await Repos(backlog).all(), key=lambda r: r.name != "svc")
    good = svc.last_fetch_at
    assert good is not None and svc.remote == "origin"

    shutil.rmtree(forge.path)  # the remote went away
    key = await file(backlog, "local work", repo="local")
    local.commit(f"Closes {key}")
    summary = await rec.run()
    by = {r.name: r for r in summary.repos}
    assert (
        by["svc"].fetch_error and "does not appear to be a git repository" in by["svc"].fetch_error
    )
    assert by["svc"].error is None and by["svc"].status == "unchanged"  # read as it is
    assert by["local"].closed == 1 and not by["local"].fetched  # no remote: nothing to fetch
    info = {r.name: r for r in await Repos(backlog).all()}["svc"]
    assert info.fetch_error == by["svc"].fetch_error and info.fetch_error_at is not None
    assert info.last_fetch_at == good  # the last good one is kept

    # the truth's age: stale after OB_TRUTH_MAX_AGE
    fresh = await truth_age(backlog.pool, 3600)  # failing, not stale yet: `ob status` says so
    assert (fresh.stale_total, fresh.failing_total) == (0, 1) and fresh.stale == []
    assert fresh.repos[0].name == "svc" and fresh.repos[0].fetch_error == info.fetch_error
    await backlog.pool.execute("update repos set last_fetch_at = now() - interval '2 hours'")
    age = await truth_age(backlog.pool, 3600)
    assert age.fetched == 1 and [s.name for s in age.stale] == ["svc"]
    assert age.stale[0].fetch_error == info.fetch_error
    digest = await Digests(backlog).build()
    assert [s.name for s in digest.truth.stale] == ["svc"]
    text = render_digest(digest, backlog.settings.tz)
    assert "Truth age</b>: 1 of 1 repo(s) not fetched for over 1 h" in text
    assert "• svc (last good fetch 2h ago): " in text and "does not appear to be a git" in text


async def test_fetching_can_be_turned_off_per_repo_and_per_run(
    backlog: Backlog, make_forge
) -> None:
    forge, mine, agent = seeded(make_forge)
    info = await Repos(backlog).add(mine.path, OP, name="svc", fetch=False)
    assert info.fetch_enabled is False and info.remote == "origin"
    key = await file(backlog, "x", repo="svc")
    rec = Reconciler(backlog)
    await scan(rec)
    agent.commit(f"Closes {key}")
    agent.git("push", "-q", "origin", "main")
    (res,) = (await scan(rec)).repos
    assert not res.fetched and res.closed == 0  # never fetched: the push is not seen

    info = await Repos(backlog).set_fetch("svc", True, OP)
    assert info.fetch_enabled
    fetch_set = await backlog.pool.fetchval(
        "select details from events where kind = 'repo_fetch_set'"
    )
    assert fetch_set == {"repo": "svc", "fetch": True}
    (res,) = (await scan(rec, fetch=False)).repos  # `ob reconcile --no-fetch`: not this run
    assert not res.fetched and res.closed == 0
    (res,) = (await scan(rec)).repos
    assert res.fetched and res.closed == 1


async def test_no_prompt_ever_waits_and_a_slow_fetch_is_stopped(
    backlog: Backlog, settings, make_forge, tmp_path
) -> None:
    """A remote that asks for a password (HTTP 401) fails at once with what to do; one that
    hangs is stopped after OB_FETCH_TIMEOUT. The round goes on either way."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class AskForPassword(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="forge"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), AskForPassword)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        forge, mine, agent = seeded(make_forge)
        mine.git("remote", "set-url", "origin", f"http://127.0.0.1:{server.server_port}/web.git")
        await Repos(backlog).add(mine.path, OP, name="private")
        slow = forge.clone("slow")
        script = tmp_path / "slow-upload-pack"
        script.write_text('#!/bin/sh\nsleep 30\nexec git upload-pack "$@"\n')
        script.chmod(0o755)
        slow.git("config", "remote.origin.uploadpack", str(script))
        await Repos(backlog).add(slow.path, OP, name="slow")
        quick = Backlog(backlog.pool, settings.model_copy(update={"fetch_timeout": 2}))
        summary = await Reconciler(quick).run()
        by = {r.name: r for r in summary.repos}
        assert "ob never prompts" in by["private"].fetch_error
        assert "credential helper" in by["private"].fetch_error
        assert "took over 2s and was stopped" in by["slow"].fetch_error
        assert not summary.errors
    finally:
        server.shutdown()


def _logging_upload_pack(tmp_path, log) -> str:
    """An upload-pack that writes when each fetch starts and ends (and is slow enough for two
    reconcilers to overlap)."""
    script = tmp_path / "logging-upload-pack"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "start $(pwd) $(date +%s%N)" >> {log}\n'
        "sleep 0.3\n"
        'git upload-pack "$@"; rc=$?\n'
        f'echo "end $(pwd) $(date +%s%N)" >> {log}\n'
        "exit $rc\n"
    )
    script.chmod(0o755)
    return str(script)


async def test_two_reconcilers_never_fetch_or_read_one_repo_at_once(
    backlog: Backlog, pool: asyncpg.Pool, make_forge, tmp_path
) -> None:
    log = tmp_path / "fetches.log"
    script = _logging_upload_pack(tmp_path, log)
    keys = []
    for i in range(3):
        forge, mine, agent = seeded(make_forge, f"r{i}")
        mine.git("config", "remote.origin.uploadpack", script)
        await Repos(backlog).add(mine.path, OP, name=f"r{i}")
        key = await file(backlog, f"t{i}", repo=f"r{i}")
        agent.commit(f"Closes {key}")
        agent.git("push", "-q", "origin", "main")
        keys.append(key)
    # two `ob serve` processes' rounds at once: each repo is fetched and read by one of them
    first, second = await asyncio.gather(Reconciler(backlog).run(), Reconciler(backlog).run())
    statuses = sorted((r.name, r.status) for r in first.repos + second.repos)
    assert [s for _, s in statuses].count("busy") == 3, statuses
    assert first.total("closed") + second.total("closed") == 3
    assert len(log.read_text().splitlines()) == 6  # three fetches, one per repo

    # a webhook's refresh waits for the lock instead: the fetches follow one another
    log.write_text("")
    await asyncio.gather(
        *(Reconciler(backlog).run(["r0"], wait=True, discover_roots=False) for _ in range(3))
    )
    lines = [ln.split() for ln in log.read_text().splitlines()]
    assert [ln[0] for ln in lines] == ["start", "end"] * 3  # never two at once
    for k in keys:
        assert (await kinds(backlog, k)).count("closed_by_commit") == 1


async def test_a_scheduled_round_runs_in_one_process(backlog: Backlog, make_repo) -> None:
    repo = make_repo("web")
    repo.commit("init")
    await Repos(backlog).add(repo.path, OP)
    a, b = Reconciler(backlog), Reconciler(backlog)
    ran = await asyncio.gather(a.scheduled("host:1", 150), b.scheduled("host:2", 150))
    assert sorted(r is None for r in ran) == [False, True]
    assert await a.scheduled("host:1", 150) is None  # this round ran already
    await backlog.pool.execute("update scheduled_rounds set started_at = now() - interval '1 h'")
    assert await b.scheduled("host:2", 150) is not None


# ------------------------------------------------------------------------ URLs and configs


def test_remote_urls_normalise_to_one_key(tmp_path) -> None:
    same = [
        "https://github.com/Acme/Web.git",
        "https://github.com/acme/web",
        "https://user:token@github.com/acme/web.git/",
        "http://github.com:443/acme/web",
        "git@github.com:acme/web.git",
        "github.com:acme/web",
        "ssh://git@github.com/acme/web.git",
        "ssh://git@github.com:22/acme/web",
        "git://github.com/acme/web.git",
    ]
    assert {normalise_url(u) for u in same} == {"github.com/acme/web"}
    assert normalise_url("git@gitlab.example.com:group/sub/proj.git") == (
        "gitlab.example.com/group/sub/proj"
    )
    bare = tmp_path / "origin.git"
    assert normalise_url(str(bare)) == normalise_url(f"file://{bare}/") == str(tmp_path / "origin")
    assert looks_like_url("git@github.com:acme/web.git") and looks_like_url("https://x.org/a")
    assert not looks_like_url(str(tmp_path)) and not looks_like_url("some/relative/dir")


def test_the_default_branch_remote_is_read_from_a_hand_written_config(make_repo) -> None:
    repo = make_repo("cfg")
    repo.commit("init")
    config = repo.path / ".git" / "config"
    config.write_text(
        config.read_text()
        + "# a comment\n"
        + '[remote "origin"]\n\turl = git@github.com:me/fork.git ; my fork\n'
        + "\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
        + '[remote "upstream"]\n\turl = "https://github.com/acme/cfg.git"\n'
        + '[branch "main"]\n\tremote = upstream\n\tmerge = refs/heads/main\n'
    )
    # git agrees with what ob reads
    assert repo.git("config", "branch.main.remote") == "upstream"
    remote = default_remote(repo.path, "main")
    assert remote == ("upstream", "https://github.com/acme/cfg.git", "github.com/acme/cfg")
    assert default_remote(repo.path, "other").name == "origin"  # no branch config: origin
