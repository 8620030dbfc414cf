"""The notifier against real Postgres: retry-after, 5xx backoff, exactly-once with two
consumers, per-chat progress, unknown kinds, LISTEN/NOTIFY wake-up and reconnects."""

from __future__ import annotations

import asyncio

import asyncpg
from aiogram import Bot

from bot.app import DEFAULTS
from bot.notifier import Notifier
from core.backlog import Backlog
from core.db import _init_connection
from core.leases import Leases
from core.models import Actor, Lane
from core.spec import make_spec
from tests.fake_telegram import RecordingSession, retry_after, server_error

OP = Actor.operator("t")
CHATS = [4242, 4343]


def make(backlog: Backlog, chats=CHATS, **kw) -> tuple[Notifier, RecordingSession]:
    session = RecordingSession()
    bot = Bot("123456:TEST", session=session, default=DEFAULTS)
    return Notifier(bot, backlog, chats, **kw), session


async def release_now(pool: asyncpg.Pool) -> None:
    await pool.execute("update outbox set available_at = now() where delivered_at is null")


async def test_completion_with_retry_after_and_5xx(backlog: Backlog, make_agent) -> None:
    agent, _ = await make_agent("codex")
    await backlog.file(make_spec(title="ship it"), OP, lane=Lane.AUTONOMOUS)
    leases = Leases(backlog)
    lease = await leases.claim(agent)
    await leases.complete(lease.key, agent, lease.epoch, commits=["abc1234def"], note="done <3")
    notifier, session = make(backlog, chats=[4242])
    session.failures = [retry_after(7), server_error()]
    assert await notifier.drain_once() == 1  # 429: wait as told, no attempt used up
    row = await backlog.pool.fetchrow(
        "select attempts, available_at - now() as wait, delivered_at from outbox"
    )
    assert row["attempts"] == 0 and row["wait"].total_seconds() > 6 and row["delivered_at"] is None
    assert await notifier.drain_once() == 0  # not before the retry-after
    await release_now(backlog.pool)
    assert await notifier.drain_once() == 1  # 502: back off
    row = await backlog.pool.fetchrow("select attempts, last_error, delivered_at from outbox")
    assert (
        row["attempts"] == 1 and "Bad Gateway" in row["last_error"] and row["delivered_at"] is None
    )
    await release_now(backlog.pool)
    assert await notifier.drain_once() == 1
    (sent,) = session.of("SendMessage")
    assert "<b>OB-1</b> ship it\ncompleted by codex" in sent.text
    assert "abc1234def" in sent.text and "unverified" in sent.text and "done &lt;3" in sent.text
    assert await backlog.pool.fetchval("select delivered_at is not null from outbox")
    assert await notifier.drain_once() == 0


async def test_each_chat_once_even_when_one_fails(backlog: Backlog) -> None:
    await backlog.file(make_spec(title="draft"), Actor.agent("codex", 1))
    notifier, session = make(backlog)
    ok = session.make_request

    calls = 0

    async def second_fails(bot, method, timeout=None):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise server_error()
        return await ok(bot, method, timeout)

    session.make_request = second_fails  # type: ignore[method-assign]
    await notifier.drain_once()
    await release_now(backlog.pool)
    await notifier.drain_once()
    assert [m.chat_id for m in session.of("SendMessage")] == CHATS  # 4242 once, then 4343
    assert await backlog.pool.fetchval("select count(*) from bot_cards") == 2


async def test_two_notifiers_deliver_each_row_once(backlog: Backlog) -> None:
    agent = Actor.agent("codex", 1)
    for i in range(30):
        await backlog.file(make_spec(title=f"draft {i}"), agent)
    (n1, s1), (n2, s2) = make(backlog, worker="one"), make(backlog, worker="two")

    async def run(n: Notifier) -> None:
        while await n.drain_once():
            await asyncio.sleep(0)

    await asyncio.gather(run(n1), run(n2), run(n1), run(n2))
    texts = [
        m.text.split("</b>")[0] + str(m.chat_id)
        for m in s1.of("SendMessage") + s2.of("SendMessage")
    ]
    assert len(texts) == 60 and len(set(texts)) == 60
    assert s1.of("SendMessage") and s2.of("SendMessage")  # both did some of the work
    assert (
        await backlog.pool.fetchval("select count(*) from outbox where delivered_at is null") == 0
    )


async def test_every_kind_and_unknown_ones(backlog: Backlog, make_agent) -> None:
    agent, _ = await make_agent("grok")
    await backlog.file(make_spec(title="investigate"), OP, lane=Lane.INVESTIGATION)
    leases = Leases(backlog)
    lease = await leases.claim(agent)
    await leases.findings(lease.key, agent, lease.epoch, "it is <the cache>")
    await backlog.file(make_spec(title="hand me off"), OP, lane=Lane.AUTONOMOUS)
    lease = await leases.claim(agent)
    await leases.handoff(
        lease.key, agent, lease.epoch, make_spec(title="prereq"), reason="needs it"
    )
    async with backlog.transaction() as conn:
        await conn.execute(
            "insert into outbox (kind, task_id, payload) values ('task_closed_by_commit', 1, $1)",
            {"key": "OB-1", "sha": "deadbeef", "repo": "web"},
        )
    notifier, session = make(backlog, chats=[1])
    while await notifier.drain_once():
        pass
    texts = "\n".join(session.texts())
    assert "🔎 <b>OB-1</b> investigate\nfindings by grok" in texts
    assert "&lt;the cache&gt;" in texts
    assert "handed off by grok" in texts and "needs it" in texts
    assert "closed by commit <code>deadbeef</code> in web" in texts
    assert "🆕 <b>OB-3</b>" in texts  # the prerequisite is a draft: an approval card
    assert (
        await backlog.pool.fetchval("select count(*) from outbox where delivered_at is null") == 0
    )


async def test_expiry_and_exhaustion(backlog: Backlog, make_agent) -> None:
    agent, _ = await make_agent("codex")
    await backlog.file(make_spec(title="flaky"), OP, lane=Lane.AUTONOMOUS)
    await backlog.pool.execute(
        "update task_leases set expiries = $1", backlog.settings.max_expiries - 2
    )
    leases = Leases(backlog)
    for _ in range(2):
        await leases.claim(agent, lease_seconds=10)
        await backlog.pool.execute(
            "update task_leases set lease_expires_at = now() - interval '1 s'"
            " where lease_agent_id is not null"
        )
        await leases.sweep()
    notifier, session = make(backlog, chats=[1])
    while await notifier.drain_once():
        pass
    texts = session.texts()
    assert any("<b>OB-1</b> flaky\nthe lease of codex expired" in t for t in texts)
    assert any("moved to decision for you" in t for t in texts)


async def test_listen_notify_wakes_and_survives_a_reconnect(
    backlog: Backlog, db_url: str, caplog
) -> None:
    pool = await asyncpg.create_pool(
        db_url,
        min_size=2,
        max_size=2,
        init=_init_connection,
        server_settings={"application_name": "notifier-under-test"},
    )
    own = Backlog(pool, backlog.settings)
    notifier, session = make(own, chats=[1], poll_every=30)
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        await asyncio.sleep(0.3)
        await backlog.file(make_spec(title="wake up"), Actor.agent("codex", 1))
        await _until(lambda: len(session.of("SendMessage")) == 1)
        # PostgreSQL drops every connection (as in a restart): the notifier reconnects
        killed = await backlog.pool.fetchval(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
            " and (application_name = 'notifier-under-test' or query ilike 'listen%'"
            " or query = 'select 1')"
        )
        assert killed >= 3
        await asyncio.sleep(1.5)
        await backlog.file(make_spec(title="again"), Actor.agent("codex", 1))
        await _until(lambda: len(session.of("SendMessage")) == 2, timeout=15)
        assert "notification listener lost" in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await pool.close()


async def _until(cond, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")
