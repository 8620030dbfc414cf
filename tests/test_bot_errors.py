"""One error handler for the whole bot (bot.errors), through the real Dispatcher: a refusal from
core (BacklogError) or a text that does not read (SpecError), raised by a message handler or by
a button's handler, is answered with its one clear line; anything else is logged with its
traceback and answered politely."""

from __future__ import annotations

import logging

import pytest
from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.callbacks import CaptureAction, CaptureCB, CardAction, CardCB
from core.models import Actor, Lane
from core.spec import make_spec
from tests.test_bot_dispatcher import OP, BotEnv, make_env

CODEX = Actor.agent("codex", 1)


@pytest.fixture
async def env(backlog) -> BotEnv:
    return make_env(backlog)


def alerts(env: BotEnv) -> list[tuple[str | None, bool | None]]:
    return [(m.text, m.show_alert) for m in env.session.of("AnswerCallbackQuery")]


async def test_a_refusal_from_a_message_handler_is_its_line(env: BotEnv) -> None:
    await env.say("/task OB-99")  # core: NotFound
    assert env.session.texts()[-1] == "no task 'OB-99'; keys look like OB-12 (see `ob list`)"


async def test_a_spec_that_does_not_read_from_a_message_handler_says_why(env: BotEnv) -> None:
    await env.say("x" * 300)  # core: SpecError (the title is too long)
    reply = env.session.texts()[-1]
    assert reply.startswith("I could not read that as a task:\n• ")
    assert "200" in reply and "/new walks you through it" in reply


async def test_a_refusal_from_a_button_is_an_alert_with_its_line(env: BotEnv) -> None:
    draft = await env.backlog.file(make_spec(title="an agent's idea"), CODEX)
    move = CardCB(action=CardAction.MOVE, number=draft.number, lane=Lane.DECISION).pack()
    await env.tap(move)  # core: InvalidTransition (a draft is approved, not moved)
    ((text, show_alert),) = alerts(env)
    assert show_alert is True
    said = f"{draft.key} is a draft; approve it into a lane instead (`ob approve {draft.key} "
    assert text == said + "--lane decision`)"
    assert env.session.of("SendMessage") == []


async def test_a_spec_that_does_not_read_from_a_button_is_an_alert(env: BotEnv) -> None:
    await env.say("Tidy the CI config")
    capture = await env.backlog.pool.fetchval("select id from bot_captures")
    # the preview's text no longer reads by the time its button is tapped
    await env.backlog.pool.execute("update bot_captures set text = $1", "y" * 300)
    env.session.clear()
    await env.tap(CaptureCB(action=CaptureAction.SAVE, capture=capture, lane=Lane.TRIAGE).pack())
    ((text, show_alert),) = alerts(env)
    assert show_alert is True and text is not None
    assert text.startswith("invalid spec: ") and "200" in text and len(text) <= 200
    assert await env.backlog.list() == []


async def test_an_unexpected_error_is_logged_and_answered_politely(
    env: BotEnv, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Router(name="broken")

    @broken.message(Command("boom"))
    async def boom(message: Message) -> None:
        raise RuntimeError("a defect")

    env.dp.include_router(broken)
    env.dp.sub_routers.insert(0, env.dp.sub_routers.pop())  # before the capture of any text
    with caplog.at_level(logging.ERROR, logger="ob.bot.errors"):
        await env.say("/boom")
    assert env.session.texts()[-1] == "Something went wrong; the details are logged."
    (record,) = [r for r in caplog.records if r.name == "ob.bot.errors"]
    assert record.exc_info is not None and "a defect" in str(record.exc_info[1])


async def test_a_stranger_gets_no_answer_from_the_error_handler(env: BotEnv) -> None:
    """The allowlist runs first: a stranger's text reaches no handler, so no error either."""
    await env.say("/task OB-99", uid=OP + 1)
    assert "no task" not in "\n".join(t or "" for t in env.session.texts())
