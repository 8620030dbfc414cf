"""Questions in core, over real PostgreSQL: asking is a fenced write, the answer lands in the
history and the notes, and a lease that ends with its question open (release, expiry by the
sweep or by another agent's claim, revocation) takes the task to the operator."""

from __future__ import annotations

import asyncpg
import pytest

from core.agents import Agents
from core.backlog import Backlog
from core.decisions import Decisions, PendingKind
from core.deps import Prerequisites
from core.errors import Invalid, InvalidTransition, LeaseError
from core.leases import Leases
from core.models import Actor, Lane, Status
from core.questions import Questions, chosen, question_id
from core.spec import make_spec

OP = Actor.operator("cli")


@pytest.fixture
def questions(backlog: Backlog) -> Questions:
    return Questions(backlog)


async def _held(backlog: Backlog, leases: Leases, make_agent, title: str = "cache layer"):
    actor, _ = await make_agent("codex")
    await backlog.file(make_spec(title=title, repo="web"), OP, lane=Lane.AUTONOMOUS)
    lease = await leases.claim(actor)
    assert lease is not None
    return actor, lease


async def _expire(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "update task_leases set lease_expires_at = now() - interval '1 s'"
        " where lease_agent_id is not null"
    )


async def test_ask_and_answer_from_the_cli(
    backlog: Backlog, leases: Leases, questions: Questions, make_agent, pool
) -> None:
    actor, lease = await _held(backlog, leases, make_agent)
    q = await questions.ask(
        lease.key, actor, lease.epoch, "Redis or Postgres?", ["redis", "Postgres"]
    )
    assert (q.status, q.options, q.asked_by, q.lease_held) == (
        "pending",
        ["redis", "Postgres"],
        "agent:codex",
        True,
    )
    again = await questions.ask(
        lease.key, actor, lease.epoch, "Redis or Postgres?", ["redis", "Postgres"]
    )
    assert again.id == q.id and again.replayed
    notice = await pool.fetchrow("select kind, payload from outbox order by id desc limit 1")
    assert notice["kind"] == "question_asked" and notice["payload"]["options"] == [
        "redis",
        "Postgres",
    ]
    answered = await questions.answer(lease.key, OP, "postgres")  # by the task's key
    assert (answered.status, answered.answer, answered.answered_by) == (
        "answered",
        "Postgres",
        "operator:cli",
    )
    task = await backlog.get(lease.key)
    assert task.notes.startswith("Decision: Postgres — answered by the operator (CLI) at ")
    assert f"(Q{q.id}: Redis or Postgres?)" in task.notes
    assert task.status == Status.CLAIMED  # the agent goes on with its lease
    kinds = [e.kind for e in await backlog.history(lease.key)]
    assert kinds[-2:] == ["question_asked", "question_answered"]
    with pytest.raises(InvalidTransition, match="already answered"):
        await questions.answer(f"Q{q.id}", OP, "redis")


async def test_only_the_holder_asks(
    backlog: Backlog, leases: Leases, questions: Questions, make_agent
) -> None:
    actor, lease = await _held(backlog, leases, make_agent)
    other, _ = await make_agent("grok")
    with pytest.raises(LeaseError, match="do not hold it|stale"):
        await questions.ask(lease.key, other, lease.epoch, "may I?")
    with pytest.raises(LeaseError):
        await questions.ask(lease.key, actor, lease.epoch + 1, "may I?")
    with pytest.raises(Invalid, match="at most 6"):
        await questions.ask(lease.key, actor, lease.epoch, "which?", [str(i) for i in range(7)])
    with pytest.raises(Invalid, match="empty"):
        await questions.ask(lease.key, actor, lease.epoch, "  ")
    with pytest.raises(Exception, match="operator"):
        await questions.answer(lease.key, actor, "yes")


@pytest.mark.parametrize("how", ["release", "sweep", "takeover", "revoke"])
async def test_a_lease_that_ends_with_its_question_open_goes_to_decision(
    how: str, backlog: Backlog, leases: Leases, questions: Questions, make_agent, pool
) -> None:
    actor, lease = await _held(backlog, leases, make_agent)
    await backlog.file(make_spec(title="later work"), OP, lane=Lane.AUTONOMOUS)
    q = await questions.ask(lease.key, actor, lease.epoch, "may I drop the column?", ["yes", "no"])
    if how == "release":
        await leases.release(lease.key, actor, lease.epoch, "cannot go on")
    elif how == "sweep":
        await _expire(pool)
        assert await leases.sweep() == 1
    elif how == "takeover":
        await _expire(pool)
        other, _ = await make_agent("grok")
        taken = await leases.claim(other)  # not the expired task: the next one
        assert taken is not None and taken.key == "OB-2"
    else:
        await Agents(backlog).revoke("codex", OP)
    task = await backlog.get(lease.key)
    assert (task.status, task.lane, task.lease_holder) == (Status.OPEN, Lane.DECISION, None)
    assert (await questions.get(q.id)).left_open_at is not None
    kinds = [e.kind for e in await backlog.history(lease.key)]
    assert "question_left_open" in kinds and "claimed" not in kinds[kinds.index("question_asked") :]
    notice = await pool.fetchrow(
        "select payload from outbox where kind = 'question_left_open' and task_id = $1", 1
    )
    assert notice["payload"]["id"] == q.id and notice["payload"]["key"] == lease.key
    (pending,) = (await Decisions(backlog).ranked([PendingKind.QUESTION])).items
    assert pending.question is not None and pending.question.id == q.id
    assert not pending.agent_waiting and pending.question.left_open_at is not None
    # answered, it goes back to its lane for the next agent, the decision in its notes
    await questions.answer(f"Q{q.id}", OP, "2")
    task = await backlog.get(lease.key)
    assert (task.lane, task.status) == (Lane.AUTONOMOUS, Status.OPEN)
    assert "Decision: no" in task.notes


async def test_an_operator_lane_change_is_not_undone(
    backlog: Backlog, leases: Leases, questions: Questions, make_agent
) -> None:
    actor, lease = await _held(backlog, leases, make_agent)
    await questions.ask(lease.key, actor, lease.epoch, "which index?")
    await backlog.move_lane(lease.key, Lane.INVESTIGATION, OP)
    task = await backlog.get(lease.key)
    assert task.lane == Lane.INVESTIGATION and task.lease_holder is None


async def test_a_finished_task_needs_no_answer(
    backlog: Backlog, leases: Leases, questions: Questions, make_agent
) -> None:
    actor, lease = await _held(backlog, leases, make_agent)
    q = await questions.ask(lease.key, actor, lease.epoch, "which index?")
    await leases.complete(lease.key, actor, lease.epoch, commits=["abc1234"])
    assert (await questions.get(q.id)).moot
    with pytest.raises(InvalidTransition, match="needs no answer"):
        await questions.answer(f"Q{q.id}", OP, "the btree")
    assert (await Decisions(backlog).ranked([PendingKind.QUESTION])).items == []


async def test_several_open_questions_are_answered_by_id(
    backlog: Backlog, leases: Leases, questions: Questions, make_agent
) -> None:
    actor, lease = await _held(backlog, leases, make_agent)
    a = await questions.ask(lease.key, actor, lease.epoch, "first?")
    b = await questions.ask(lease.key, actor, lease.epoch, "second?")
    with pytest.raises(Invalid, match=f"Q{a.id}, Q{b.id}"):
        await questions.answer(lease.key, OP, "x")
    assert (await questions.answer(f"#{b.id}", OP, "free text it is")).answer == "free text it is"


def test_answers_and_references() -> None:
    assert chosen(["redis", "postgres"], " 2 ") == "postgres"
    assert chosen(["redis", "postgres"], "REDIS") == "redis"
    assert chosen(["redis", "postgres"], "3") == "3"
    assert chosen([], "whatever you think") == "whatever you think"
    assert [question_id(r) for r in ("Q7", "q7", "#7", "7", "OB-7", "x")] == [
        7,
        7,
        7,
        7,
        None,
        None,
    ]


async def test_decisions_rank_by_what_they_release(backlog: Backlog, make_agent) -> None:
    """More waiting work released first; but while agents sit idle with nothing ready, what can
    give them work at once (nothing blocks it) goes first."""
    await make_agent("codex")  # idle: it holds nothing
    first = await backlog.file(make_spec(title="first, please"), OP)  # OB-1, triage
    blocked = await backlog.file(make_spec(title="blocked, many wait"), OP, lane=Lane.DECISION)
    await Prerequisites(backlog).add(blocked.key, first.key, OP)
    for title in ("waits a", "waits b"):
        waiting = await backlog.file(make_spec(title=title), OP)
        await Prerequisites(backlog).add(waiting.key, blocked.key, OP)
    free = await backlog.file(make_spec(title="free, nobody waits"), OP, lane=Lane.DECISION)
    found = await Decisions(backlog).ranked([PendingKind.DECISION])
    assert found.starved and [p.key for p in found.items] == [free.key, blocked.key]
    assert [p.unblocks for p in found.items] == [0, 2]
    await backlog.file(make_spec(title="work for codex"), OP, lane=Lane.AUTONOMOUS)
    found = await Decisions(backlog).ranked([PendingKind.DECISION])
    assert not found.starved and [p.key for p in found.items] == [blocked.key, free.key]
