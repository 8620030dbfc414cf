"""Fenced leases through core: claim order, expiry inside the claim, fencing, hand-off."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from core.backlog import Backlog
from core.db import create_pool
from core.errors import Forbidden, Invalid, InvalidTransition, LeaseError
from core.leases import Leases
from core.models import Lane, Status
from core.settings import Settings
from core.spec import SpecError, make_spec
from core.tasks import TaskFilter
from tests.filing import OP, file


async def expire(pool: asyncpg.Pool, key: str) -> None:
    """Move a lease's expiry into the past (what waiting out the TTL would do)."""
    await pool.execute(
        "update task_leases l set lease_expires_at = now() - interval '1 second'"
        " from tasks t where t.number = $1 and l.task_id = t.id",
        int(key.split("-")[1]),
    )


async def test_claim_by_priority_then_age_in_agent_lanes(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    await file(backlog, "triage only", Lane.TRIAGE)
    await file(backlog, "decision only", Lane.DECISION, priority=0)
    a = await file(backlog, "old p2")
    b = await file(backlog, "new p1", priority=1)
    c = await file(backlog, "investigate", Lane.INVESTIGATION, priority=2)
    got = [(await leases.claim(codex)).key for _ in range(3)]
    assert got == [b, a, c]
    assert await leases.claim(codex) is None


async def test_claim_respects_repos_and_trigger_dates(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    await file(backlog, "later", trigger_on="2999-01-01")
    web = await file(backlog, "web", repo="web")
    api = await file(backlog, "api", repo="api")
    assert (await leases.claim(codex, repos=["api"])).key == api
    assert (await leases.claim(codex)).key == web
    assert await leases.claim(codex) is None


async def test_lease_fields_and_events(backlog: Backlog, leases: Leases, make_agent) -> None:
    codex, _ = await make_agent("codex")
    key = await file(backlog, "x")
    lease = await leases.claim(codex)
    assert lease.key == key and lease.epoch == 1
    assert lease.task.status is Status.CLAIMED and lease.task.lease_holder == "codex"
    hb = await leases.heartbeat(key, codex, 1)
    assert hb.lease_expires_at >= lease.lease_expires_at
    done = await leases.complete(key, codex, 1, commits=["ABCDEF1"], note="shipped")
    assert done.status is Status.DONE and done.commits == ["abcdef1"] and done.verified_at is None
    assert [e.kind for e in await backlog.history(key)] == [
        "filed",
        "claimed",
        "heartbeat",
        "completed",
    ]
    assert [e.actor for e in await backlog.history(key)][1:] == ["agent:codex"] * 3


async def test_expired_lease_is_claimable_inside_the_claim(
    backlog: Backlog, leases: Leases, make_agent, pool: asyncpg.Pool
) -> None:
    codex, _ = await make_agent("codex")
    claude, _ = await make_agent("claude-code")
    key = await file(backlog, "x")
    await leases.claim(codex)
    assert await leases.claim(claude) is None
    await expire(pool, key)
    lease = await leases.claim(claude)
    assert lease.key == key and lease.epoch == 2 and lease.task.expiries == 1
    hist = await backlog.history(key)
    assert [e.kind for e in hist] == ["filed", "claimed", "expired", "claimed"]
    assert hist[2].details == {"holder": "codex", "epoch": 1, "expiries": 1}
    assert [r["kind"] for r in await pool.fetch("select kind from outbox")] == ["lease_expired"]


async def test_stale_holder_is_refused_everywhere(
    backlog: Backlog, leases: Leases, make_agent, pool: asyncpg.Pool
) -> None:
    codex, _ = await make_agent("codex")
    claude, _ = await make_agent("claude-code")
    key = await file(backlog, "x")
    await leases.claim(codex)
    await expire(pool, key)
    await leases.claim(claude)  # epoch 2
    for call in (
        leases.heartbeat(key, codex, 1),
        leases.complete(key, codex, 1),
        leases.release(key, codex, 1),
        leases.handoff(key, codex, 1, make_spec(title="prereq")),
    ):
        with pytest.raises(LeaseError, match="claude-code holds it now \\(epoch 2\\)") as err:
            await call
        assert err.value.details["holder"] == "claude-code"
    # the holder presenting an epoch its claims never got is refused too, and told so
    with pytest.raises(LeaseError, match="epoch 1 is not one your claims got"):
        await leases.heartbeat(key, claude, 1)
    task = await backlog.get(key)
    assert task.status is Status.CLAIMED and task.lease_holder == "claude-code"
    assert await backlog.list(TaskFilter(status=[Status.OPEN])) == []


async def test_refusals_are_answered_from_a_pool_of_one_connection(
    backlog: Backlog, leases: Leases, make_agent, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A refused write gives its connection back before asking who holds the task: stale
    agents as many as the pool's connections are all answered, none waits forever."""
    codex, _ = await make_agent("codex")
    claude, _ = await make_agent("claude-code")
    key = await file(backlog, "x")
    await leases.claim(codex)
    await expire(pool, key)
    await leases.claim(claude)  # epoch 2
    one = await create_pool(settings.database_url, max_size=1)
    try:
        tight = Leases(Backlog(one, settings))
        for call in (
            tight.complete(key, codex, 1),
            tight.release(key, codex, 1),
            tight.findings(key, codex, 1, "found it"),
            tight.handoff(key, codex, 1, make_spec(title="prereq")),
        ):
            with pytest.raises(LeaseError, match="claude-code holds it now"):
                await asyncio.wait_for(call, 10)
    finally:
        await one.close()


async def test_expired_own_lease_is_refused(
    backlog: Backlog, leases: Leases, make_agent, pool
) -> None:
    codex, _ = await make_agent("codex")
    key = await file(backlog, "x")
    await leases.claim(codex)
    await expire(pool, key)
    with pytest.raises(LeaseError, match="your lease expired"):
        await leases.complete(key, codex, 1)


async def test_attempts_exhausted_go_to_the_operator(
    backlog: Backlog, leases: Leases, make_agent, pool: asyncpg.Pool
) -> None:
    codex, _ = await make_agent("codex")
    key = await file(backlog, "cursed")
    for _ in range(backlog.settings.max_expiries):
        assert (await leases.claim(codex)).key == key
        await expire(pool, key)
    assert await leases.claim(codex) is None
    task = await backlog.get(key)
    assert (task.status, task.lane, task.expiries) == (Status.OPEN, Lane.DECISION, 3)
    kinds = [r["kind"] for r in await pool.fetch("select kind from outbox order by id")]
    assert kinds == ["lease_expired", "lease_expired", "attempts_exhausted"]


async def test_sweep_records_expiries_once(
    backlog: Backlog, leases: Leases, make_agent, pool
) -> None:
    codex, _ = await make_agent("codex")
    key = await file(backlog, "x")
    await leases.claim(codex)
    await expire(pool, key)
    assert await leases.sweep() == 1
    assert await leases.sweep() == 0
    task = await backlog.get(key)
    assert task.status is Status.OPEN and task.lease_holder is None and task.expiries == 1
    assert (await leases.claim(codex)).epoch == 2
    assert [e.kind for e in await backlog.history(key)] == [
        "filed",
        "claimed",
        "expired",
        "claimed",
    ]


async def test_investigations_end_with_findings(
    backlog: Backlog, leases: Leases, make_agent, pool
) -> None:
    codex, _ = await make_agent("codex")
    key = await file(backlog, "why slow?", Lane.INVESTIGATION)
    lease = await leases.claim(codex)
    with pytest.raises(InvalidTransition, match="finish it with `ob findings`"):
        await leases.complete(key, codex, lease.epoch)
    task = await leases.findings(key, codex, lease.epoch, "N+1 query in /orders")
    assert (task.status, task.lane) == (Status.OPEN, Lane.DECISION)
    assert task.findings == "[codex] N+1 query in /orders"
    assert await leases.claim(codex) is None  # the decision is the operator's
    assert "findings_reported" in [r["kind"] for r in await pool.fetch("select kind from outbox")]


async def test_handoff_chain_across_two_agents(
    backlog: Backlog, leases: Leases, make_agent, pool: asyncpg.Pool
) -> None:
    backlog.settings.auto_approve_prerequisites = False
    codex, _ = await make_agent("codex")
    claude, _ = await make_agent("claude-code")
    key = await file(backlog, "ship feature", repo="web")
    lease = await leases.claim(codex)
    original, prereq = await leases.handoff(
        key, codex, lease.epoch, make_spec(title="add the missing index"), reason="needs an index"
    )
    assert original.status is Status.OPEN and original.blocked_by == [prereq.key]
    assert prereq.status is Status.DRAFT and prereq.repo == "web"
    assert await leases.claim(claude) is None  # original blocked, prerequisite a draft
    await backlog.approve(prereq.key, OP, Lane.AUTONOMOUS)
    p = await leases.claim(claude)
    assert p.key == prereq.key
    await leases.complete(p.key, claude, p.epoch, commits=["abc1234"])
    assert (await backlog.get(key)).blocked_by == []
    again = await leases.claim(claude)
    assert again.key == key and again.epoch == 2
    await leases.complete(key, claude, again.epoch)
    assert (await backlog.get(key)).status is Status.DONE
    kinds = [r["kind"] for r in await pool.fetch("select kind from outbox order by id")]
    assert kinds == [
        "draft_filed",
        "handoff",
        "task_decided",
        "task_completed",
        "task_unblocked",
        "task_completed",
    ]
    assert [e.kind for e in await backlog.history(key)] == [
        "filed",
        "claimed",
        "handed_off",
        "unblocked",
        "claimed",
        "completed",
    ]


async def test_handoff_with_auto_approved_prerequisites(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    backlog.settings.auto_approve_prerequisites = True
    codex, _ = await make_agent("codex")
    key = await file(backlog, "x")
    lease = await leases.claim(codex)
    _, prereq = await leases.handoff(key, codex, lease.epoch, make_spec(title="first this"))
    assert prereq.status is Status.OPEN and prereq.lane is Lane.AUTONOMOUS
    assert (await leases.claim(codex)).key == prereq.key


async def test_free_text_with_nul_is_refused_clearly(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    key = await file(backlog, "why?", Lane.INVESTIGATION)
    lease = await leases.claim(codex)
    with pytest.raises(SpecError, match="findings contains the control character U\\+0000"):
        await leases.findings(key, codex, lease.epoch, "bad\x00byte")
    with pytest.raises(SpecError, match="reason contains the control character"):
        await leases.release(key, codex, lease.epoch, reason="x\x00")
    assert (await backlog.get(key)).status is Status.CLAIMED  # nothing changed
    with pytest.raises(Invalid, match="not a repository name"):
        await leases.claim(codex, repos=["web\x00"])


async def test_operators_are_not_agents(leases: Leases, backlog: Backlog) -> None:
    with pytest.raises(Forbidden):
        await leases.claim(OP)


async def test_rejecting_a_claimed_task_fences_the_holder(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    key = await file(backlog, "x")
    lease = await leases.claim(codex)
    await backlog.reject(key, OP, "changed my mind")
    with pytest.raises(LeaseError, match="do not hold it \\(it is rejected"):
        await leases.complete(key, codex, lease.epoch)


async def test_32_concurrent_claimers_exactly_once(
    backlog: Backlog, leases: Leases, make_agent, pool: asyncpg.Pool
) -> None:
    n_tasks = 5000
    await pool.execute(
        """insert into tasks (title, status, lane, created_by, approved_by)
           select 'task ' || g, 'open', 'autonomous_safe', 'operator:test', 'operator:test'
           from generate_series(1, $1) g""",
        n_tasks,
    )
    agents = [(await make_agent(f"a{i}"))[0] for i in range(8)]
    claimed: list[tuple[str, int]] = []

    async def worker(i: int) -> None:
        agent = agents[i % len(agents)]
        while (lease := await leases.claim(agent)) is not None:
            claimed.append((lease.key, lease.epoch))
            await leases.complete(lease.key, agent, lease.epoch)

    await asyncio.gather(*(worker(i) for i in range(32)))
    keys = [k for k, _ in claimed]
    assert len(keys) == n_tasks and len(set(keys)) == n_tasks
    assert await pool.fetchval("select count(*) from tasks where status = 'done'") == n_tasks
    assert await pool.fetchval("select count(*) from events where kind = 'claimed'") == n_tasks
    assert len(await backlog.list(TaskFilter())) == 0


async def test_claimed_is_a_status_of_its_own_in_lists(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    held = await file(backlog, "held", priority=0)
    waiting = await file(backlog, "waiting")
    draft = (await backlog.file(make_spec(title="idea"), codex)).key
    await leases.claim(codex)

    async def keys(*statuses: Status) -> list[str]:
        return [t.key for t in await backlog.list(TaskFilter(status=list(statuses)))]

    assert await keys(Status.CLAIMED) == [held]
    assert await keys(Status.OPEN) == [waiting]
    assert await keys(Status.OPEN, Status.CLAIMED) == [held, waiting]
    assert await keys(Status.DRAFT, Status.CLAIMED) == [held, draft]
    ready = TaskFilter(status=[Status.OPEN], lane=[Lane.AUTONOMOUS], blocked=False)
    assert [t.key for t in await backlog.list(ready)] == [waiting]
    assert (await backlog.get(held)).status is Status.CLAIMED


async def test_retried_writes_are_replays_not_refusals(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    """A write that went through, retried by the same agent with the same epoch and payload
    (its answer was lost), answers with the task marked replayed; anything else still gets the
    refusal."""
    codex, _ = await make_agent("codex")
    grok, _ = await make_agent("grok")
    for title in ("ship", "look", "give back", "hand off"):
        lane = Lane.INVESTIGATION if title == "look" else Lane.AUTONOMOUS
        await backlog.file(make_spec(title=title), OP, lane=lane)
    ship, look, back, hand = [await leases.claim(codex) for _ in range(4)]
    assert ship and look and back and hand

    done = await leases.complete(ship.key, codex, ship.epoch, commits=["abc1234"], note="ok")
    again = await leases.complete(ship.key, codex, ship.epoch, commits=["abc1234"], note="ok")
    assert (done.replayed, again.replayed) == (False, True) and again.status == Status.DONE
    with pytest.raises(LeaseError, match="you do not hold it"):  # another payload: refused
        await leases.complete(ship.key, codex, ship.epoch, commits=["def5678"])
    with pytest.raises(LeaseError):  # another agent: refused
        await leases.complete(ship.key, grok, ship.epoch, commits=["abc1234"], note="ok")

    await leases.findings(look.key, codex, look.epoch, "the cache is cold")
    assert (await leases.findings(look.key, codex, look.epoch, "the cache is cold")).replayed

    await leases.release(back.key, codex, back.epoch, "cannot reproduce")
    assert (await leases.release(back.key, codex, back.epoch, "cannot reproduce")).replayed
    with pytest.raises(LeaseError):
        await leases.release(back.key, codex, back.epoch, "another reason")

    first, prereq = await leases.handoff(hand.key, codex, hand.epoch, make_spec(title="first"))
    task, again_prereq = await leases.handoff(hand.key, codex, hand.epoch, make_spec(title="first"))
    assert task.replayed and again_prereq.key == prereq.key
    kinds = [e.kind for e in await backlog.history(ship.key)]
    assert kinds.count("completed") == 1  # nothing happened twice
    assert len(await backlog.list(TaskFilter(status=[Status.DRAFT]))) == 1  # one prerequisite
