"""Never silent, never lost: the notifier against the fake Bot API answering what real ones
(and proxies in front of them) answer, supervised loops, and the bot's replies in a flood."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import pytest
from aiogram import Bot
from pydantic import SecretStr

from bot.app import make_bot
from bot.notifier import Notifier
from bot.patience import PatientReplies
from core.backlog import Backlog
from core.models import Actor
from core.outbox import Outbox
from core.spec import make_spec
from core.supervise import PartState, StatusBoards, Supervisor
from tests.fake_telegram import FakeTelegram, retry_after

OP = 4242
AGENT = Actor.agent("codex", 1)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


@pytest.fixture
async def real_bot(backlog: Backlog, fake: FakeTelegram) -> AsyncIterator[Bot]:
    """A Bot with the real aiohttp session, talking HTTP to the fake Bot API."""
    settings = backlog.settings.model_copy(
        update={"bot_token": SecretStr("123456:TEST"), "telegram_api_url": fake.url}
    )
    bot = make_bot(settings)
    yield bot
    await bot.session.close()


async def release_now(backlog: Backlog) -> None:
    """Let time pass for the outbox: every waiting row is due now."""
    await backlog.pool.execute("update outbox set available_at = now() where delivered_at is null")


async def outbox_row(backlog: Backlog) -> dict:
    row = await backlog.pool.fetchrow(
        "select attempts, last_error, delivered_at, gave_up_at,"
        " extract(epoch from available_at - now()) as wait from outbox"
    )
    return dict(row)


async def test_replies_that_are_not_json_do_not_stop_the_notifier(
    backlog: Backlog, fake: FakeTelegram, real_bot: Bot
) -> None:
    await backlog.file(make_spec(title="a draft"), AGENT)
    fake.fail("sendMessage", (502, "html"), (500, "text"), (0, "drop"))
    notifier = Notifier(real_bot, backlog, [OP], worker="t")
    for attempt in (1, 2, 3):
        assert await notifier.drain_once() == 1
        row = await outbox_row(backlog)
        assert row["attempts"] == attempt and row["last_error"]
        assert row["delivered_at"] is None and row["gave_up_at"] is None
        await release_now(backlog)
    assert await notifier.drain_once() == 1
    assert (await outbox_row(backlog))["delivered_at"] is not None
    assert fake.statuses("sendMessage") == [502, 500, 0, 200]
    assert len(fake.ok("sendMessage")) == 1


async def test_a_notice_outlives_any_outage(
    backlog: Backlog, fake: FakeTelegram, real_bot: Bot
) -> None:
    """An hour asleep, a week offline: transient failures never use a notice up."""
    await backlog.file(make_spec(title="a draft"), AGENT)
    fake.fail("sendMessage", *[(502, 0)] * 30)
    notifier = Notifier(real_bot, backlog, [OP], worker="t")
    for _ in range(30):
        await notifier.drain_once()
        await release_now(backlog)
    row = await outbox_row(backlog)
    assert row["attempts"] == 30 and row["gave_up_at"] is None and row["delivered_at"] is None
    await backlog.pool.execute("update outbox set available_at = now() + interval '1 h'")
    await notifier.drain_once()  # not due: nothing is sent
    await release_now(backlog)
    assert await notifier.drain_once() == 1
    assert (await outbox_row(backlog))["delivered_at"] is not None


async def test_backoff_is_capped_at_five_minutes(
    backlog: Backlog, fake: FakeTelegram, real_bot: Bot
) -> None:
    await backlog.file(make_spec(title="a draft"), AGENT)
    await backlog.pool.execute("update outbox set attempts = 40")
    fake.fail("sendMessage", (502, 0))
    await Notifier(real_bot, backlog, [OP], worker="t").drain_once()
    row = await outbox_row(backlog)
    assert 290 < row["wait"] <= 300 and row["gave_up_at"] is None


async def test_a_refusal_is_dead_visible_and_can_be_retried(
    backlog: Backlog, fake: FakeTelegram, real_bot: Bot
) -> None:
    await backlog.file(make_spec(title="a draft"), AGENT)
    fake.fail("sendMessage", (403, "Forbidden: bot was blocked by the user"))
    notifier = Notifier(real_bot, backlog, [OP], worker="t")
    assert await notifier.drain_once() == 1
    (dead,) = await Outbox(backlog).undelivered(dead_only=True)
    assert dead.key == "OB-1" and dead.dead_at is not None
    assert (
        dead.last_error
        and "press Start" in dead.last_error
        and "ob outbox retry" in (dead.last_error)
    )
    stats = await Outbox(backlog).stats()
    assert (stats.pending, stats.dead) == (0, 1)
    assert await notifier.drain_once() == 0  # a dead notice waits for the operator
    assert await Outbox(backlog).retry_dead() == 1
    assert await notifier.drain_once() == 1
    assert (await Outbox(backlog).stats()).dead == 0
    assert len(fake.ok("sendMessage")) == 1


async def test_a_message_telegram_cannot_parse_goes_out_as_plain_text(
    backlog: Backlog, fake: FakeTelegram, real_bot: Bot
) -> None:
    await backlog.file(make_spec(title="a <b>bold</b> & risky draft"), AGENT)
    fake.fail("sendMessage", (400, "Bad Request: can't parse entities: unsupported tag"))
    assert await Notifier(real_bot, backlog, [OP], worker="t").drain_once() == 1
    (sent,) = fake.ok("sendMessage")
    assert "parse_mode" not in sent and "<b>OB-1</b>" not in sent["text"]
    assert "OB-1" in sent["text"] and "a <b>bold</b> & risky draft" in sent["text"]
    assert (await outbox_row(backlog))["delivered_at"] is not None


async def test_a_crashing_loop_is_logged_shown_and_restarted(
    backlog: Backlog, caplog: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(backlog, worker="test:1")
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("an unexpected reply")
        await sup.stopping.wait()

    sup.spawn("notifier", loop)
    for _ in range(100):
        if runs == 2:
            break
        await asyncio.sleep(0.05)
    assert runs == 2
    crash = next(r for r in caplog.records if "notifier failed" in r.getMessage())
    assert crash.levelno == logging.ERROR and crash.exc_info is not None  # with its traceback
    await sup.board.flush(force=True)
    (board,) = await StatusBoards(backlog).read()
    part = next(p for p in board.parts if p.name == "notifier")
    assert part.state == PartState.RUNNING and "an unexpected reply" in (part.last_error or "")
    await sup.stop()
    assert await StatusBoards(backlog).read() == []  # a clean stop takes the board down


async def test_a_failing_job_is_shown_failing_until_it_works(backlog: Backlog) -> None:
    sup = Supervisor(backlog, worker="test:2")
    calls = 0

    async def reconcile() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("repo path gone")
        return "3 repos"

    job = sup.job("reconcile", reconcile)
    await job()  # never raises into the scheduler
    (board,) = await StatusBoards(backlog).read()
    (part,) = board.parts
    assert part.state == PartState.FAILING and part.failures == 1
    assert part.last_error == "OSError: repo path gone"
    await job()
    (board,) = await StatusBoards(backlog).read()
    assert board.parts[0].state == PartState.OK and board.parts[0].detail == "3 repos"


async def test_a_gateway_that_stops_serving_is_shown_and_serves_again(
    backlog: Backlog, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.app import create_app
    from gateway.server import serving

    sup = Supervisor(backlog, worker="test:3")
    async with (
        serving(partial(create_app, backlog), "127.0.0.1", 0) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=5) as c,
    ):
        sup.spawn("gateway", partial(gateway.run, sup.stopping))
        assert (await c.get("/v1/health")).status_code == 200
        gateway._server.should_exit = True  # uvicorn ends on its own, as a crash in it would
        for _ in range(100):
            if any("gateway failed" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        await sup.board.flush(force=True)
        (board,) = await StatusBoards(backlog).read()
        (part,) = board.parts
        assert part.state == PartState.FAILING and "stopped serving" in (part.last_error or "")
        for _ in range(100):  # started again after the backoff, on the same address
            with contextlib.suppress(httpx.TransportError):
                if (await c.get("/v1/health")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
        assert (await c.get("/v1/health")).status_code == 200
        await sup.stop()


async def test_a_reply_in_a_flood_window_arrives(backlog: Backlog) -> None:
    from tests.test_bot_dispatcher import BotEnv, make_env

    env: BotEnv = make_env(backlog)
    env.session.middleware(PatientReplies())
    env.session.failures = [retry_after(1)]
    started = datetime.now(UTC)
    await env.say("/lanes")
    assert env.session.texts()[-1].startswith("<b>Lanes</b>")
    assert datetime.now(UTC) - started >= timedelta(seconds=1)  # it waited as told
    assert not any("went wrong" in t for t in env.session.texts())
