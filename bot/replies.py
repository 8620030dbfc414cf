"""Replies amend: replying to a task card (or to any message that names exactly one task) or to
an open preview with `step: …`, `risk: …`, `P0`, `lane decision`, `trigger: …`, `repo: x` — or
free text, appended to the notes — changes that task through core (an `edited` event; the
notifier refreshes its cards) or that preview (edited in place); the bot answers with what
changed. A reply to anything else is captured like any message."""

from __future__ import annotations

import re

from aiogram import Bot, F
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import StateFilter
from aiogram.types import Message

from bot import previews, render
from bot.cards import operator
from bot.errors import problem_list
from bot.forms import Planning
from bot.routing import PLAIN, Routes
from core.backlog import Backlog
from core.botstore import BotStore
from core.captures import Capture, CaptureDecided
from core.models import Actor, Status, parse_key
from core.shaping import Amendment, changes, describe, parse_amendment
from core.spec import SpecError

router = Routes(name="replies")


def _changed(what: str, lines: list[str]) -> str:
    if not lines:
        return f"Nothing to change in {what}."
    return render.fit(f"✏️ {what}:\n" + "\n".join(f"• {render.esc(x, 300)}" for x in lines))


def _named_task(backlog: Backlog, bot: Bot, target: Message) -> int | None:
    """The one task a message of the bot's (a notice, a saved preview) names, if exactly one."""
    if target.from_user is None or target.from_user.id != bot.id:
        return None
    text = target.text or target.caption or ""
    found = {
        parse_key(m, backlog.prefix)
        for m in re.findall(rf"\b{re.escape(backlog.prefix)}-\d{{1,12}}\b", text)
    }
    found.discard(None)
    return found.pop() if len(found) == 1 else None


async def _target_task(
    backlog: Backlog, bot: Bot, store: BotStore, target: Message, capture: Capture | None
) -> int | None:
    if capture is not None and capture.task_key:
        return parse_key(capture.task_key, backlog.prefix)
    number = await store.card_task(target.chat.id, target.message_id)
    if number is None and capture is None:
        number = _named_task(backlog, bot, target)
    return number


# Outside a conversation (a planning session collects, but a reply there still amends); a reply
# to a question the bot asked is that question's answer.
@router.message(StateFilter(None, Planning.collecting), F.reply_to_message, PLAIN)
async def amend(message: Message, bot: Bot, backlog: Backlog, store: BotStore) -> None:
    target = message.reply_to_message
    if target is None or message.from_user is None:
        raise SkipHandler
    capture = await store.captures.at_message(message.chat.id, target.message_id)
    if capture is not None and capture.outcome is None:
        await _amend_preview(message, bot, store, capture, message.from_user.id)
        return
    number = await _target_task(backlog, bot, store, target, capture)
    if number is None:
        if capture is None:
            raise SkipHandler  # a reply to something that is no task: capture it as usual
        await message.answer(render.esc(str(CaptureDecided(capture)), 300))
        return
    await _amend_task(message, backlog, backlog.key(number), operator(message.from_user.id))


async def _amend_preview(
    message: Message, bot: Bot, store: BotStore, capture: Capture, user_id: int
) -> None:
    amendment = parse_amendment(message.text or "")
    before = await store.captures.draft(capture)
    captured = await store.captures.amend(capture.id, user_id, amendment)
    await previews.show(bot, message.chat.id, store.captures, captured, in_place=True)
    spec = before.specs[0]
    await message.answer(_changed("The preview", describe(spec, amendment, spec.lane)))


async def _amend_task(message: Message, backlog: Backlog, key: str, actor: Actor) -> None:
    try:
        amendment: Amendment = parse_amendment(message.text or "")
        task = await backlog.get(key)
        draft = task.status == Status.DRAFT
        lines = describe(task, amendment, None if draft else task.lane)
        edits = changes(task, amendment)
        if edits:
            await backlog.edit(key, actor, **edits)
        if draft and amendment.lane is not None:  # a draft into a lane: approved there
            await backlog.approve(key, actor, amendment.lane)
        elif amendment.lane is not None and amendment.lane != task.lane:
            await backlog.move_lane(key, amendment.lane, actor)
    except SpecError as err:  # an amendment, not a task: say which task it was for
        await message.answer(
            render.fit(f"I could not apply that to {render.esc(key)}:\n{problem_list(err)}")
        )
        return
    await message.answer(_changed(f"<b>{render.esc(key)}</b>", lines))
