"""Every outbox kind core emits has a purposeful message: drive core through every change that
notifies the operator (real PostgreSQL, a real git repository), then render each row."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.notices import CARD_UPDATES, RENDERERS, Delivery, notice_for
from core import events
from core.backlog import Backlog
from core.deps import Prerequisites
from core.git.crossrepo import CrossRepo
from core.git.reconcile import Reconciler
from core.git.repos import Repos
from core.git.todo import TodoFiles
from core.leases import Leases
from core.models import Actor, EventKind, Lane, OutboxKind
from core.notices import PAYLOADS, TaskCompleted, TaskDecided
from core.questions import Questions
from core.spec import make_spec
from tests.test_git_helpers import repo_factory

OP = Actor.operator("cli")

# What each kind's message must say happened (besides naming the task).
SAYS = {
    OutboxKind.DRAFT_FILED: "filed by codex",
    OutboxKind.TASK_DECIDED: ("Approved into", "Rejected by"),
    OutboxKind.LANE_CHANGED: "; now in triage",
    OutboxKind.TASK_COMPLETED: "completed by codex",
    OutboxKind.HANDOFF: "handed off by codex",
    OutboxKind.LEASE_EXPIRED: "lease of codex expired",
    OutboxKind.ATTEMPTS_EXHAUSTED: "leases expired without progress",
    OutboxKind.FINDINGS_REPORTED: "findings by codex",
    OutboxKind.TASK_UNBLOCKED: "is ready again",
    OutboxKind.TASK_CLOSED_BY_COMMIT: "closed by commit",
    OutboxKind.CLOSED_WHILE_CLAIMED: "while codex held it",
    OutboxKind.TASK_VERIFIED: "verified",
    OutboxKind.EVIDENCE_LOST: "was reverted on main",
    OutboxKind.DEFAULT_BRANCH_CHANGED: "the default branch is now <b>trunk</b>",
    OutboxKind.TODO_IMPORTED: "drafts</b> imported from",
    OutboxKind.TASK_EDITED: "sharper idea",
    OutboxKind.CROSS_REPO_CLOSE: "says it closes this api task",
    OutboxKind.PREREQUISITE_REJECTED: (
        "was rejected by you (CLI) (no access), so it would wait forever: it moved to decision"
    ),
    OutboxKind.TASK_REOPENED: "· open ·",  # the card shows the task closed by mistake open again
    OutboxKind.QUESTION_ASKED: "<b>codex</b> asks (Q",
    OutboxKind.QUESTION_ANSWERED: "<b>postgres</b> — answered by you (CLI) at",
    OutboxKind.QUESTION_LEFT_OPEN: "lease ended before you answered",
}
# Notices about no single task name what they are about instead.
NEWS_NAMES = {OutboxKind.DEFAULT_BRANCH_CHANGED: "<b>web</b>", OutboxKind.TODO_IMPORTED: "TODO.md"}


def test_every_kind_has_a_payload_model_and_a_renderer() -> None:
    assert set(PAYLOADS) == set(OutboxKind) == set(RENDERERS) == set(SAYS)


async def emit_every_kind(backlog: Backlog, make_agent, tmp_path: Path) -> None:
    codex, _ = await make_agent("codex", git_emails=["codex@example.com"])
    leases = Leases(backlog)
    settings = backlog.settings

    draft = await backlog.file(make_spec(title="an agent's idea"), codex)  # draft_filed
    await backlog.approve(draft.key, OP, Lane.DECISION)  # task_decided
    await backlog.edit(draft.key, OP, title="an agent's sharper idea")  # task_edited
    await backlog.move_lane(draft.key, Lane.TRIAGE, OP)  # lane_changed
    dropped = await backlog.file(make_spec(title="not wanted"), codex)
    await backlog.reject(dropped.key, OP, "not now")  # task_decided (rejected)
    waits = await backlog.file(make_spec(title="waits on access"), OP, lane=Lane.TRIAGE)
    access = await backlog.file(make_spec(title="get access"), OP, lane=Lane.TRIAGE)
    await Prerequisites(backlog).add(waits.key, access.key, OP)
    await backlog.reject(access.key, OP, "no access")  # prerequisite_rejected

    done = await backlog.file(make_spec(title="ship it", repo="web"), OP, lane=Lane.AUTONOMOUS)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == done.key
    _, prereq = await leases.handoff(  # handoff (+ the prerequisite's draft_filed)
        done.key, codex, lease.epoch, make_spec(title="needs this first")
    )
    await backlog.approve(prereq.key, OP, Lane.AUTONOMOUS)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == prereq.key
    await leases.complete(prereq.key, codex, lease.epoch)  # task_unblocked (for `done`)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == done.key
    repo = repo_factory(tmp_path)("web")
    sha = repo.commit("Ship it")
    await leases.complete(done.key, codex, lease.epoch, commits=[sha])  # task_completed
    await Repos(backlog).add(repo.path, OP)
    await Reconciler(backlog).run()  # task_verified

    look = await backlog.file(make_spec(title="why is it slow"), OP, lane=Lane.INVESTIGATION)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == look.key
    await leases.findings(look.key, codex, lease.epoch, "the cache is cold")  # findings

    questions = Questions(backlog)
    asking = await backlog.file(make_spec(title="pick a store"), OP, lane=Lane.AUTONOMOUS)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == asking.key
    q = await questions.ask(asking.key, codex, lease.epoch, "Redis?", ["redis", "postgres"])
    await questions.answer(q.ref, OP, "postgres")  # question_asked, question_answered
    await questions.ask(asking.key, codex, lease.epoch, "May I drop the old table?")
    await leases.release(asking.key, codex, lease.epoch)  # question_left_open

    flaky = await backlog.file(make_spec(title="flaky"), OP, lane=Lane.AUTONOMOUS)
    await backlog.pool.execute(
        "update task_leases set expiries = $2 where task_id = (select id from tasks where number = $1)",
        flaky.number,
        settings.max_expiries - 2,
    )
    for _ in range(2):  # lease_expired, then attempts_exhausted
        await leases.claim(codex, lease_seconds=10)
        await backlog.pool.execute(
            "update task_leases set lease_expires_at = now() - interval '1 s'"
            " where lease_agent_id is not null"
        )
        await leases.sweep()

    held = await backlog.file(make_spec(title="held", repo="web"), OP, lane=Lane.AUTONOMOUS)
    lease = await leases.claim(codex)
    assert lease is not None and lease.key == held.key
    elsewhere = await backlog.file(make_spec(title="api side", repo="api"), OP)
    repo.commit(f"Fix it\n\nCloses: {held.key}\nCloses: {elsewhere.key}")
    await Reconciler(backlog).run()  # task_closed_by_commit + closed_while_claimed
    # (+ cross_repo_close: a web commit names an api task)

    repo.git("revert", "--no-edit", sha)
    await Reconciler(backlog).run()  # evidence_lost (the shipped task's commit is reverted)
    repo.git("branch", "-m", "main", "trunk")
    await Reconciler(backlog).run()  # default_branch_changed

    todo = tmp_path / "TODO.md"
    todo.write_text("".join(f"## idea {i}\n\n" for i in range(25)))
    await TodoFiles(backlog).import_file(todo, OP)  # todo_imported (one notice for 25 drafts)
    await backlog.reopen(held.key, OP, "that commit did not fix it")  # task_reopened


async def test_every_kind_core_emits_reads_well(
    backlog: Backlog, make_agent, tmp_path: Path
) -> None:
    await emit_every_kind(backlog, make_agent, tmp_path)
    rows = await backlog.pool.fetch("select kind, task_id, payload from outbox order by id")
    assert {OutboxKind(r["kind"]) for r in rows} == set(OutboxKind)
    for r in rows:
        kind = OutboxKind(r["kind"])
        task = await backlog.get_by_id(r["task_id"]) if r["task_id"] else None
        notice = notice_for(kind, r["payload"], task, backlog.settings.tz)
        names = f"<b>{task.key}</b>" if task else NEWS_NAMES[kind]
        assert names in notice.text, (kind, notice.text)
        says = SAYS[kind] if isinstance(SAYS[kind], tuple) else (SAYS[kind],)
        assert any(s in notice.text for s in says), (kind, notice.text)
        assert "None" not in notice.text and "{" not in notice.text, (kind, notice.text)
        assert notice.delivery == (
            Delivery.EDIT_CARDS
            if kind in CARD_UPDATES
            else Delivery.EDIT_QUESTION
            if kind == OutboxKind.QUESTION_ANSWERED
            else Delivery.SEND
        )


async def expire_leases(backlog: Backlog) -> None:
    await backlog.pool.execute(
        "update task_leases set lease_expires_at = now() - interval '1 s'"
        " where lease_agent_id is not null"
    )


async def outbox_rows(backlog: Backlog, kind: OutboxKind) -> list[dict]:
    rows = await backlog.pool.fetch(
        "select payload from outbox where kind = $1 order by id", kind.value
    )
    return [r["payload"] for r in rows]


async def emit_by_the_other_paths(backlog: Backlog, make_agent, tmp_path: Path) -> None:
    """The writers of outbox rows emit_every_kind does not reach: between the two, every
    statement and call that writes one runs at least once. (Its tasks are P0: they come
    before what emit_every_kind left in the queue.)"""
    grok, _ = await make_agent("grok")
    leases = Leases(backlog)
    repo = repo_factory(tmp_path)("svc")
    await Repos(backlog).add(repo.path, OP)

    # a claim takes over an expired lease (the claim statement records the expiry)
    taken = await backlog.file(make_spec(title="taken over", priority=0), OP, lane=Lane.AUTONOMOUS)
    lease = await leases.claim(grok, lease_seconds=10)
    assert lease is not None and lease.key == taken.key
    await expire_leases(backlog)
    before = len(await outbox_rows(backlog, OutboxKind.LEASE_EXPIRED))
    again = await leases.claim(grok)
    assert again is not None and again.key == taken.key
    assert len(await outbox_rows(backlog, OutboxKind.LEASE_EXPIRED)) == before + 1
    await backlog.move_lane(taken.key, Lane.DECISION, OP)  # lane_changed, its lease revoked

    # the holder's `done` after a commit closed the task under its lease
    late = await backlog.file(
        make_spec(title="late", repo="svc", priority=0), OP, lane=Lane.AUTONOMOUS
    )
    lease = await leases.claim(grok)
    assert lease is not None and lease.key == late.key
    sha = repo.commit(f"Closes {late.key}")
    await Reconciler(backlog).run()  # task_closed_by_commit + closed_while_claimed
    await leases.complete(late.key, grok, lease.epoch, commits=[sha], note="it was me")
    assert any(
        p.get("closed_by") == sha for p in await outbox_rows(backlog, OutboxKind.TASK_COMPLETED)
    )

    # done without evidence, then a closing commit verifies it (the reverify statement)
    bare = await backlog.file(
        make_spec(title="no proof", repo="svc", priority=0), OP, lane=Lane.AUTONOMOUS
    )
    lease = await leases.claim(grok)
    assert lease is not None and lease.key == bare.key
    await leases.complete(bare.key, grok, lease.epoch)
    repo.commit(f"Fixes {bare.key}")
    await Reconciler(backlog).run()
    assert any(
        p.get("replaced") == [] for p in await outbox_rows(backlog, OutboxKind.TASK_VERIFIED)
    )

    # the operator confirms that another repo's commit closes the task
    other = await backlog.file(make_spec(title="over there", repo="elsewhere"), OP)
    repo.commit(f"Closes {other.key}")
    await Reconciler(backlog).run()  # cross_repo_close
    *_, ask = await outbox_rows(backlog, OutboxKind.CROSS_REPO_CLOSE)
    await CrossRepo(backlog).decide(ask["ask"], True, OP)
    assert any(
        p.get("confirmed_by") == str(OP)
        for p in await outbox_rows(backlog, OutboxKind.TASK_CLOSED_BY_COMMIT)
    )

    # an import small enough for an approval card per draft; a rejected draft reopened
    todo = tmp_path / "TODO.md"
    todo.write_text("## first idea\n\n## second idea\n")
    imported = await TodoFiles(backlog).import_file(todo, OP)
    assert len(imported.created) == 2
    await backlog.reject(imported.created[0], OP)
    await backlog.reopen(imported.created[0], OP, "wanted after all")


async def test_every_row_core_writes_matches_its_model(
    backlog: Backlog, make_agent, tmp_path: Path
) -> None:
    """Every outbox row core wrote, on every path (SQL-built payloads included), validates
    against its kind's model: no field the model does not name, every field it requires."""
    await emit_every_kind(backlog, make_agent, tmp_path)
    await emit_by_the_other_paths(backlog, make_agent, tmp_path / "more")
    rows = await backlog.pool.fetch("select id, kind, payload from outbox order by id")
    assert {OutboxKind(r["kind"]) for r in rows} == set(OutboxKind)
    problems = []
    for r in rows:
        try:
            PAYLOADS[OutboxKind(r["kind"])].model_validate(r["payload"])
        except ValidationError as err:
            problems.append(f"outbox {r['id']} ({r['kind']}): {err}")
    assert not problems, "\n".join(problems)


def test_a_payload_refuses_a_field_its_model_does_not_name() -> None:
    """A field renamed on one side fails loudly instead of reading as None."""
    good = {"key": "OB-1", "by": "agent:codex", "commits": [], "verified": False}
    assert TaskCompleted.model_validate(good).note is None
    with pytest.raises(ValidationError, match="holder_note"):
        TaskCompleted.model_validate({**good, "holder_note": "done"})
    with pytest.raises(ValidationError, match="verified"):
        TaskCompleted.model_validate({k: v for k, v in good.items() if k != "verified"})


async def test_an_outbox_row_takes_its_own_kinds_model(backlog: Backlog) -> None:
    decided = TaskDecided(key="OB-1", by="operator:cli", decision="approved")
    async with backlog.transaction() as conn:
        with pytest.raises(TypeError, match="takes a TaskCompleted payload"):
            await events.notify_many(conn, OutboxKind.TASK_COMPLETED, [(None, decided)])
        with pytest.raises(TypeError, match="needs both"):
            await events.record(conn, None, OP, EventKind.APPROVED, payload=decided)
