"""Task cards: the one path that edits them (called by the notifier, from the outbox), and the
answer to a tap on a card whose task was already decided."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup

from bot import keyboards, render
from core.botstore import BotStore, CardKind
from core.models import Actor, Status, Task
from core.questions import Question

log = logging.getLogger("ob.bot.cards")


def operator(user_id: int) -> Actor:
    return Actor.operator(f"tg:{user_id}")


def card_kind(task: Task) -> CardKind:
    return CardKind.APPROVAL if task.status == Status.DRAFT else CardKind.TASK


def markup_for(card: CardKind, task: Task) -> InlineKeyboardMarkup | None:
    """An approval card keeps its buttons while the task is a draft, and offers to reopen it
    once it is rejected or done; a task card always shows what can be done with it now."""
    if card == CardKind.APPROVAL and task.status in (Status.OPEN, Status.CLAIMED):
        return None
    return keyboards.task_actions(task)


def outcome_plain(task: Task, tz: ZoneInfo) -> str:
    """What already happened, for a stale tap (answerCallbackQuery allows 200 characters)."""
    if task.status == Status.REJECTED:
        at = render.when(task.status_at, tz)
        text = f"{task.key} was already rejected by {render.actor_label(task.rejected_by)} at {at}"
    elif task.status == Status.DRAFT:
        text = f"{task.key} is still a draft"
    elif task.status == Status.DONE:
        text = f"{task.key} is already done (by {render.actor_label(task.completed_by)})"
    else:
        into = task.approved_lane or task.lane
        text = (
            f"{task.key} was already approved into {into.short if into else '-'} by "
            f"{render.actor_label(task.approved_by)} at {render.when(task.approved_at, tz)}"
        )
        if task.lane and into and task.lane != into:
            text += f"; it is in {task.lane.short} now"
    return text[:200]


async def edit_message(
    bot: Bot, chat_id: int, message_id: int, text: str, markup: InlineKeyboardMarkup | None
) -> bool:
    """Edit a message; 'not modified' counts as done. False when the message cannot be edited
    any more (deleted, too old); other failures raise, so the caller retries."""
    try:
        await bot.edit_message_text(
            chat_id=chat_id, message_id=message_id, text=render.fit(text), reply_markup=markup
        )
        return True
    except TelegramBadRequest as err:
        msg = str(err).lower()
        if "not modified" in msg:
            return True
        if "not found" in msg or "can't be edited" in msg:
            log.info("message %s/%s cannot be edited any more: %s", chat_id, message_id, err)
            return False
        raise


async def refresh(
    bot: Bot,
    store: BotStore,
    task_id: int,
    task: Task,
    tz: ZoneInfo,
    questions: Sequence[Question] = (),
) -> int:
    """Show the task as it is now (with its open `questions`) on every card of it; returns how
    many cards were edited. Idempotent: an outbox retry re-edits, and Telegram answers 'not
    modified'."""
    text = render.card(task, tz, questions=questions)
    edited = 0
    for card in await store.cards(task_id):
        if await edit_message(
            bot, card.chat_id, card.message_id, text, markup_for(card.kind, task)
        ):
            await store.card_edited(card)
            edited += 1
        else:
            await store.forget_card(card)
    return edited


async def show_answer(bot: Bot, store: BotStore, qid: int, text: str) -> int:
    """Every card of the question shows `text` (its answer), without buttons; returns how
    many."""
    edited = 0
    for chat_id, message_id in await store.question_cards(qid):
        if await edit_message(bot, chat_id, message_id, text, None):
            edited += 1
        else:
            await store.forget_question_card(chat_id, message_id)
    return edited
