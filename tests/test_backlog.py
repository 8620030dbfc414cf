"""The backlog service against real PostgreSQL: filing, the approval gate, lanes, edits, views."""

from __future__ import annotations

from datetime import UTC, date, datetime

import asyncpg
import pytest

from core.backlog import Backlog, spec_of
from core.errors import Forbidden, Invalid, InvalidTransition, NotFound
from core.models import Actor, Lane, Status
from core.spec import SpecError, make_spec, parse
from core.tasks import FEW_MATCHES, TaskFilter

OP = Actor.operator("test")
CODEX = Actor.agent("codex", 1)


async def outbox(pool: asyncpg.Pool) -> list[tuple[str, dict]]:
    rows = await pool.fetch("select kind, payload from outbox order by id")
    return [(r["kind"], r["payload"]) for r in rows]


async def test_operator_files_open_in_a_lane(backlog: Backlog, pool: asyncpg.Pool) -> None:
    task = await backlog.file(make_spec(title="Fix login", repo="web"), OP, lane=Lane.AUTONOMOUS)
    assert task.key == "OB-1"
    assert task.status is Status.OPEN
    assert task.lane is Lane.AUTONOMOUS
    assert task.approved_by == "operator:test"
    assert [e.kind for e in await backlog.history("OB-1")] == ["filed"]
    assert await outbox(pool) == []  # the operator does not need to hear of their own task


async def test_operator_default_lane_is_triage(backlog: Backlog) -> None:
    task = await backlog.file(make_spec(title="Raw idea"), OP)
    assert task.lane is Lane.TRIAGE


async def test_agent_files_a_draft_with_an_approval_card(
    backlog: Backlog, pool: asyncpg.Pool
) -> None:
    task = await backlog.file(make_spec(title="Add retries", lane="autonomous"), CODEX)
    assert task.status is Status.DRAFT
    assert task.approved_by is None
    assert task.lane is Lane.AUTONOMOUS  # the agent's suggestion, not yet in force
    [(kind, payload)] = await outbox(pool)
    assert kind == "draft_filed"
    assert payload["key"] == "OB-1" and payload["by"] == "agent:codex"


async def test_approve_into_lane(backlog: Backlog, pool: asyncpg.Pool) -> None:
    await backlog.file(make_spec(title="Add retries"), CODEX)
    task = await backlog.approve("ob-1", OP, Lane.INVESTIGATION)
    assert task.status is Status.OPEN
    assert task.lane is Lane.INVESTIGATION
    assert task.approved_by == "operator:test" and task.approved_at is not None
    hist = await backlog.history("OB-1")
    assert [e.kind for e in hist] == ["filed", "approved"]
    assert hist[1].actor == "operator:test"
    assert [k for k, _ in await outbox(pool)] == ["draft_filed", "task_decided"]


async def test_approve_uses_suggested_lane_else_triage(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="a", lane="decision"), CODEX)
    await backlog.file(make_spec(title="b"), CODEX)
    assert (await backlog.approve("OB-1", OP)).lane is Lane.DECISION
    assert (await backlog.approve("OB-2", OP)).lane is Lane.TRIAGE


async def test_reject_with_reason(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="Rewrite in Rust"), CODEX)
    task = await backlog.reject("OB-1", OP, "not now")
    assert task.status is Status.REJECTED
    assert task.rejected_reason == "not now"
    with pytest.raises(InvalidTransition, match="it was rejected"):
        await backlog.approve("OB-1", OP)
    with pytest.raises(InvalidTransition, match="it is rejected"):
        await backlog.edit("OB-1", OP, title="again")


async def test_approve_twice_says_where_it_is(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="x"), CODEX)
    await backlog.approve("OB-1", OP, Lane.AUTONOMOUS)
    with pytest.raises(InvalidTransition, match="already approved into autonomous_safe"):
        await backlog.approve("OB-1", OP)


async def test_agents_cannot_use_the_gate(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="x"), CODEX)
    for call in (
        backlog.approve("OB-1", CODEX),
        backlog.reject("OB-1", CODEX),
        backlog.move_lane("OB-1", Lane.AUTONOMOUS, CODEX),
        backlog.edit("OB-1", CODEX, title="mine now"),
    ):
        with pytest.raises(Forbidden, match="only the operator"):
            await call
    assert (await backlog.get("OB-1")).status is Status.DRAFT


async def test_move_lane(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="x"), OP)
    task = await backlog.move_lane("OB-1", Lane.AUTONOMOUS, OP)
    assert task.lane is Lane.AUTONOMOUS
    [_, ev] = await backlog.history("OB-1")
    assert ev.kind == "lane_changed"
    assert ev.details == {"from": "requires_triage", "to": "autonomous_safe"}
    with pytest.raises(InvalidTransition, match="already in autonomous_safe"):
        await backlog.move_lane("OB-1", Lane.AUTONOMOUS, OP)


async def test_move_lane_of_draft_points_to_approve(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="x"), CODEX)
    with pytest.raises(InvalidTransition, match="approve it into a lane"):
        await backlog.move_lane("OB-1", Lane.AUTONOMOUS, OP)


async def test_edit_records_a_diff(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="x", steps=["a"]), OP)
    edited = await backlog.edit("OB-1", OP, title="y", priority="P0", steps=["a", "b"])
    task = edited.task
    assert (task.title, task.priority, task.steps) == ("y", 0, ["a", "b"])
    assert edited.summary() == "title, priority P2 → P0, steps 1 → 2"
    ev = (await backlog.history("OB-1"))[-1]
    assert ev.kind == "edited"
    assert ev.details["changes"] == {
        "title": ["x", "y"],
        "priority": [2, 0],
        "steps": [["a"], ["a", "b"]],
    }


async def test_edit_without_change_writes_no_event(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="x"), OP)
    assert (await backlog.edit("OB-1", OP, title="x")).summary() == "nothing changed"
    assert len(await backlog.history("OB-1")) == 1


async def test_edit_refuses_bad_values_and_unknown_fields(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="x"), OP)
    with pytest.raises(SpecError, match="priority"):
        await backlog.edit("OB-1", OP, priority="P9")
    with pytest.raises(Invalid, match="cannot edit status"):
        await backlog.edit("OB-1", OP, status="done")
    assert (await backlog.get("OB-1")).priority == 2


async def test_edit_from_text_form(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="x"), OP)
    task = (
        await backlog.edit_from_spec("OB-1", parse("New title\nrepo: api\nsteps:\n- one"), OP)
    ).task
    assert (task.title, task.repo, task.steps) == ("New title", "api", ["one"])


async def test_unknown_key(backlog: Backlog) -> None:
    for key in ("OB-99", "XX-1", "nonsense", ""):
        with pytest.raises(NotFound, match="keys look like OB-12"):
            await backlog.get(key)


async def test_new_task_cannot_carry_key_or_a_finished_status(backlog: Backlog) -> None:
    with pytest.raises(Invalid, match="no key yet"):
        await backlog.file(make_spec(title="x", key="OB-5"), OP)
    with pytest.raises(Invalid, match="says it is 'shipped'"):
        await backlog.file(make_spec(title="x", status_word="shipped"), OP)


async def test_the_status_as_written_is_kept_shown_and_exported(backlog: Backlog) -> None:
    spec = parse("Rotate the keys\n**Status:** blocked (2026-11-18) — waiting for finance\n")
    draft = await backlog.file(spec, CODEX)
    assert (draft.status, draft.status_word, draft.status_date, draft.status_reason) == (
        Status.DRAFT,
        "blocked",
        date(2026, 11, 18),
        "waiting for finance",
    )
    assert draft.status_at == datetime(2026, 11, 18, tzinfo=UTC)  # the status date
    assert spec_of(draft).status_word == "blocked" and spec_of(draft).status is None
    # approved: still awaiting the operator's attention in a lane, the word still holds
    approved = await backlog.approve(draft.key, OP, Lane.DECISION)
    assert spec_of(approved).status_word == "blocked"
    # rejected: the lifecycle speaks, with its date and reason
    rejected = await backlog.reject(draft.key, OP, "not this quarter")
    out = spec_of(rejected)
    assert (out.status, out.status_word, out.status_reason) == (
        Status.REJECTED,
        None,
        "not this quarter",
    )
    assert out.status_date == rejected.status_at.date()
    # the written status is searchable, and so are steps and risks
    other = await backlog.file(
        make_spec(title="Cache", steps=["hash the normalised text"], risks=["stale vectors"]), OP
    )
    for word in ("finance", "normalised", "stale"):
        found = await backlog.list(TaskFilter(text=word, include_closed=True))
        assert [t.key for t in found] == [draft.key if word == "finance" else other.key]
    edited = await backlog.edit(other.key, OP, risks=["a cold start"])
    assert edited.summary() == "risks 1 → 1"
    assert await backlog.list(TaskFilter(text="stale")) == []


async def test_list_filters(backlog: Backlog) -> None:
    await backlog.file(
        make_spec(title="Fix login timeout", repo="web", priority=1), OP, lane=Lane.AUTONOMOUS
    )
    await backlog.file(make_spec(title="Tune pool", repo="api", notes="pgbouncer limits"), OP)
    await backlog.file(make_spec(title="Agent idea"), CODEX)
    await backlog.file(make_spec(title="Dropped"), OP)
    await backlog.reject("OB-4", OP)

    keys = lambda ts: [t.key for t in ts]  # noqa: E731
    assert keys(await backlog.list()) == ["OB-1", "OB-2", "OB-3"]
    assert keys(await backlog.list(TaskFilter(include_closed=True))) == [
        "OB-1",
        "OB-2",
        "OB-3",
        "OB-4",
    ]
    assert keys(await backlog.list(TaskFilter(status=[Status.DRAFT]))) == ["OB-3"]
    assert keys(await backlog.list(TaskFilter(lane=[Lane.TRIAGE]))) == ["OB-2"]
    assert keys(await backlog.list(TaskFilter(repo="web"))) == ["OB-1"]
    assert keys(await backlog.list(TaskFilter(text="pgbouncer"))) == ["OB-2"]
    assert keys(await backlog.list(TaskFilter(text="login"))) == ["OB-1"]
    assert keys(await backlog.list(TaskFilter(text="100%_"))) == []
    assert keys(await backlog.list(TaskFilter(text="OB-3"))) == ["OB-3"]


async def test_event_log_is_append_only(backlog: Backlog, pool: asyncpg.Pool) -> None:
    await backlog.file(make_spec(title="x"), OP)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("update events set actor = 'someone else'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("delete from events")


async def test_text_search_follows_the_spec_and_scales_to_common_words(
    backlog: Backlog, pool: asyncpg.Pool
) -> None:
    task = await backlog.file(make_spec(title="Fix login timeout", notes="sso flow"), OP)
    await backlog.edit(task.key, OP, title="Fix logout race", notes="cookie jar")
    keys = lambda ts: [t.key for t in ts]  # noqa: E731
    assert keys(await backlog.list(TaskFilter(text="login"))) == []
    assert keys(await backlog.list(TaskFilter(text="sso"))) == []
    assert keys(await backlog.list(TaskFilter(text="cookie"))) == [task.key]
    assert keys(await backlog.list(TaskFilter(text="ogout"))) == [task.key]  # title substring
    # A word on more tasks than the search indexes hand over: the best ones, in order.
    n = FEW_MATCHES + 50
    await pool.execute(
        """insert into tasks (title, status, lane, priority, created_by, approved_by)
           select 'common word ' || g, case when g % 3 = 0 then 'done' else 'open' end,
                  'requires_triage', (g * 7) % 4, 'operator:test', 'operator:test'
           from generate_series(1, $1) g""",
        n,
    )
    expected = await pool.fetch(
        "select number from tasks where title like 'common word %' and status = 'open'"
        " order by priority, id limit 30"
    )
    found = await backlog.list(TaskFilter(text="word", limit=30))
    assert keys(found) == [f"OB-{r['number']}" for r in expected]
    assert len(await backlog.list(TaskFilter(text="word", include_closed=True, limit=n))) == n
