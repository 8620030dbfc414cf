"""Prerequisite links: readiness follows them, cycles are refused."""

from __future__ import annotations

import asyncio

import pytest

from core.backlog import Backlog
from core.deps import Prerequisites
from core.errors import Forbidden, Invalid, InvalidTransition
from core.leases import Leases
from core.models import Actor, Lane
from core.spec import make_spec

OP = Actor.operator("test")


async def test_links_block_and_cycles_are_refused(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    for t in ("a", "b", "c"):
        await backlog.file(make_spec(title=t), OP, lane=Lane.AUTONOMOUS)
    await Prerequisites(backlog).add("OB-1", "OB-2", OP)
    task = await Prerequisites(backlog).add("OB-2", "OB-3", OP)
    assert task.blocked_by == ["OB-3"] and task.display_status == "blocked"
    with pytest.raises(InvalidTransition, match="cycle"):
        await Prerequisites(backlog).add("OB-3", "OB-1", OP)
    with pytest.raises(Invalid, match="own prerequisite"):
        await Prerequisites(backlog).add("OB-1", "ob-1", OP)
    with pytest.raises(Forbidden):
        await Prerequisites(backlog).add("OB-3", "OB-1", codex)
    # only the end of the chain is ready
    lease = await leases.claim(codex)
    assert lease.key == "OB-3"
    assert await leases.claim(codex) is None
    await Prerequisites(backlog).remove("OB-1", "OB-2", OP)
    assert (await leases.claim(codex)).key == "OB-1"
    with pytest.raises(Invalid, match="does not wait on"):
        await Prerequisites(backlog).remove("OB-1", "OB-2", OP)
    kinds = [e.kind for e in await backlog.history("OB-1")]
    assert kinds == ["filed", "dep_added", "dep_removed", "claimed"]


async def test_two_prerequisites_finished_at_once_unblock_exactly_once(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    """Two agents complete the two prerequisites of one task within milliseconds, many times:
    each time the task gets exactly one `unblocked` event and one notice."""
    codex, _ = await make_agent("codex")
    claude, _ = await make_agent("claude")
    trials = 30
    waiting = []
    for i in range(trials):
        w = await backlog.file(make_spec(title=f"waits {i}"), OP, lane=Lane.DECISION)
        for _ in range(2):
            p = await backlog.file(make_spec(title=f"prereq of {i}"), OP, lane=Lane.AUTONOMOUS)
            await Prerequisites(backlog).add(w.key, p.key, OP)
        waiting.append(w)
    for _ in range(trials):
        a, b = await leases.claim(codex), await leases.claim(claude)
        assert a is not None and b is not None
        await asyncio.gather(
            leases.complete(a.key, codex, a.epoch), leases.complete(b.key, claude, b.epoch)
        )
    for w in waiting:
        kinds = [e.kind for e in await backlog.history(w.key)]
        assert kinds.count("unblocked") == 1, (w.key, kinds)
    notices = await backlog.pool.fetchval(
        "select count(*) from outbox where kind = 'task_unblocked'"
    )
    assert notices == trials
    # nothing is announced twice later either (the sweep's safety net finds nothing new)
    assert await leases.announce_unblocked() == 0


async def test_a_finish_never_announced_is_announced_by_the_sweep_once(
    backlog: Backlog, leases: Leases
) -> None:
    """A process that died between a completion's commit and its announcement: the sweep's
    safety net announces the ready task, once."""
    w = await backlog.file(make_spec(title="waits"), OP, lane=Lane.DECISION)
    p = await backlog.file(make_spec(title="prereq"), OP, lane=Lane.AUTONOMOUS)
    await Prerequisites(backlog).add(w.key, p.key, OP)
    await backlog.pool.execute(  # the completion committed; its process died right after
        "with lease as (update task_leases set ready = false"
        " where task_id = (select id from tasks where number = $1))"
        " update tasks set status = 'done', completed_at = now() where number = $1",
        p.number,
    )
    assert await leases.announce_unblocked() == 1
    assert await leases.announce_unblocked() == 0
    (event,) = [e for e in await backlog.history(w.key) if e.kind == "unblocked"]
    assert event.details == {"prerequisite": p.key}
