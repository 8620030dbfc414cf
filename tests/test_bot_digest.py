"""The daily digest: its data (SQL), its rendering, and 'once per day' with two processes."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramServerError

from bot import render
from bot.app import DEFAULTS
from bot.digest_job import DigestJob
from core.backlog import Backlog
from core.digest import Digests
from core.leases import Leases
from core.models import Actor, Lane
from core.spec import make_spec
from tests.fake_telegram import RecordingSession

OP = Actor.operator("t")


async def test_digest_data(backlog: Backlog, make_agent) -> None:
    codex, _ = await make_agent("codex")
    claude, _ = await make_agent("claude")
    leases = Leases(backlog)
    await backlog.file(
        make_spec(title="draft one", status_word="waiting", status_date="2026-11-02"), codex
    )
    for i in range(4):
        await backlog.file(make_spec(title=f"auto {i}"), OP, lane=Lane.AUTONOMOUS)
    await backlog.file(make_spec(title="triage me"), OP)
    a = await leases.claim(codex)
    await leases.complete(a.key, codex, a.epoch, commits=["abcdef123456"])
    b = await leases.claim(codex)
    await leases.complete(b.key, codex, b.epoch)  # no evidence
    c = await leases.claim(claude)
    await leases.handoff(c.key, claude, c.epoch, make_spec(title="prereq first"))
    await leases.claim(claude)
    d = await Digests(backlog).build()
    lanes = {load.lane: load.total for load in d.lanes}
    assert lanes == {
        Lane.TRIAGE: 1,
        Lane.DECISION: 0,
        Lane.INVESTIGATION: 0,
        Lane.AUTONOMOUS: 2,
    }
    assert d.awaiting_approval.total == 2  # the agent draft and the hand-off prerequisite
    assert [i.key for i in d.in_progress["claude"]] == ["OB-5"]
    assert d.done_24h_total == 2 and len(d.done_24h["agent:codex"]) == 2
    assert d.done_without_evidence == 1
    # the same "unverified" as `ob list --unverified`: both completions, none past the limit
    assert (d.unverified.total, d.unverified.flagged) == (2, 0)
    assert d.unverified.items[0].task.commits == ["abcdef123456"]
    assert d.blocked.total == 1 and d.blocked.items[0].blocked_by == ["OB-7"]
    text = render.digest(d, backlog.settings.tz)
    assert "Awaiting approval</b>: 2" in text and "claude" in text and "abcdef1234" in text
    assert "draft one (codex, " in text and "📌 waiting since 2026-11-02" in text
    assert "completed without a commit" in text and "OB-4" in text
    assert "could not be delivered" not in text
    # a notice Telegram refused for good is counted, so the operator hears of it
    await backlog.pool.execute(
        "update outbox set gave_up_at = now() where id = (select min(id) from outbox)"
    )
    d = await Digests(backlog).build()
    assert d.notices.dead == 1
    assert "1 notice(s) could not be delivered" in render.digest(d, backlog.settings.tz)


async def test_digest_sent_once_per_day_with_two_processes(backlog: Backlog) -> None:
    settings = backlog.settings.model_copy(
        update={"digest_at": time(8, 0), "timezone": "Europe/Berlin", "digest_grace": 3600}
    )
    bl = Backlog(backlog.pool, settings)
    sessions = [RecordingSession(), RecordingSession()]
    jobs = [
        DigestJob(Bot("123456:TEST", session=s, default=DEFAULTS), bl, [1, 2], f"w{i}", 3600)
        for i, s in enumerate(sessions)
    ]
    # 08:00 Berlin in winter is 07:00 UTC
    before = datetime(2026, 1, 5, 6, 59, tzinfo=UTC)
    on_time = datetime(2026, 1, 5, 7, 0, 30, tzinfo=UTC)
    late = datetime(2026, 1, 5, 7, 50, tzinfo=UTC)  # missed, but within the grace window
    too_late = datetime(2026, 1, 5, 8, 1, tzinfo=UTC)
    assert jobs[0].due_day(before) is None and jobs[0].due_day(too_late) is None
    assert str(jobs[0].due_day(late)) == "2026-01-05"
    results = [await jobs[0].run_due(on_time), await jobs[1].run_due(on_time)]
    assert sorted(results, key=str) == [None, "sent the digest for 2026-01-05"]
    assert await jobs[1].run_due(late) is None  # the catch-up finds it sent
    sends = sessions[0].of("SendMessage") + sessions[1].of("SendMessage")
    assert sorted(m.chat_id for m in sends) == [1, 2]
    assert all("Daily lane digest" in m.text and m.reply_markup for m in sends)
    # a missed day is caught up within the grace window
    assert await jobs[1].run_due(datetime(2026, 1, 6, 7, 40, tzinfo=UTC))
    assert await bl.pool.fetchval("select count(*) from digest_runs where sent_at is not null") == 2


async def test_failed_digest_is_retried(backlog: Backlog) -> None:
    from tests.fake_telegram import server_error

    session = RecordingSession()
    job = DigestJob(Bot("123456:TEST", session=session, default=DEFAULTS), backlog, [1], "w", 3600)
    session.failures = [server_error()]
    day = datetime(2026, 2, 1, tzinfo=UTC).date()
    with pytest.raises(TelegramServerError):  # the supervisor logs it and shows it failing
        await job.send_for(day)
    assert await job.send_for(day) is True  # the day was freed: the next check sends it
    assert len(session.of("SendMessage")) == 1
