"""Approval cards and task actions: approve into a lane, move, edit, reject (with a reason)."""

from __future__ import annotations

import logging

from aiogram import Bot, F
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot import cards, keyboards, render
from bot.callbacks import CardCB, lane_of
from bot.routing import Routes
from core.backlog import Backlog, spec_of
from core.errors import BacklogError, InvalidTransition, NotFound
from core.models import Status, Task
from core.spec import SpecError, parse
from core.spec import render as render_spec

log = logging.getLogger("ob.bot.approvals")
router = Routes(name="approvals")


class Decide(StatesGroup):
    reason = State()
    edit = State()


async def _stale(cq: CallbackQuery, bot: Bot, backlog: Backlog, number: int) -> None:
    """A tap on a card whose task was already decided: say what happened, refresh the card."""
    key = f"{backlog.prefix}-{number}"
    task = await backlog.get(key)
    by = await cards.decided_by(backlog, key)
    await cq.answer(cards.outcome_plain(task, by, backlog.settings.tz), show_alert=True)
    edited = await cards.refresh(bot, backlog, number, by=by)
    if cq.message is not None and (cq.message.chat.id, cq.message.message_id) not in edited:
        await cards.safe_edit(
            bot,
            cq.message.chat.id,
            cq.message.message_id,
            render.card(task, backlog.settings.tz, by=by),
            None,
        )


async def _after(
    cq: CallbackQuery, bot: Bot, backlog: Backlog, task: Task, note: str, *, actions: bool = False
) -> None:
    """A decision was made here: answer, then show the outcome on every card of the task."""
    await cq.answer(note[:200])
    by = str(cards.operator(cq.from_user.id))
    await cards.refresh(bot, backlog, task.number, by=by, task=task)
    # a remembered card was edited by refresh (here or by the notifier, whichever came first)
    if cq.message is not None and not await cards.is_card(
        backlog.pool, cq.message.chat.id, cq.message.message_id
    ):
        await cards.safe_edit(
            bot,
            cq.message.chat.id,
            cq.message.message_id,
            render.card(task, backlog.settings.tz, by=by),
            keyboards.task_actions(task) if actions else None,
        )


@router.callback_query(CardCB.filter())
async def on_card(
    cq: CallbackQuery, callback_data: CardCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    cb = callback_data
    key = f"{backlog.prefix}-{cb.n}"
    actor = cards.operator(cq.from_user.id)
    if cb.a in ("ok", "mv"):
        lane = lane_of(cb.l)
        if lane is None:
            await cq.answer("That button is not valid.", show_alert=True)
            return
        try:
            if cb.a == "ok":
                task = await backlog.approve(key, actor, lane)
                note = f"Approved {key} into {lane.value}"
            else:
                task = await backlog.move_lane(key, lane, actor)
                note = f"Moved {key} to {lane.value}"
        except NotFound:
            await cq.answer(f"There is no task {key}.", show_alert=True)
            return
        except InvalidTransition:
            await _stale(cq, bot, backlog, cb.n)
            return
        await _after(cq, bot, backlog, task, note, actions=cb.a == "mv")
        return
    try:
        task = await backlog.get(key)
    except NotFound:
        await cq.answer(f"There is no task {key}.", show_alert=True)
        return
    if cb.a in ("rj", "rx"):
        if cb.a == "rj" and task.status != Status.DRAFT:
            await _stale(cq, bot, backlog, cb.n)
            return
        try:
            task = await backlog.reject(key, actor)
        except InvalidTransition:
            await _stale(cq, bot, backlog, cb.n)
            return
        await _after(cq, bot, backlog, task, f"Rejected {key}")
    elif cb.a == "rr":
        if task.status != Status.DRAFT:
            await _stale(cq, bot, backlog, cb.n)
            return
        await state.set_state(Decide.reason)
        await state.update_data(reject=cb.n)
        await cq.answer()
        await bot.send_message(
            cq.from_user.id,
            f"Why reject <b>{render.esc(key)}</b>? Send the reason, or /skip for none, "
            "/cancel to keep it.",
        )
    elif cb.a == "ed":
        if task.status not in (Status.DRAFT, Status.OPEN, Status.CLAIMED):
            await _stale(cq, bot, backlog, cb.n)
            return
        await state.set_state(Decide.edit)
        await state.update_data(edit=cb.n)
        await cq.answer()
        text = render_spec(
            spec_of(task).model_copy(update={"key": None, "status": None, "lane": None})
        )
        await bot.send_message(
            cq.from_user.id,
            render.fit(
                f"Editing <b>{render.esc(key)}</b>. Copy, change and send back the spec "
                f"(or /cancel):\n<pre>{render.esc(text, 3500)}</pre>"
            ),
        )
    else:
        await cq.answer("That button is not valid.", show_alert=True)


@router.message(Decide.reason, Command("skip"))
@router.message(Decide.reason, F.text & ~F.text.startswith("/"))
async def on_reason(message: Message, bot: Bot, backlog: Backlog, state: FSMContext) -> None:
    data = await state.get_data()
    number = data.get("reject")
    await state.set_state(None)
    await state.update_data(reject=None)
    if not isinstance(number, int):
        return
    key = f"{backlog.prefix}-{number}"
    reason = None if (message.text or "").strip() == "/skip" else message.text
    try:
        task = await backlog.get(key)
        if task.status != Status.DRAFT:
            by = await cards.decided_by(backlog, key)
            await message.answer(render.esc(cards.outcome_plain(task, by, backlog.settings.tz)))
            return
        await backlog.reject(key, cards.operator(message.from_user.id), reason)
    except BacklogError as err:
        await message.answer(render.esc(str(err), 1000))
        return
    await cards.refresh(bot, backlog, number, by=str(cards.operator(message.from_user.id)))
    await message.answer(f"❌ Rejected <b>{render.esc(key)}</b>.")


@router.message(Decide.edit, F.text & ~F.text.startswith("/"))
async def on_edit(message: Message, backlog: Backlog, state: FSMContext) -> None:
    data = await state.get_data()
    number = data.get("edit")
    if not isinstance(number, int):
        await state.set_state(None)
        return
    key = f"{backlog.prefix}-{number}"
    try:
        spec = parse(message.text or "")
    except SpecError as err:
        problems = "\n".join(f"• {render.esc(p, 300)}" for p in err.problems[:10])
        await message.answer(
            render.fit(f"I could not read that spec:\n{problems}\nSend it again, or /cancel.")
        )
        return
    await state.set_state(None)
    await state.update_data(edit=None)
    try:
        task = await backlog.edit_from_spec(key, spec, cards.operator(message.from_user.id))
    except BacklogError as err:
        await message.answer(render.esc(str(err), 1000))
        return
    sent = await message.answer(
        render.card(task, backlog.settings.tz), reply_markup=keyboards.task_actions(task)
    )
    if task.status == Status.DRAFT:
        tid = await cards.task_id(backlog.pool, number)
        if tid is not None:
            await cards.remember(backlog.pool, tid, sent.chat.id, sent.message_id)
