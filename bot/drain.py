"""Drain modes: /inbox (drafts), /triage, /decide walk one card at a time, then sum up.

/inbox and /decide come in the order of what deciding releases (core.decisions): /decide shows
the agents' open questions (one button per option; a reply to the card answers too) and the
decision lane, a question an agent is waiting on first. Tasks snoozed past today stay out of the
walk until their day."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

from aiogram import Bot, F
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards, render
from bot.callbacks import DigestCB, DrainAction, DrainCB, DrainMode
from bot.cards import edit_message, operator
from bot.forms import DRAIN, Drain, DrainItem
from bot.routing import Routes
from core.backlog import Backlog
from core.botstore import BotStore
from core.decisions import Decisions, PendingKind
from core.errors import InvalidTransition, NotFound
from core.models import Lane, Status, Task
from core.questions import Question, Questions
from core.shaping import local_today
from core.tasks import TaskFilter

router = Routes(name="drain")

TITLES = {DrainMode.INBOX: "Inbox (drafts)", DrainMode.TRIAGE: "Triage", DrainMode.DECIDE: "Decide"}
TRIAGE = TaskFilter(status=[Status.OPEN], lane=[Lane.TRIAGE], limit=50)
RANKED = {
    DrainMode.INBOX: (PendingKind.DRAFT,),
    DrainMode.DECIDE: (PendingKind.QUESTION, PendingKind.DECISION),
}
# What happened to each card, in the summary's words.
OUTCOMES = {
    "approved": "approved",
    "moved": "moved",
    "rejected": "rejected",
    "answered": "answered",
    "skipped": "skipped",
    "snoozed": "snoozed",
    "gone": "changed elsewhere",
}


@dataclass
class Card:
    task: Task
    question: Question | None = None


def _still_current(mode: DrainMode, card: Card) -> bool:
    task, q = card.task, card.question
    if q is not None:
        return q.answered_at is None and not q.moot
    if mode == DrainMode.INBOX:
        return task.status == Status.DRAFT
    lane = Lane.TRIAGE if mode == DrainMode.TRIAGE else Lane.DECISION
    return task.status == Status.OPEN and task.lane == lane


async def _card(backlog: Backlog, item: DrainItem) -> Card | None:
    try:
        task = await backlog.get(backlog.key(item.number))
        if item.question is None:
            return Card(task)
        return Card(task, await Questions(backlog).get(item.question))
    except NotFound:
        return None


async def _next_card(backlog: Backlog, d: Drain) -> Card | None:
    """The next card of the queue still waiting for the operator (the others changed
    elsewhere)."""
    while d.queue:
        card = await _card(backlog, d.queue[0])
        if card is not None and _still_current(d.mode, card):
            return card
        d.queue.pop(0)
        d.count("gone")
    return None


async def _queue(mode: DrainMode, backlog: Backlog) -> list[DrainItem]:
    due = local_today(backlog.settings.tz)
    if mode in RANKED:
        found = await Decisions(backlog).ranked(RANKED[mode], 50, due_by=due)
        return [
            DrainItem(number=p.number, question=p.question.id if p.question else None)
            for p in found.items
        ]
    tasks = await backlog.list(TRIAGE.model_copy(update={"due_by": due}))
    return [DrainItem(number=t.number) for t in tasks]


def card_text(d: Drain, task: Task, backlog: Backlog, question: Question | None = None) -> str:
    done = sum(d.tally.values())
    head = f"<b>{TITLES[d.mode]}</b> · card {done + 1} of {done + len(d.queue)}\n\n"
    tz = backlog.settings.tz
    body = render.question(question, task.title, tz) if question else render.card(task, tz)
    return render.fit(head + body)


def _markup(mode: DrainMode, card: Card) -> InlineKeyboardMarkup:
    if card.question is not None:
        return keyboards.drain_question(mode, card.task.number, card.question)
    return keyboards.drain(mode, card.task)


async def _show(
    bot: Bot, backlog: Backlog, d: Drain, card: Card, chat_id: int, message_id: int | None
) -> None:
    """The card as a new message (`message_id` None) or in place of the last; a question's
    card takes replies as answers while it shows."""
    text, markup = card_text(d, card.task, backlog, card.question), _markup(d.mode, card)
    if message_id is None:
        message_id = (await bot.send_message(chat_id, text, reply_markup=markup)).message_id
    else:
        await edit_message(bot, chat_id, message_id, text, markup)
    if card.question is not None:
        await BotStore(backlog).remember_question_card(card.question.id, chat_id, message_id)


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
    d = Drain(mode=mode, queue=await _queue(mode, backlog))
    card = await _next_card(backlog, d)
    if card is None:
        await bot.send_message(chat_id, f"<b>{TITLES[mode]}</b>: nothing waiting. 🎉")
        await DRAIN.set(state, None)
        return
    await DRAIN.set(state, d)
    await _show(bot, backlog, d, card, chat_id, None)


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
    cq: CallbackQuery,
    mode: DrainMode,
    number: int,
    state: FSMContext,
    question: int | None = None,
) -> Drain | None:
    """The drain this tap belongs to, if its card (task `number`, or the `question`) is the
    one being shown."""
    d = await DRAIN.get(state)
    head = d.queue[0] if d is not None and d.queue else None
    if (
        d is None
        or d.mode != mode
        or head is None
        or (head.number != number if question is None else head.question != question)
    ):
        await cq.answer("That card is no longer current; start the mode again.", show_alert=True)
        return None
    return d


async def advance(
    cq: CallbackQuery, d: Drain, outcome: str, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    """Count the card's outcome, then show the next card (or the summary) in its place."""
    await cq.answer(f"{backlog.key(d.queue[0].number)} {OUTCOMES[outcome]}")
    if cq.message is None:
        d.queue.pop(0)
        d.count(outcome)
        await DRAIN.set(state, d if d.queue else None)
        return
    await move_on(cq.message.chat.id, cq.message.message_id, d, outcome, bot, backlog, state)


async def move_on(
    chat_id: int,
    message_id: int,
    d: Drain,
    outcome: str,
    bot: Bot,
    backlog: Backlog,
    state: FSMContext,
) -> None:
    """Count the current card's outcome and show the next card (or the summary) in the place
    of message `message_id`."""
    d.queue.pop(0)
    d.count(outcome)
    await BotStore(backlog).forget_question_card(chat_id, message_id)  # it shows another now
    card = await _next_card(backlog, d)
    await DRAIN.set(state, d if card else None)
    if card is None:
        await edit_message(bot, chat_id, message_id, _summary(d), None)
    else:
        await _show(bot, backlog, d, card, chat_id, message_id)


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
        chat_id, message_id = cq.message.chat.id, cq.message.message_id
        await BotStore(backlog).forget_question_card(chat_id, message_id)
        await edit_message(bot, chat_id, message_id, _summary(d, stopped=True), None)
