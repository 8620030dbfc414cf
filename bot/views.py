"""Views: /task KEY (with its open questions, ready to answer, and its photos), /find TEXT, /lanes, /agents, /digest, /help (and
the fallbacks)."""

from __future__ import annotations

import logging

from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import BotCommand, CallbackQuery, InputMediaPhoto, Message

from bot import keyboards, render
from bot.cards import card_kind
from bot.routing import Routes
from core.agents import Agents
from core.backlog import Backlog
from core.botstore import BotStore
from core.digest import Digests
from core.questions import Questions
from core.tasks import TaskFilter

log = logging.getLogger("ob.bot.views")
router = Routes(name="views")
FIND_LIMIT = 25
fallback = Routes(name="fallback")

COMMANDS = [
    BotCommand(command="inbox", description="walk the agent drafts awaiting approval"),
    BotCommand(command="triage", description="walk the triage lane"),
    BotCommand(command="decide", description="agents' questions and the decision lane"),
    BotCommand(command="new", description="file a task step by step"),
    BotCommand(command="plan", description="think out loud; /done turns it into drafts"),
    BotCommand(command="task", description="a task card: /task OB-12"),
    BotCommand(command="find", description="search tasks: /find text"),
    BotCommand(command="lanes", description="open work per lane"),
    BotCommand(command="agents", description="who holds what, lease time left"),
    BotCommand(command="digest", description="the lane digest now"),
    BotCommand(command="stats", description="lanes and work done, as a chart"),
    BotCommand(command="cancel", description="stop the current conversation"),
    BotCommand(command="help", description="what this bot does"),
]

HELP = (
    "<b>Operator Backlog</b>\n\n"
    "Send any text to capture a task: the first line is the title, then fields "
    "(<code>repo:</code>, <code>priority:</code>, <code>trigger:</code>) and sections "
    "(<code>steps:</code>, <code>risks:</code>). Messages sent in a row join one preview; a "
    "list, <code>---</code> or <code>## headings</code> make several ideas. Forwards, photos "
    "with a caption and TODO.md documents work too. Reply to a card with "
    "<code>step: …</code>, <code>P0</code>, <code>lane decision</code> or a note to amend it. "
    "An agent's question comes as a card: tap an option, or reply to it with your answer."
    "\n\n" + "\n".join(f"/{c.command} — {render.esc(c.description)}" for c in COMMANDS)
)


@router.message(CommandStart())
@router.message(Command("help"))
async def help_(message: Message) -> None:
    await message.answer(HELP)


@router.message(Command("task"))
async def task_view(
    message: Message, command: CommandObject, backlog: Backlog, store: BotStore
) -> None:
    key = (command.args or "").strip()
    if not key:
        await message.answer("Usage: /task OB-12")
        return
    task = await backlog.get(key[:40])
    history = await backlog.history(task.key)
    questions = await Questions(backlog).open_of(task.key)
    tz = backlog.settings.tz
    sent = await message.answer(
        render.card(task, tz, history=history, questions=questions),
        reply_markup=keyboards.task_actions(task),
    )
    await store.remember_card(task.number, sent.chat.id, sent.message_id, card_kind(task))
    for q in questions:  # each with its buttons: a tap or a reply answers it here
        head = "⚠️" if q.left_open_at is not None else "❓"
        asked = await message.answer(
            render.question(q, task.title, tz, head=head),
            reply_markup=keyboards.question(q.id, q.options),
        )
        await store.remember_question_card(q.id, asked.chat.id, asked.message_id)
    photos = await store.captures.task_photos(task.number)
    if len(photos) == 1:
        await message.answer_photo(photos[0], caption=render.esc(task.key))
    elif photos:
        await message.answer_media_group([InputMediaPhoto(media=p) for p in photos[:10]])


@router.message(Command("find"))
async def find(message: Message, command: CommandObject, backlog: Backlog) -> None:
    text = (command.args or "").strip()[:200]
    if not text:
        await message.answer("Usage: /find words")
        return
    flt = TaskFilter(text=text, include_closed=True, limit=FIND_LIMIT)
    tasks = await backlog.list(flt)
    if not tasks:
        await message.answer(f"Nothing matches “{render.esc(text, 100)}”.")
        return
    total = len(tasks) if len(tasks) < FIND_LIMIT else await backlog.count(flt)
    found = f"{total} match" + ("" if total == 1 else "es")
    if total > len(tasks):
        found = f"first {len(tasks)} of {total} matches"
    lines = [f"<b>{found}</b> for “{render.esc(text, 100)}”"]
    for t in tasks:
        lane = t.lane.short if t.lane else "-"
        lines.append(
            f"<code>{render.esc(t.key)}</code> {render.esc(t.display_status)} · {lane} · "
            f"{render.esc(t.title, 100)}"
        )
    if total > len(tasks):
        lines.append("<i>Narrow it with more words, a repo name, or a key: /find OB-12</i>")
    await message.answer(render.fit("\n".join(lines)))


@router.message(Command("lanes"))
async def lanes(message: Message, backlog: Backlog) -> None:
    lines = ["<b>Lanes</b>", *render.lane_lines(await Digests(backlog).lanes())]
    await message.answer("\n".join(lines), reply_markup=keyboards.digest())


@router.message(Command("agents"))
async def agents(message: Message, backlog: Backlog) -> None:
    found = await Agents(backlog).all()
    if not found:
        await message.answer("No agents yet (`ob agent add NAME`).")
        return
    lines = ["<b>Agents</b>"]
    for a in found:
        status = " (revoked)" if a.revoked_at else ""
        lines.append(f"<b>{render.esc(a.name)}</b>{status}: " + ("idle" if not a.holding else ""))
        for h in a.holding[:20]:
            lines.append(
                f"  {render.esc(h.key)} {render.esc(h.title, 80)} · {render.left(h.lease_expires_at)}"
            )
    await message.answer(render.fit("\n".join(lines)))


@router.message(Command("digest"))
async def digest_now(message: Message, backlog: Backlog) -> None:
    d = await Digests(backlog).build()
    await message.answer(render.digest(d, backlog.settings.tz), reply_markup=keyboards.digest())


@fallback.message()
async def unknown(message: Message) -> None:
    await message.answer("I did not understand that. /help lists what I can do.")


@fallback.callback_query()
async def unknown_button(cq: CallbackQuery) -> None:
    log.warning("unrecognised callback data %r from %s", (cq.data or "")[:80], cq.from_user.id)
    await cq.answer("That button is not valid (any more).", show_alert=True)
