"""Answering an agent's question from the phone: a tap on one of its options, or a reply to its
card (free text). The answer goes through core (history, notes, the waiting agent woken); the
question's cards are edited to show it by the notifier, from the outbox. On a drain mode's card
the walk goes on to the next card."""

from __future__ import annotations

from aiogram import Bot, F
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import drain, render
from bot.callbacks import QuestionCB
from bot.cards import operator
from bot.forms import DRAIN, Planning
from bot.routing import PLAIN, Routes
from core.backlog import Backlog
from core.botstore import BotStore
from core.errors import BacklogError, InvalidTransition
from core.questions import Questions
from core.spec import SpecError

router = Routes(name="questions")


@router.callback_query(QuestionCB.filter())
async def tap(
    cq: CallbackQuery, callback_data: QuestionCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    qid, mode = callback_data.question, callback_data.mode
    questions = Questions(backlog)
    q = await questions.get(qid)
    walk = None
    if mode is not None and (walk := await drain.current(cq, mode, q.number, state, qid)) is None:
        return
    if not 1 <= callback_data.option <= len(q.options):
        await cq.answer("That button is not valid (any more).", show_alert=True)
        return
    who = operator(cq.from_user.id)
    if cq.message is not None and walk is not None:  # the drain's card moves on: not a card now
        await BotStore(backlog).forget_question_card(cq.message.chat.id, cq.message.message_id)
    try:
        q = await questions.answer(q.ref, who, q.options[callback_data.option - 1])
        outcome = "answered"
    except InvalidTransition:
        if walk is None:
            raise
        outcome = "gone"  # answered meanwhile, or its task is finished: the walk goes on
    if walk is not None:
        await drain.advance(cq, walk, outcome, bot, backlog, state)
    else:
        await cq.answer(f"{q.ref} answered: {q.answer}"[:200])


# Outside a conversation (a planning session collects, but a reply there still answers); before
# the replies router, which would take the reply as an amendment of the task.
@router.message(StateFilter(None, Planning.collecting), F.reply_to_message, PLAIN)
async def reply(
    message: Message, bot: Bot, backlog: Backlog, store: BotStore, state: FSMContext
) -> None:
    target = message.reply_to_message
    if target is None or message.from_user is None:
        raise SkipHandler
    qid = await store.question_at(message.chat.id, target.message_id)
    if qid is None:
        raise SkipHandler  # not a question's card: an amendment, or a capture
    walk = await DRAIN.get(state)
    if walk is None or not walk.queue or walk.queue[0].question != qid:
        walk = None  # the drain's card moves on below: it is no card of the question then
    else:
        await store.forget_question_card(message.chat.id, target.message_id)
    outcome = "answered"
    try:
        q = await Questions(backlog).answer(
            f"Q{qid}", operator(message.from_user.id), message.text or ""
        )
        await message.answer(
            f"✅ {q.ref} ({render.esc(q.key)}) answered: <b>{render.esc(q.answer, 1000)}</b>"
        )
    except InvalidTransition as err:  # answered meanwhile, or its task is finished
        await message.answer(render.esc(str(err), 500))
        outcome = "gone"
    except (BacklogError, SpecError):  # the answer itself (bot.errors says so): keep the card
        if walk is not None:
            await store.remember_question_card(qid, message.chat.id, target.message_id)
        raise
    if walk is not None:
        await drain.move_on(message.chat.id, target.message_id, walk, outcome, bot, backlog, state)
