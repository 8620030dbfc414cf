"""Repair and undo (issue 17): a rejected prerequisite hands its waiting tasks back to the
operator, done and rejected tasks can be reopened, tokens rotate, edits refuse what they cannot
do, and likely duplicates are marked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from core.agents import Agents
from core.backlog import Backlog, spec_of
from core.deps import Prerequisites
from core.errors import Invalid, InvalidTransition, LeaseError, NotFound
from core.feed import Feed, FeedFilter
from core.git.reconcile import Reconciler
from core.git.remotes import normalise_url as remote_key
from core.git.repos import Repos
from core.leases import Leases
from core.models import Actor, Lane, Status
from core.spec import make_spec
from tests.filing import OP, file, kinds


async def outbox(pool: asyncpg.Pool, kind: str) -> list[dict]:
    rows = await pool.fetch("select payload from outbox where kind = $1 order by id", kind)
    return [r["payload"] for r in rows]


# ------------------------------------------------------------- 1. rejected prerequisites


async def test_rejecting_a_prerequisite_hands_the_waiting_task_to_the_operator(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    parent = await file(backlog, "ship the report", priority=1)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == parent
    _, prereq = await leases.handoff(parent, codex, lease.epoch, make_spec(title="get access"))
    other = await file(backlog, "also waits", Lane.TRIAGE)
    await Prerequisites(backlog).add(other, prereq.key, OP)

    await backlog.reject(prereq.key, OP, "we will not get access")

    for key, before in ((parent, Lane.AUTONOMOUS), (other, Lane.TRIAGE)):
        task = await backlog.get(key)
        assert task.lane is Lane.DECISION and task.status is Status.OPEN, key
        assert (await kinds(backlog, key))[-1] == "prerequisite_rejected"
        (event,) = [e for e in await backlog.history(key) if e.kind == "prerequisite_rejected"]
        assert event.details["prerequisite"] == prereq.key
        assert event.details["from"] == before.value
    notices = await outbox(backlog.pool, "prerequisite_rejected")
    assert {(n["key"], n["prerequisite"]) for n in notices} == {
        (parent, prereq.key),
        (other, prereq.key),
    }
    assert all(n["reason"] == "we will not get access" for n in notices)
    # no agent takes the waiting task meanwhile: it is the operator's to decide
    assert await leases.claim(codex) is None


async def test_a_waiting_task_already_in_decision_is_told_and_a_held_one_loses_its_lease(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    held = await file(backlog, "held")
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == held
    deciding = await file(backlog, "deciding", Lane.DECISION)
    prereq = await file(backlog, "prereq", Lane.TRIAGE)
    await Prerequisites(backlog).add(held, prereq, OP)
    await Prerequisites(backlog).add(deciding, prereq, OP)
    draft = (await backlog.file(make_spec(title="a draft waits"), codex)).key
    await Prerequisites(backlog).add(draft, prereq, OP)
    rejected = await backlog.reject(prereq, OP)
    # the answer says what the rejection did to the tasks waiting on it
    assert rejected.key == prereq and rejected.status is Status.REJECTED
    assert [
        (h.key, h.title, h.status, h.from_lane, h.lane, h.lease_holder)
        for h in rejected.handed_back
    ] == [
        (held, "held", Status.OPEN, Lane.AUTONOMOUS, Lane.DECISION, "codex"),
        (deciding, "deciding", Status.OPEN, Lane.DECISION, Lane.DECISION, None),
        (draft, "a draft waits", Status.DRAFT, None, None, None),
    ]
    assert [h.moved for h in rejected.handed_back] == [True, False, False]
    task = await backlog.get(held)
    assert task.lane is Lane.DECISION and task.lease_holder is None
    assert "prerequisite_rejected" in await kinds(backlog, deciding)
    assert (await backlog.get(deciding)).lane is Lane.DECISION
    assert len(await outbox(backlog.pool, "prerequisite_rejected")) == 3
    # a prerequisite nothing waits on hands nothing back
    assert (await backlog.reject(await file(backlog, "alone"), OP)).handed_back == []


async def test_dep_add_refuses_a_rejected_or_missing_prerequisite(backlog: Backlog) -> None:
    waiting = await file(backlog, "waits")
    gone = await file(backlog, "gone", Lane.TRIAGE)
    await backlog.reject(gone, OP)
    with pytest.raises(InvalidTransition, match=f"{gone} was rejected"):
        await Prerequisites(backlog).add(waiting, gone, OP)
    with pytest.raises(NotFound, match="no task 'OB-99'"):
        await Prerequisites(backlog).add(waiting, "OB-99", OP)
    assert (await backlog.get(waiting)).blocked_by == []


# ------------------------------------------------------------------------- 2. reopen


async def test_reopen_a_done_task_keeps_its_evidence_in_history(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    key = await file(backlog, "fix the cache", repo="web")
    waiting = await file(backlog, "after the cache", Lane.TRIAGE)
    await Prerequisites(backlog).add(waiting, key, OP)
    lease = await leases.claim(codex)
    assert lease is not None
    await leases.complete(key, codex, lease.epoch, commits=["abc1234"], note="typo close")
    assert (await backlog.get(waiting)).blocked_by == []

    task = await backlog.reopen(key, OP, "closed by a typo in a commit message")
    assert (task.status, task.lane) == (Status.OPEN, Lane.AUTONOMOUS)
    assert task.completed_by is None and task.commits == [] and task.verified_at is None
    (event,) = [e for e in await backlog.history(key) if e.kind == "reopened"]
    assert event.actor == "operator:test"
    assert event.details["from"] == "done" and event.details["commits"] == ["abc1234"]
    assert event.details["completed_by"] == "agent:codex"
    assert event.details["reason"] == "closed by a typo in a commit message"
    assert "completed" in await kinds(backlog, key)  # the completion stays in the history
    (notice,) = await outbox(backlog.pool, "task_reopened")
    assert notice["key"] == key and notice["from"] == "done"
    # it waits again, and agents may take it again
    assert (await backlog.get(waiting)).blocked_by == [key]
    again = await leases.claim(codex)
    assert again is not None and again.key == key and again.epoch == lease.epoch + 1
    with pytest.raises(InvalidTransition, match=f"cannot reopen {key}: it is claimed"):
        await backlog.reopen(key, OP)


async def test_reopen_a_rejected_task_makes_it_a_draft_again(backlog: Backlog) -> None:
    agent = Actor.agent("codex", 1)
    draft = await backlog.file(make_spec(title="an idea", lane="autonomous"), agent)
    await backlog.reject(draft.key, OP, "not now")
    task = await backlog.reopen(draft.key, OP, "now is the time", lane=Lane.INVESTIGATION)
    assert task.status is Status.DRAFT and task.lane is Lane.INVESTIGATION
    assert task.rejected_by is None and task.rejected_reason is None
    (event,) = [e for e in await backlog.history(draft.key) if e.kind == "reopened"]
    assert event.details["from"] == "rejected" and event.details["rejected_reason"] == "not now"
    approved = await backlog.approve(draft.key, OP, Lane.AUTONOMOUS)
    assert approved.status is Status.OPEN
    # an approved task rejected later comes back as a draft too: approved anew
    await backlog.reject(draft.key, OP)
    task = await backlog.reopen(draft.key, OP)
    assert task.status is Status.DRAFT and task.approved_by is None


async def test_only_done_and_rejected_tasks_reopen(backlog: Backlog) -> None:
    key = await file(backlog, "still open")
    with pytest.raises(InvalidTransition, match="only done and rejected tasks reopen"):
        await backlog.reopen(key, OP)
    with pytest.raises(NotFound):
        await backlog.reopen("OB-77", OP)


async def test_a_draft_closed_by_a_commit_reopens_as_a_draft(backlog: Backlog) -> None:
    """Reopening never slips a task past the approval gate."""
    draft = await backlog.file(make_spec(title="agent idea"), Actor.agent("codex", 1))
    await backlog.pool.execute(  # what a `Closes OB-1` commit does to a draft
        "update tasks set status = 'done', completed_at = now() where number = $1", draft.number
    )
    task = await backlog.reopen(draft.key, OP)
    assert task.status is Status.DRAFT and task.approved_at is None


# ------------------------------------------------------------------- 3. agent tokens


async def test_rotate_kills_the_old_token_at_once_and_keeps_the_leases(
    backlog: Backlog, gateway: str, make_agent
) -> None:
    _, old = await make_agent("codex")
    key = await file(backlog, "long job")
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as c:
        auth = {"Authorization": f"Bearer {old}"}
        lease = (await c.post("/v1/claim", headers=auth)).json()["lease"]
        assert (await c.get("/v1/me", headers=auth)).status_code == 200  # cached by now
        info, new = await Agents(backlog).rotate("codex", OP)
        assert info.name == "codex" and new != old
        for _ in range(50):  # the rotation's NOTIFY clears the gateway's cache within moments
            r = await c.get("/v1/me", headers=auth)
            if r.status_code == 401:
                break
            await asyncio.sleep(0.02)
        assert r.status_code == 401 and "ob agent rotate" in r.json()["message"]
        # the lease is kept: the new token heartbeats and completes it with the same epoch
        fresh = {"Authorization": f"Bearer {new}"}
        r = await c.post(
            f"/v1/tasks/{key}/heartbeat", headers=fresh, json={"epoch": lease["epoch"]}
        )
        assert r.status_code == 200, r.text
        r = await c.post(f"/v1/tasks/{key}/complete", headers=fresh, json={"epoch": lease["epoch"]})
        assert r.status_code == 200 and r.json()["status"] == "done"
    assert "agent_rotated" in [
        e["kind"] for e in await backlog.pool.fetch("select kind from events")
    ]


async def test_a_revoked_name_can_be_added_again_an_active_one_cannot(
    backlog: Backlog, make_agent
) -> None:
    grok, _ = await make_agent("grok")
    with pytest.raises(Invalid, match="ob agent rotate grok"):
        await Agents(backlog).add("grok", OP)
    await Agents(backlog).revoke("grok", OP)
    with pytest.raises(NotFound, match="no active agent named 'grok'"):
        await Agents(backlog).rotate("grok", OP)
    info, token = await Agents(backlog).add("grok", OP, ["grok@example.com"])
    assert info.revoked_at is None and info.git_emails == ["grok@example.com"]
    again = await Agents(backlog).authenticate(token)
    assert again.name == "grok" and again.agent_id == grok.agent_id  # one identity, one history


# -------------------------------------------------------------------------- 4. repos


def roots_backlog(backlog: Backlog, roots: Path) -> Backlog:
    settings = backlog.settings.model_copy(update={"repo_roots": [roots]})
    return Backlog(backlog.pool, settings)


async def test_repo_rm_stops_scanning_and_its_tasks_keep_the_name(
    backlog: Backlog, make_repo, tmp_path: Path
) -> None:
    repo = make_repo("web")
    repo.commit("init")
    b = roots_backlog(backlog, tmp_path / "repos")
    assert (await Reconciler(b).run()).discovered == ["web"]
    key = await file(b, "fix the login", repo="web")

    removed = await Repos(b).remove("web", OP)
    assert (removed.name, removed.path, removed.unfinished) == ("web", str(repo.path), 1)
    repo.commit(f"Fix the login\n\nCloses: {key}")
    summary = await Reconciler(b).run()
    assert summary.discovered == [] and summary.repos == []  # not scanned, not found again
    (skip,) = summary.skipped
    assert skip.path == str(repo.path) and "ob repo rm" in skip.reason
    task = await b.get(key)
    assert task.status is Status.OPEN and task.repo == "web"
    assert await Repos(b).all() == []
    events = await b.pool.fetch("select details from events where kind = 'repo_removed'")
    assert [e["details"]["repo"] for e in events] == ["web"]
    with pytest.raises(NotFound, match="no repo named 'web'"):
        await Repos(b).remove("web", OP)

    await Repos(b).add(repo.path, OP)  # registered again on purpose: scanned again
    summary = await Reconciler(b).run()
    assert summary.skipped == [] and (await b.get(key)).status is Status.DONE


async def test_a_second_clone_of_a_remote_under_the_roots_is_reported_not_registered(
    backlog: Backlog, make_repo, tmp_path: Path
) -> None:
    source = make_repo("source")
    source.commit("init")
    roots = tmp_path / "roots"
    for where, url in (("a/web", str(source.path)), ("b/web-copy", f"file://{source.path}/")):
        (roots / where).parent.mkdir(parents=True, exist_ok=True)
        source.git("clone", "-q", url, str(roots / where))
    b = roots_backlog(backlog, roots)
    summary = await Reconciler(b).run()
    assert summary.discovered == ["web"]
    (skip,) = summary.skipped
    assert skip.path == str(roots / "b" / "web-copy")
    assert "another clone of" in skip.reason and "registered as 'web'" in skip.reason
    summary = await Reconciler(b).run()  # still reported, still not registered
    assert summary.discovered == [] and len(summary.skipped) == 1
    assert [r.name for r in await Repos(b).all()] == ["web"]


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:acme/web.git",
        "https://github.com/acme/web",
        "https://user@GitHub.com/acme/web.git/",
        "ssh://git@github.com:22/acme/web.git",
        "git://github.com/acme/web",
    ],
)
def test_remote_urls_of_one_repository_are_the_same_remote(url: str) -> None:
    assert remote_key(url) == remote_key("git@github.com:acme/web")
    assert remote_key(url) != remote_key("git@github.com:acme/web-api")
    assert remote_key(url) != remote_key("git@gitlab.com:acme/web")


# ------------------------------------------------------------------ 6. likely duplicates


async def test_drafts_repeating_a_title_are_marked_as_likely_duplicates(backlog: Backlog) -> None:
    codex = Actor.agent("codex", 1)
    first = await backlog.file(make_spec(title="Add retries to the uploader"), codex)
    assert first.duplicate_of is None
    again = await backlog.file(make_spec(title="add retries to the uploader."), codex)
    third = await backlog.file(make_spec(title="  Add  retries -- to the Uploader"), codex)
    assert again.duplicate_of == first.key and third.duplicate_of == first.key
    (filed,) = [e for e in await backlog.history(again.key) if e.kind == "filed"]
    assert filed.details["duplicate_of"] == first.key

    # a rejected task is remembered: filing it again is marked
    dropped = await file(backlog, "Rewrite it in Rust", Lane.TRIAGE)
    await backlog.reject(dropped, OP, "no")
    redo = await backlog.file(make_spec(title="rewrite it in rust"), codex)
    assert redo.duplicate_of == dropped
    # unrelated titles are not marked, in any script
    assert (await backlog.file(make_spec(title="Rewrite it in Go"), codex)).duplicate_of is None
    assert (await backlog.file(make_spec(title="数据库迁移"), codex)).duplicate_of is None
    assert (await backlog.file(make_spec(title="数据库备份"), codex)).duplicate_of is None

    # one call rejects it as a duplicate, naming the original
    task = await backlog.reject_duplicate(third.key, OP)
    assert task.status is Status.REJECTED and task.rejected_reason == f"duplicate of {first.key}"
    with pytest.raises(InvalidTransition, match="not marked as a likely duplicate"):
        await backlog.reject_duplicate(first.key, OP)
    # an edit that changes a draft's title looks again
    edited = await backlog.edit(first.key, OP, title="Rewrite it in Rust")
    assert edited.task.duplicate_of == dropped


# ------------------------------------------------------------- 8. the lane of an approval


async def test_urgent_work_goes_autonomous_only_when_the_operator_says_so(
    backlog: Backlog,
) -> None:
    codex = Actor.agent("codex", 1)
    urgent = await backlog.file(
        make_spec(title="rotate the credentials", priority="P0", lane="autonomous"), codex
    )
    with pytest.raises(Invalid, match="is P0 and codex suggests autonomous_safe"):
        await backlog.approve(urgent.key, OP)
    assert (await backlog.get(urgent.key)).status is Status.DRAFT
    assert (await backlog.approve(urgent.key, OP, Lane.AUTONOMOUS)).lane is Lane.AUTONOMOUS
    routine = await backlog.file(make_spec(title="bump a pin", lane="autonomous"), codex)
    assert (await backlog.approve(routine.key, OP)).lane is Lane.AUTONOMOUS
    urgent_idea = await backlog.file(make_spec(title="look at it", priority="P1"), codex)
    assert (await backlog.approve(urgent_idea.key, OP)).lane is Lane.TRIAGE


# ----------------------------------------------------------------------------- 7. feed


async def test_the_feed_filters_by_agent_and_repo(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    grok, _ = await make_agent("grok")
    web = await file(backlog, "web work", repo="web")
    await file(backlog, "api work", repo="api")
    for agent in (codex, grok):
        lease = await leases.claim(agent)
        assert lease is not None
        await leases.heartbeat(lease.key, agent, lease.epoch)
    everything = await Feed(backlog).recent(FeedFilter())
    assert [e.kind for e in everything][-2:] == ["claimed", "claimed"]
    assert "heartbeat" not in [e.kind for e in everything]
    by_codex = await Feed(backlog).recent(FeedFilter(agent="codex"))
    assert [(e.kind, e.key) for e in by_codex] == [("agent_added", None), ("claimed", web)]
    on_web = await Feed(backlog).recent(FeedFilter(repo="web", heartbeats=True))
    assert [e.kind for e in on_web] == ["filed", "claimed", "heartbeat"]
    assert all(e.repo == "web" and e.title == "web work" for e in on_web)
    assert [e.kind for e in await Feed(backlog).recent(FeedFilter(), limit=1)] == ["claimed"]


async def test_following_the_feed_misses_no_event_that_commits_late(
    backlog: Backlog, pool: asyncpg.Pool
) -> None:
    key = await file(backlog, "a task")
    follower = await Feed(backlog).follow(FeedFilter())
    follower.GRACE = 0  # (the moment between drawing an event's id and its writer's xid)
    assert await follower.poll() == []
    async with pool.acquire() as slow:
        tx = slow.transaction()
        await tx.start()  # an event written first, committed last
        await slow.execute(
            "insert into events (task_id, actor, kind) values (null, 'operator:x', 'agent_added')"
        )
        await backlog.edit(key, OP, priority=0)
        assert [e.kind for e in await follower.poll()] == ["edited"]
        assert [e.kind for e in await follower.poll()] == []
        await tx.commit()
    assert [e.kind for e in await follower.poll()] == ["agent_added"]
    async with pool.acquire() as gone:  # a rolled-back event leaves a gap that closes
        tx = gone.transaction()
        await tx.start()
        await gone.execute(
            "insert into events (task_id, actor, kind) values (null, 'operator:x', 'agent_added')"
        )
        await backlog.edit(key, OP, priority=1)
        assert [e.kind for e in await follower.poll()] == ["edited"]
        await tx.rollback()
    await backlog.edit(key, OP, priority=2)
    assert [e.kind for e in await follower.poll()] == ["edited"]
    # the rolled-back id is given up once the horizon passes it (other sessions on a shared
    # server may hold that back), or once it is old
    follower.MAX_AGE = 0
    assert await follower.poll() == [] and follower.gaps == {}


# --------------------------------------------------------------- 9. small hands


async def test_add_steps_without_replacing_them(backlog: Backlog) -> None:
    key = await file(backlog, "plan", steps=["measure"], risks=["noise"])
    edited = await backlog.edit(key, OP, add_steps=["tune", "measure again"], add_risks=["time"])
    assert edited.task.steps == ["measure", "tune", "measure again"]
    assert edited.task.risks == ["noise", "time"]
    assert edited.summary() == "steps 1 → 3, risks 1 → 2"
    edited = await backlog.edit(key, OP, steps=["only this"], add_steps=["and this"])
    assert edited.task.steps == ["only this", "and this"]


async def test_a_hand_off_prerequisite_is_as_urgent_as_its_task(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    urgent = await file(backlog, "urgent", priority=0)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == urgent
    _, prereq = await leases.handoff(urgent, codex, lease.epoch, make_spec(title="first this"))
    assert prereq.priority == 0
    later = await file(backlog, "some day", priority=3)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == later
    _, prereq = await leases.handoff(
        later, codex, lease.epoch, make_spec(title="sooner", priority="P1")
    )
    assert prereq.priority == 1  # more urgent than its task: kept


# -------------------------------------------------------- 13. what an edit cannot do


async def test_an_edit_from_a_spec_refuses_another_key_and_lifecycle_lines(
    backlog: Backlog,
) -> None:
    a = await file(backlog, "first", Lane.TRIAGE)
    b = await file(backlog, "second", Lane.TRIAGE)
    theirs = spec_of(await backlog.get(a))
    with pytest.raises(Invalid, match=f"the spec is {a}'s .key: {a}.; you are editing {b}"):
        await backlog.edit_from_spec(b, theirs, OP)
    assert (await backlog.get(b)).title == "second"
    ours = spec_of(await backlog.get(b))
    with pytest.raises(Invalid, match=f"`ob lane {b} decision`"):
        await backlog.edit_from_spec(b, ours.model_copy(update={"lane": Lane.DECISION}), OP)
    with pytest.raises(Invalid, match=f"`ob reject {b}"):
        await backlog.edit_from_spec(b, ours.model_copy(update={"status": Status.REJECTED}), OP)
    # the spec as `ob spec` prints it (its own key, status and lane) edits the task
    edited = await backlog.edit_from_spec(b, ours.model_copy(update={"title": "2nd"}), OP)
    assert edited.changes == {"title": ["second", "2nd"]}


# ------------------------------------------------------- 14. refusals that say what is wrong


async def test_each_refusal_says_what_is_actually_wrong(
    backlog: Backlog, leases: Leases, make_agent, pool: asyncpg.Pool
) -> None:
    codex, _ = await make_agent("codex")
    claude, _ = await make_agent("claude-code")
    key = await file(backlog, "x")
    assert (await leases.claim(claude)).epoch == 1  # type: ignore[union-attr]

    async def refusal(call) -> str:
        with pytest.raises(LeaseError) as err:
            await call
        return err.value.message

    # another agent presenting the holder's epoch does not hold the task: nothing is stale
    said = await refusal(leases.complete(key, codex, 1))
    assert said == (
        f"cannot complete {key}: you do not hold it; claude-code does (epoch 1). Stop work on "
        "it and run `ob next`."
    )
    # the holder with an epoch no claim of its gave: nobody else holds it
    said = await refusal(leases.heartbeat(key, claude, 7))
    assert said.startswith(f"cannot heartbeat {key}: epoch 7 is not one your claims got")
    assert "you hold it at epoch 1" in said and "holds it now" not in said
    # the holder that claimed it again since: its older epoch is stale
    await pool.execute("update task_leases set lease_expires_at = now() - interval '1 s'")
    assert (await leases.claim(claude)).epoch == 2  # type: ignore[union-attr]
    said = await refusal(leases.release(key, claude, 1))
    assert "epoch 1 is stale: you claimed it again since and hold it at epoch 2" in said
    # a former holder whose lease was taken over: stale, and who holds it now
    await pool.execute("update task_leases set lease_expires_at = now() - interval '1 s'")
    assert (await leases.claim(codex)).epoch == 3  # type: ignore[union-attr]
    said = await refusal(leases.complete(key, claude, 2))
    assert "your lease (epoch 2) is stale; codex holds it now (epoch 3)" in said
