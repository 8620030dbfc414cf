"""Repair from the phone (issue 17), through the real Dispatcher: [Reopen] on done and rejected
cards, and [Reject as duplicate of OB-n] on a likely duplicate's approval card."""

from __future__ import annotations

import pytest

from bot.notifier import Notifier
from core.backlog import Backlog
from core.leases import Leases
from core.models import Actor, Lane, Status
from core.spec import make_spec
from tests.test_bot_dispatcher import OP, BotEnv, make_env


@pytest.fixture
async def env(backlog: Backlog) -> BotEnv:
    return make_env(backlog)


async def drain(notifier: Notifier) -> None:
    while await notifier.drain_once():
        pass


def last_sent_id(env: BotEnv) -> int:
    """The message id the recording session gave the last message sent (they count from 1000)."""
    return 999 + len(env.session.of("SendMessage"))


async def test_reopen_a_rejected_draft_from_its_card(env: BotEnv, make_agent) -> None:
    codex, _ = await make_agent("codex")
    await env.backlog.file(make_spec(title="an idea"), codex)
    notifier = Notifier(env.bot, env.backlog, [OP], worker="test")
    await drain(notifier)
    card_id = last_sent_id(env)
    await env.tap(env.buttons()["❌ Reject"], message_id=card_id)
    await drain(notifier)
    edit = env.session.of("EditMessageText")[-1]
    assert edit.message_id == card_id and "Rejected by you" in edit.text
    reopen = env.buttons(edit.reply_markup)["↩️ Reopen"]

    await env.tap(reopen, message_id=card_id)
    assert env.session.answers()[-1] == "Reopened OB-1: it is a draft again"
    task = await env.backlog.get("OB-1")
    assert task.status is Status.DRAFT and task.rejected_by is None
    await drain(notifier)  # the card is an approval card again
    edit = env.session.of("EditMessageText")[-1]
    assert edit.message_id == card_id and "Rejected" not in edit.text
    assert "✅ autonomous" in env.buttons(edit.reply_markup)
    # a second tap on the old button says why nothing happens
    await env.tap(reopen, message_id=card_id)
    assert "cannot reopen OB-1: it is draft" in env.session.answers()[-1]
    kinds = [e.kind for e in await env.backlog.history("OB-1")]
    assert kinds == ["filed", "rejected", "reopened"]
    (event,) = [e for e in await env.backlog.history("OB-1") if e.kind == "reopened"]
    assert event.actor == f"operator:tg:{OP}"


async def test_reopen_a_task_closed_by_mistake_from_its_notice(env: BotEnv, make_agent) -> None:
    codex, _ = await make_agent("codex")
    op = Actor.operator("t")
    key = (await env.backlog.file(make_spec(title="ship"), op, lane=Lane.AUTONOMOUS)).key
    leases = Leases(env.backlog)
    lease = await leases.claim(codex)
    assert lease is not None
    await leases.complete(key, codex, lease.epoch, commits=["abc1234"])
    notifier = Notifier(env.bot, env.backlog, [OP], worker="test")
    await drain(notifier)
    notice, notice_id = env.session.of("SendMessage")[-1], last_sent_id(env)
    assert "completed by codex" in notice.text
    await env.tap(env.buttons()["↩️ Reopen"], message_id=notice_id)
    assert env.session.answers()[-1] == "Reopened OB-1: it is open in autonomous again"
    assert (await env.backlog.get(key)).status is Status.OPEN
    await drain(notifier)
    edit = env.session.of("EditMessageText")[-1]
    assert edit.message_id == notice_id and "· open ·" in edit.text
    assert "→ decision" in env.buttons(edit.reply_markup)
    # /task shows a done task with the button too
    lease = await leases.claim(codex)
    assert lease is not None
    await leases.complete(key, codex, lease.epoch)
    await env.say(f"/task {key}")
    assert "↩️ Reopen" in env.buttons()


async def test_a_likely_duplicate_is_rejected_as_one_in_one_tap(env: BotEnv, make_agent) -> None:
    codex, _ = await make_agent("codex")
    for _ in range(3):  # three identical `ob file` calls
        await env.backlog.file(make_spec(title="Add retries to the uploader"), codex)
    notifier = Notifier(env.bot, env.backlog, [OP], worker="test")
    await drain(notifier)
    first, second, third = env.session.of("SendMessage")
    assert "likely a duplicate" not in first.text
    assert "♊ likely a duplicate of OB-1" in second.text
    buttons = env.buttons(second.reply_markup)
    assert "♊ Reject as duplicate of OB-1" not in env.buttons(first.reply_markup)
    await env.tap(buttons["♊ Reject as duplicate of OB-1"], message_id=1001)
    assert env.session.answers()[-1] == "Rejected OB-2: duplicate of OB-1"
    task = await env.backlog.get("OB-2")
    assert task.status is Status.REJECTED and task.rejected_reason == "duplicate of OB-1"

    # the inbox drain offers the same tap on the duplicate's card
    await env.say("/inbox")
    assert "card 1 of 2" in env.session.texts()[-1]
    await env.tap(env.buttons()["⏭ Skip"])
    card = env.session.of("EditMessageText")[-1]
    assert "♊ likely a duplicate of OB-1" in card.text
    await env.tap(env.buttons(card.reply_markup)["♊ Reject as duplicate of OB-1"])
    assert (await env.backlog.get("OB-3")).rejected_reason == "duplicate of OB-1"
    assert "skipped 1, rejected 1" in env.session.of("EditMessageText")[-1].text
