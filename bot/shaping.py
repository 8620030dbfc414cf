"""One-tap shaping on triage and decision cards: a priority (P0–P3), or a snooze (tomorrow, next
week: the trigger date that keeps the task out of the drain modes and agents' claims until that
day, when the digest brings it back). Moving to an agent lane is the cards' [→ lane] buttons.

A tap changes the task through core and answers it; a task card is refreshed by the notifier
(task_edited), a drain mode's card — the bot's own message — by the drain: a new priority shows
on it, a snooze moves on to the next card.
"""

from __future__ import annotations

from typing import Any

from aiogram import Bot, F
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery

from bot import drain, keyboards
from bot.callbacks import PRIORITIES, SNOOZES, ShapeCB
from bot.cards import edit_message, operator
from bot.forms import Drain
from bot.routing import Routes
from core.backlog import Backlog
from core.models import Task
from core.shaping import local_today, snooze_until

router = Routes(name="shaping")


async def _where(cq: CallbackQuery, cb: ShapeCB, state: FSMContext) -> tuple[bool, Drain | None]:
    """(go on?, the drain the tap came from, if it came from one and is still current)."""
    if cb.mode is None:
        return True, None
    walk = await drain.current(cq, cb.mode, cb.number, state)
    return walk is not None, walk


async def _edit(cq: CallbackQuery, cb: ShapeCB, backlog: Backlog, **change: Any) -> Task:
    """The tap's change to the task through core (a refusal is answered by bot.errors)."""
    return (await backlog.edit(backlog.key(cb.number), operator(cq.from_user.id), **change)).task


@router.callback_query(ShapeCB.filter(F.shape.in_(set(PRIORITIES))))
async def prioritise(
    cq: CallbackQuery, callback_data: ShapeCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    go_on, walk = await _where(cq, callback_data, state)
    if not go_on:
        return
    priority = PRIORITIES[callback_data.shape]
    task = await _edit(cq, callback_data, backlog, priority=priority)
    await cq.answer(f"{task.key} is P{priority} now")
    if walk is not None and cq.message is not None:
        await edit_message(
            bot,
            cq.message.chat.id,
            cq.message.message_id,
            drain.card_text(walk, task, backlog),
            keyboards.drain(walk.mode, task),
        )


@router.callback_query(ShapeCB.filter(F.shape.in_(set(SNOOZES))))
async def snooze(
    cq: CallbackQuery, callback_data: ShapeCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    go_on, walk = await _where(cq, callback_data, state)
    if not go_on:
        return
    later = SNOOZES[callback_data.shape]
    until = snooze_until(later, local_today(backlog.settings.tz))
    task = await _edit(cq, callback_data, backlog, trigger_on=until)
    if walk is None:
        await cq.answer(f"{task.key} snoozed until {until:%a %d %b}; the digest brings it back")
    else:
        await drain.advance(cq, walk, "snoozed", bot, backlog, state)
