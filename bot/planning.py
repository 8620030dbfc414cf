"""/plan … /done: a think-out-loud session. Every message (typed, forwarded, a photo's caption)
is collected into one capture, counted in place on the session's message; /done reads it all
as ideas (several when separated by `---`, `## headings`, lists or "ideas:" blocks) and shows
the preview. /cancel drops the session."""

from __future__ import annotations

from aiogram import Bot, F
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from bot import previews
from bot.cards import edit_message
from bot.errors import problems
from bot.forms import PLAN, Planning, PlanSession
from bot.routing import PLAIN, Routes
from core.botstore import BotStore
from core.errors import BacklogError
from core.settings import Settings
from core.spec import SpecError

router = Routes(name="planning")


def _counting(parts: int) -> str:
    said = f"{parts} message{'s' if parts != 1 else ''} so far" if parts else "listening"
    return (
        f"🧠 <b>Planning</b> · {said}\n"
        "Think out loud: send as many messages as you like (forwards and photos too); separate "
        "ideas with <code>---</code>, <code>## headings</code> or a list. /done turns them into "
        "draft previews; /cancel drops them."
    )


@router.message(Command("plan"))
async def start(message: Message, store: BotStore, state: FSMContext) -> None:
    if message.from_user is None:
        return
    session = await PLAN.get(state)
    if session is not None and await state.get_state() == Planning.collecting.state:
        await message.answer("You are planning already; /done when finished, /cancel to drop it.")
        return
    capture = await store.captures.start_session(message.chat.id, message.from_user.id)
    sent = await message.answer(_counting(0))
    await state.set_state(Planning.collecting)
    await PLAN.set(state, PlanSession(capture=capture, status_message=sent.message_id))


@router.message(Planning.collecting, PLAIN | F.photo)
async def collect(
    message: Message, bot: Bot, store: BotStore, settings: Settings, state: FSMContext
) -> None:
    session = await PLAN.get(state)
    if session is None or message.from_user is None:
        await state.clear()
        return
    photos = (message.photo[-1].file_id,) if message.photo else ()
    parts = await store.captures.collect(
        session.capture,
        message.from_user.id,
        message.text or message.caption or "",
        origin=previews.origin_of(message, settings.tz),
        photos=photos,
    )
    if session.status_message is not None:
        await edit_message(bot, message.chat.id, session.status_message, _counting(parts), None)


@router.message(Planning.collecting, Command("done"))
async def done(
    message: Message, bot: Bot, store: BotStore, state: FSMContext, settings: Settings
) -> None:
    session = await PLAN.get(state)
    await state.clear()
    if session is None or message.from_user is None:
        return
    try:
        captured = await store.captures.read(session.capture, message.from_user.id)
    except (SpecError, BacklogError) as err:
        capture = await store.captures.get(session.capture, message.from_user.id)
        if capture is None or not capture.text.strip():
            await message.answer("Nothing was collected; /plan starts again.")
            return
        # what was said stays: the operator corrects it as a whole, like a preview's [Edit]
        head = problems(err) + "\n\n"
        await message.answer(
            await previews.ask_correction(state, capture, settings.prompt_ttl, head)
        )
        return
    ideas = len(captured.draft.specs)
    if session.status_message is not None:
        await edit_message(
            bot,
            message.chat.id,
            session.status_message,
            f"🧠 <b>Planning</b> · {captured.capture.parts} messages → "
            f"{ideas} idea{'s' if ideas != 1 else ''} (below)",
            None,
        )
    await previews.show(bot, message.chat.id, store.captures, captured)


@router.message(Command("done"))
async def done_without_session(message: Message) -> None:
    await message.answer("No planning session is open; /plan starts one.")
