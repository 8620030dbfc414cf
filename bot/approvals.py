"""Task card buttons, one handler per action: approve a draft into a lane, move a task to
another lane, reject (with or without a reason), edit the spec.

A handler changes the task through core and answers the tap; the card itself is edited by the
notifier from the outbox row the change wrote (the one path that edits cards), so a decision
made here, in the CLI or by a second `ob serve` shows the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiogram import Bot, F
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import CallbackQuery, Message

from bot import keyboards, render
from bot.callbacks import CardAction, CardCB
from bot.cards import card_kind, operator, outcome_plain
from bot.errors import problem_list
from bot.forms import TASK_PROMPT, Prompt, TaskPrompt
from bot.routing import PLAIN, Routes
from core.backlog import Backlog, spec_of
from core.botstore import BotStore
from core.errors import InvalidTransition, NotFound
from core.models import Status, Task
from core.settings import Settings
from core.spec import SpecError, parse
from core.spec import render as render_spec

router = Routes(name="approvals")


async def _missing(cq: CallbackQuery, backlog: Backlog, number: int) -> None:
    await cq.answer(f"There is no task {backlog.key(number)}.", show_alert=True)


async def _current(cq: CallbackQuery, backlog: Backlog, number: int) -> Task | None:
    try:
        return await backlog.get(backlog.key(number))
    except NotFound:
        await _missing(cq, backlog, number)
        return None


async def _stale(cq: CallbackQuery, backlog: Backlog, number: int) -> None:
    """A tap on a card whose task was decided meanwhile: say what happened."""
    task = await _current(cq, backlog, number)
    if task is not None:
        await cq.answer(outcome_plain(task, backlog.settings.tz), show_alert=True)


async def _decided(
    cq: CallbackQuery, backlog: Backlog, number: int, decision: Awaitable[object]
) -> bool:
    """Carry out the tap's decision; when the task was decided meanwhile or is gone, answer
    what happened instead (False)."""
    try:
        await decision
    except InvalidTransition:
        await _stale(cq, backlog, number)
        return False
    except NotFound:
        await _missing(cq, backlog, number)
        return False
    return True


@router.callback_query(CardCB.filter((F.action == CardAction.APPROVE) & F.lane))
async def approve(cq: CallbackQuery, callback_data: CardCB, backlog: Backlog) -> None:
    assert callback_data.lane is not None
    key = backlog.key(callback_data.number)
    decision = backlog.approve(key, operator(cq.from_user.id), callback_data.lane)
    if await _decided(cq, backlog, callback_data.number, decision):
        await cq.answer(f"Approved {key} into {callback_data.lane.short}")


@router.callback_query(CardCB.filter((F.action == CardAction.MOVE) & F.lane))
async def move(cq: CallbackQuery, callback_data: CardCB, backlog: Backlog) -> None:
    assert callback_data.lane is not None
    key = backlog.key(callback_data.number)
    await backlog.move_lane(key, callback_data.lane, operator(cq.from_user.id))
    await cq.answer(f"Moved {key} to {callback_data.lane.short}")


@router.callback_query(CardCB.filter(F.action.in_({CardAction.REJECT, CardAction.DROP})))
async def reject(cq: CallbackQuery, callback_data: CardCB, backlog: Backlog) -> None:
    """Reject a draft (approval card) or drop an approved task (task card); a reject button on
    a draft that was approved meanwhile answers what happened instead."""
    key = backlog.key(callback_data.number)
    drafts_only = callback_data.action == CardAction.REJECT
    decision = backlog.reject(key, operator(cq.from_user.id), drafts_only=drafts_only)
    if await _decided(cq, backlog, callback_data.number, decision):
        await cq.answer(f"Rejected {key}")


@router.callback_query(CardCB.filter(F.action == CardAction.DUPLICATE))
async def reject_duplicate(cq: CallbackQuery, callback_data: CardCB, backlog: Backlog) -> None:
    key = backlog.key(callback_data.number)
    decision = backlog.reject_duplicate(key, operator(cq.from_user.id))
    if await _decided(cq, backlog, callback_data.number, decision):
        task = await backlog.get(key)
        await cq.answer(f"Rejected {key}: {task.rejected_reason}")


@router.callback_query(CardCB.filter(F.action == CardAction.REOPEN))
async def reopen(cq: CallbackQuery, callback_data: CardCB, backlog: Backlog) -> None:
    """Undo a decision: a done task is open again, a rejected one a draft again; the notifier
    then shows it so on every card."""
    key = backlog.key(callback_data.number)
    task = await backlog.reopen(key, operator(cq.from_user.id))
    where = f"open in {task.lane.short}" if task.lane and task.status == Status.OPEN else "a draft"
    await cq.answer(f"Reopened {key}: it is {where} again")


async def _ask(
    cq: CallbackQuery,
    number: int,
    backlog: Backlog,
    state: FSMContext,
    prompt: State,
    allowed: tuple[Status, ...],
) -> Task | None:
    """Open a prompt about a task still in one of `allowed` (else say what happened)."""
    task = await _current(cq, backlog, number)
    if task is None:
        return None
    if task.status not in allowed:
        await _stale(cq, backlog, number)
        return None
    await state.set_state(prompt)
    await TASK_PROMPT.set(state, TaskPrompt(number=task.number))
    await cq.answer()
    return task


@router.callback_query(CardCB.filter(F.action == CardAction.REJECT_WITH_REASON))
async def ask_reason(
    cq: CallbackQuery,
    callback_data: CardCB,
    bot: Bot,
    backlog: Backlog,
    state: FSMContext,
    settings: Settings,
) -> None:
    drafts = (Status.DRAFT,)
    task = await _ask(cq, callback_data.number, backlog, state, Prompt.reject_reason, drafts)
    if task is not None:
        await bot.send_message(
            cq.from_user.id,
            f"Why reject <b>{render.esc(task.key)}</b>? Send the reason, or /skip for none, "
            f"/cancel to keep it ({render.waits(settings.prompt_ttl)}).",
        )


@router.callback_query(CardCB.filter(F.action == CardAction.EDIT))
async def ask_spec(
    cq: CallbackQuery,
    callback_data: CardCB,
    bot: Bot,
    backlog: Backlog,
    state: FSMContext,
    settings: Settings,
) -> None:
    unfinished = (Status.DRAFT, Status.OPEN, Status.CLAIMED)
    task = await _ask(cq, callback_data.number, backlog, state, Prompt.edit_spec, unfinished)
    if task is None:
        return
    text = render_spec(spec_of(task).model_copy(update={"key": None, "status": None, "lane": None}))
    await bot.send_message(
        cq.from_user.id,
        render.fit(
            f"Editing <b>{render.esc(task.key)}</b>. Copy, change and send back the spec "
            f"(or /cancel; {render.waits(settings.prompt_ttl)}):\n"
            f"<pre>{render.esc(text, 3500)}</pre>"
        ),
    )


@router.message(Prompt.reject_reason, Command("skip"))
@router.message(Prompt.reject_reason, PLAIN)
async def got_reason(message: Message, backlog: Backlog, state: FSMContext) -> None:
    prompt = await TASK_PROMPT.get(state)
    await state.clear()
    if prompt is None or message.from_user is None:
        return
    key = backlog.key(prompt.number)
    reason = None if (message.text or "").strip() == "/skip" else message.text
    try:
        await backlog.reject(key, operator(message.from_user.id), reason, drafts_only=True)
    except InvalidTransition:  # decided meanwhile: say how
        task = await backlog.get(key)
        await message.answer(render.esc(outcome_plain(task, backlog.settings.tz)))
        return
    await message.answer(f"❌ Rejected <b>{render.esc(key)}</b>.")


@router.message(Prompt.edit_spec, PLAIN)
async def got_spec(message: Message, backlog: Backlog, store: BotStore, state: FSMContext) -> None:
    prompt = await TASK_PROMPT.get(state)
    if prompt is None or message.from_user is None:
        await state.clear()
        return
    try:
        spec = parse(message.text or "")
    except SpecError as err:  # the prompt stays open for another try
        await message.answer(
            render.fit(
                f"I could not read that spec:\n{problem_list(err)}\nSend it again, or /cancel."
            )
        )
        return
    await state.clear()
    edited = await backlog.edit_from_spec(
        backlog.key(prompt.number), spec, operator(message.from_user.id)
    )
    task = edited.task
    head = f"✏️ <b>{render.esc(task.key)}</b> updated: {render.esc(edited.summary(), 500)}\n\n"
    sent = await message.answer(
        render.fit(head + render.card(task, backlog.settings.tz)),
        reply_markup=keyboards.task_actions(task),
    )
    await store.remember_card(task.number, sent.chat.id, sent.message_id, card_kind(task))
