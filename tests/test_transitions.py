"""Every lease transition writes its event and its outbox row in the transition's own
transaction: the rows it wrote carry the transaction id (xmin) of the lease or task row it
changed. However the claim path is made cheaper, this must hold."""

from __future__ import annotations

import asyncpg

from core.backlog import Backlog
from core.leases import Leases
from core.models import Lane
from core.spec import make_spec
from tests.filing import file
from tests.test_leases import expire

# The transaction that wrote the task's lease row, its task row, and the newest event (and
# outbox row) of a kind for the task.
_XMINS = """
select (select l.xmin::text from task_leases l where l.task_id = t.id) as lease,
       (select t.xmin::text) as task,
       (select e.xmin::text from events e where e.task_id = t.id and e.kind = $2
        order by e.id desc limit 1) as event,
       (select o.xmin::text from outbox o where o.task_id = t.id and o.kind = $3
        order by o.id desc limit 1) as notice
from tasks t where t.number = $1
"""


async def written_together(
    pool: asyncpg.Pool, key: str, event: str, notice: str | None = None, row: str = "lease"
) -> None:
    got = await pool.fetchrow(_XMINS, int(key.split("-")[1]), event, notice)
    assert got["event"] is not None, f"no {event} event for {key}"
    assert got["event"] == got[row], f"{event} of {key} written apart from its {row} row: {got}"
    if notice is not None:
        assert got["notice"] == got[row], f"{notice} of {key} written apart: {got}"


async def test_each_transition_writes_its_event_and_notice_with_it(
    backlog: Backlog, leases: Leases, make_agent, pool: asyncpg.Pool
) -> None:
    codex, _ = await make_agent("codex")
    grok, _ = await make_agent("grok")
    done = await file(backlog, "finish me")
    dig = await file(backlog, "look into it", Lane.INVESTIGATION)
    back = await file(backlog, "give me back")
    later = await file(backlog, "needs something first")
    lost = await file(backlog, "held by one who goes away")
    swept = await file(backlog, "expires unclaimed")

    lease = await leases.claim(codex)  # the usual claim: no lease to take over
    assert lease is not None and lease.key == done
    await written_together(pool, done, "claimed")
    await leases.heartbeat(done, codex, lease.epoch)
    await written_together(pool, done, "heartbeat")
    await leases.complete(done, codex, lease.epoch, commits=["3f9e2a1"], note="shipped")
    await written_together(pool, done, "completed", "task_completed", row="task")
    await written_together(pool, done, "completed", "task_completed", row="lease")

    lease = await leases.claim(codex)
    assert lease is not None and lease.key == dig
    await leases.findings(dig, codex, lease.epoch, "the cache is stale after a deploy")
    await written_together(pool, dig, "findings", "findings_reported", row="task")

    lease = await leases.claim(codex)
    assert lease is not None and lease.key == back
    await leases.release(back, codex, lease.epoch, "cannot reproduce")
    await written_together(pool, back, "released")

    lease = await leases.claim(codex)
    assert lease is not None and lease.key == back
    await leases.complete(back, codex, lease.epoch)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == later
    await leases.handoff(later, codex, lease.epoch, make_spec(title="the index it needs"))
    await written_together(pool, later, "handed_off", "handoff")

    # a claim that takes over an expired lease records the expiry in the same statement
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == lost
    await expire(pool, lost)
    taken = await leases.claim(grok)
    assert taken is not None and taken.key == lost and taken.epoch == lease.epoch + 1
    await written_together(pool, lost, "expired", "lease_expired")
    await written_together(pool, lost, "claimed")

    # the sweep records an expiry nobody claimed
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == swept
    await expire(pool, swept)
    assert await leases.sweep() == 1
    await written_together(pool, swept, "expired", "lease_expired")
