"""Drain modes: /inbox (drafts), /triage, /decide walk one card at a time, then sum up. Tasks
snoozed past today stay out of the walk until their day."""

from __future__ import annotations

from collections.abc import Awaitable

from aiogram import Bot, F
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards, render
from bot.callbacks import DigestCB, DrainAction, DrainCB, DrainMode
from bot.cards import edit_message, operator
from bot.forms import DRAIN, Drain
from bot.routing import Routes
from core.backlog import Backlog
from core.errors import InvalidTransition, NotFound
from core.models import Lane, Status, Task
from core.shaping import local_today
from core.tasks import TaskFilter

router = Routes(name="drain")

TITLES = {DrainMode.INBOX: "Inbox (drafts)", DrainMode.TRIAGE: "Triage", DrainMode.DECIDE: "Decide"}
FILTERS = {
    DrainMode.INBOX: TaskFilter(status=[Status.DRAFT], limit=50),
    DrainMode.TRIAGE: TaskFilter(status=[Status.OPEN], lane=[Lane.TRIAGE], limit=50),
    DrainMode.DECIDE: TaskFilter(status=[Status.OPEN], lane=[Lane.DECISION], limit=50),
}
# What happened to each card, in the summary's words.
OUTCOMES = {
    "approved": "approved",
    "moved": "moved",
    "rejected": "rejected",
    "skipped": "skipped",
    "snoozed": "snoozed",
    "gone": "changed elsewhere",
}


def _still_current(mode: DrainMode, task: Task) -> bool:
    if mode == DrainMode.INBOX:
        return task.status == Status.DRAFT
    lane = Lane.TRIAGE if mode == DrainMode.TRIAGE else Lane.DECISION
    return task.status == Status.OPEN and task.lane == lane


async def _next_card(backlog: Backlog, d: Drain) -> Task | None:
    """The next task of the queue still in the mode's lane (the others changed elsewhere)."""
    while d.queue:
        try:
            task: Task | None = await backlog.get(backlog.key(d.queue[0]))
        except NotFound:
            task = None
        if task is not None and _still_current(d.mode, task):
            return task
        d.queue.pop(0)
        d.count("gone")
    return None


def card_text(d: Drain, task: Task, backlog: Backlog) -> str:
    done = sum(d.tally.values())
    head = f"<b>{TITLES[d.mode]}</b> · card {done + 1} of {done + len(d.queue)}\n\n"
    return render.fit(head + render.card(task, backlog.settings.tz))


def _summary(d: Drain, *, stopped: bool = False) -> str:
    parts = [f"{OUTCOMES[k]} {v}" for k, v in d.tally.items() if v]
    text = f"<b>{TITLES[d.mode]}</b> {'stopped' if stopped else 'finished'}: " + (
        ", ".join(parts) if parts else "nothing done"
    )
    if stopped and d.queue:
        text += f"; {len(d.queue)} left for next time"
    return text + "."


async def start_drain(
    mode: DrainMode, chat_id: int, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    due = local_today(backlog.settings.tz)
    tasks = await backlog.list(FILTERS[mode].model_copy(update={"due_by": due}))
    if mode == DrainMode.INBOX:
        tasks.sort(key=lambda t: t.created_at)
    d = Drain(mode=mode, queue=[t.number for t in tasks])
    task = await _next_card(backlog, d)
    if task is None:
        await bot.send_message(chat_id, f"<b>{TITLES[mode]}</b>: nothing waiting. 🎉")
        await DRAIN.set(state, None)
        return
    await DRAIN.set(state, d)
    await bot.send_message(
        chat_id, card_text(d, task, backlog), reply_markup=keyboards.drain(mode, task)
    )


@router.message(Command(*(m.value for m in DrainMode)))
async def on_command(
    message: Message, command: CommandObject, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    await start_drain(DrainMode(command.command.lower()), message.chat.id, bot, backlog, state)


@router.callback_query(DigestCB.filter())
async def on_digest_button(
    cq: CallbackQuery, callback_data: DigestCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    await cq.answer()
    await start_drain(callback_data.mode, cq.from_user.id, bot, backlog, state)


async def current(
    cq: CallbackQuery, mode: DrainMode, number: int, state: FSMContext
) -> Drain | None:
    """The drain this tap belongs to, if its card (task `number`) is the one being shown."""
    d = await DRAIN.get(state)
    if d is None or d.mode != mode or not d.queue or d.queue[0] != number:
        await cq.answer("That card is no longer current; start the mode again.", show_alert=True)
        return None
    return d


async def advance(
    cq: CallbackQuery, d: Drain, outcome: str, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    """Count the card's outcome, then show the next card (or the summary) in its place."""
    number = d.queue.pop(0)
    d.count(outcome)
    await cq.answer(f"{backlog.key(number)} {OUTCOMES[outcome]}")
    task = await _next_card(backlog, d)
    await DRAIN.set(state, d if task else None)
    if cq.message is None:
        return
    chat_id, message_id = cq.message.chat.id, cq.message.message_id
    if task is None:
        await edit_message(bot, chat_id, message_id, _summary(d), None)
    else:
        await edit_message(
            bot, chat_id, message_id, card_text(d, task, backlog), keyboards.drain(d.mode, task)
        )


async def _decide(
    cq: CallbackQuery,
    d: Drain,
    outcome: str,
    decision: Awaitable[object],
    bot: Bot,
    backlog: Backlog,
    state: FSMContext,
) -> None:
    """Carry out the tap's decision on the current card and go on to the next; a task decided
    elsewhere meanwhile, or gone, counts as "gone"."""
    try:
        await decision
    except (InvalidTransition, NotFound):
        outcome = "gone"
    await advance(cq, d, outcome, bot, backlog, state)


@router.callback_query(DrainCB.filter((F.action == DrainAction.APPROVE) & F.lane))
async def approve(
    cq: CallbackQuery, callback_data: DrainCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    if (d := await current(cq, callback_data.mode, callback_data.number, state)) is None:
        return
    assert callback_data.lane is not None
    key, who = backlog.key(callback_data.number), operator(cq.from_user.id)
    decision = backlog.approve(key, who, callback_data.lane)
    await _decide(cq, d, "approved", decision, bot, backlog, state)


@router.callback_query(DrainCB.filter((F.action == DrainAction.MOVE) & F.lane))
async def move(
    cq: CallbackQuery, callback_data: DrainCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    if (d := await current(cq, callback_data.mode, callback_data.number, state)) is None:
        return
    assert callback_data.lane is not None
    key, who = backlog.key(callback_data.number), operator(cq.from_user.id)
    decision = backlog.move_lane(key, callback_data.lane, who)
    await _decide(cq, d, "moved", decision, bot, backlog, state)


@router.callback_query(DrainCB.filter(F.action == DrainAction.REJECT))
async def reject(
    cq: CallbackQuery, callback_data: DrainCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    if (d := await current(cq, callback_data.mode, callback_data.number, state)) is None:
        return
    decision = backlog.reject(backlog.key(callback_data.number), operator(cq.from_user.id))
    await _decide(cq, d, "rejected", decision, bot, backlog, state)


@router.callback_query(DrainCB.filter(F.action == DrainAction.DUPLICATE))
async def reject_duplicate(
    cq: CallbackQuery, callback_data: DrainCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    if (d := await current(cq, callback_data.mode, callback_data.number, state)) is None:
        return
    key, who = backlog.key(callback_data.number), operator(cq.from_user.id)
    await _decide(cq, d, "rejected", backlog.reject_duplicate(key, who), bot, backlog, state)


@router.callback_query(DrainCB.filter(F.action == DrainAction.SKIP))
async def skip(
    cq: CallbackQuery, callback_data: DrainCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    if (d := await current(cq, callback_data.mode, callback_data.number, state)) is not None:
        await advance(cq, d, "skipped", bot, backlog, state)


@router.callback_query(DrainCB.filter(F.action == DrainAction.STOP))
async def stop(
    cq: CallbackQuery, callback_data: DrainCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    if (d := await current(cq, callback_data.mode, callback_data.number, state)) is None:
        return
    await DRAIN.set(state, None)
    left = f"; {len(d.queue)} left" if d.queue else ""
    await cq.answer(f"Stopped{left}")
    if cq.message is not None:
        await edit_message(
            bot, cq.message.chat.id, cq.message.message_id, _summary(d, stopped=True), None
        )
