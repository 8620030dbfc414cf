"""/new: a guided conversation (title, repo, trigger, steps, risks, lane, confirm) whose state
lives in PostgreSQL (bot.storage), so it survives a restart. /cancel works anywhere."""

from __future__ import annotations

from aiogram import F
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import CallbackQuery, Message

from bot import keyboards, render
from bot.callbacks import NewAction, NewCB
from bot.cards import operator
from bot.forms import NEW_TASK, NewFlow, NewTask
from bot.routing import PLAIN, Routes
from core.backlog import Backlog
from core.git.repos import Repos
from core.settings import Settings
from core.spec import MAX_ITEM, MAX_RISKS, MAX_STEPS, MAX_TITLE, SpecError, make_spec

router = Routes(name="newtask")
# Answers in a conversation are plain text; other commands keep working during it.
STEPS_PROMPT = "Now the <b>steps</b>, one per message. Tap Done when finished."


def _summary(d: NewTask) -> str:
    lines = [f"<b>{render.esc(d.title, 200)}</b>"]
    lines.append(f"repo: {render.esc(d.repo or '-')}")
    lines.append(f"trigger: {render.esc(d.trigger or '-', 300)}")
    for name, items in (("steps", d.steps), ("risks", d.risks)):
        lines.append(f"{name}: {len(items)}")
        lines += [f"  {i}. {render.esc(s, 200)}" for i, s in enumerate(items[:15], 1)]
    if d.lane:
        lines.append(f"lane: {render.esc(d.lane.short)}")
    return render.fit("\n".join(lines))


async def _form(state: FSMContext) -> NewTask:
    return await NEW_TASK.get(state) or NewTask()


@router.message(Command("cancel"))
async def cancel(message: Message, state: FSMContext) -> None:
    current = await state.get_state()
    await state.clear()
    await message.answer("Cancelled." if current else "Nothing to cancel.")


@router.message(Command("new"))
async def start(message: Message, state: FSMContext, settings: Settings) -> None:
    await state.set_state(NewFlow.title)
    await NEW_TASK.set(state, NewTask())
    await message.answer(
        "New task. What is the <b>title</b>? (one line; /cancel to stop; for each answer "
        f"{render.waits(settings.prompt_ttl)})"
    )


@router.message(NewFlow.title, PLAIN)
async def got_title(message: Message, state: FSMContext, backlog: Backlog) -> None:
    title = (message.text or "").strip()
    if not title or len(title) > MAX_TITLE or "\n" in title:
        await message.answer(f"A title is one line of at most {MAX_TITLE} characters. Try again.")
        return
    d = await _form(state)
    d.title = title
    d.offered_repos = await Repos(backlog).known_names()
    await NEW_TASK.set(state, d)
    await state.set_state(NewFlow.repo)
    await message.answer(
        "Which <b>repo</b>? Tap one, or type a name.",
        reply_markup=keyboards.repos(d.offered_repos),
    )


async def _ask_trigger(message: Message, state: FSMContext) -> None:
    await state.set_state(NewFlow.trigger)
    await message.answer(
        "What is the <b>trigger</b> (why it becomes urgent)?", reply_markup=keyboards.skip()
    )


async def _ask_steps(message: Message, state: FSMContext) -> None:
    await state.set_state(NewFlow.steps)
    await message.answer(STEPS_PROMPT, reply_markup=keyboards.done())


@router.message(NewFlow.repo, PLAIN)
async def got_repo(message: Message, state: FSMContext) -> None:
    name = (message.text or "").strip()
    try:
        make_spec(title="x", repo=name)
    except SpecError as err:
        await message.answer(render.esc(err.problems[0], 300) + "\nTry again, or tap a button.")
        return
    d = await _form(state)
    d.repo = name or None
    await NEW_TASK.set(state, d)
    await _ask_trigger(message, state)


@router.message(NewFlow.trigger, PLAIN)
async def got_trigger(message: Message, state: FSMContext) -> None:
    d = await _form(state)
    d.trigger = (message.text or "").strip()[:500] or None
    await NEW_TASK.set(state, d)
    await _ask_steps(message, state)


@router.message(NewFlow.steps, PLAIN | (F.text == "/done"))
@router.message(NewFlow.risks, PLAIN | (F.text == "/done"))
async def got_item(message: Message, state: FSMContext) -> None:
    in_steps = await state.get_state() == NewFlow.steps.state
    name, limit = ("steps", MAX_STEPS) if in_steps else ("risks", MAX_RISKS)
    text = " ".join((message.text or "").split())
    if text.lower() in ("/done", "done"):
        await _after_items(message, state, in_steps)
        return
    d = await _form(state)
    items = d.steps if in_steps else d.risks
    if len(items) >= limit:
        await message.answer(f"That is the most {name} a task can have ({limit}); tap Done.")
        return
    if len(text) > MAX_ITEM:
        await message.answer(f"One item is at most {MAX_ITEM} characters; send it shorter.")
        return
    items.append(text)
    await NEW_TASK.set(state, d)
    await message.answer(
        f"{name[:-1].capitalize()} {len(items)} noted. Next, or Done.",
        reply_markup=keyboards.done(),
    )


async def _after_items(message: Message, state: FSMContext, after_steps: bool) -> None:
    if after_steps:
        await state.set_state(NewFlow.risks)
        await message.answer(
            "Any <b>risks</b>? One per message; Done when finished.", reply_markup=keyboards.done()
        )
    else:
        await state.set_state(NewFlow.lane)
        await message.answer("Which <b>lane</b>?", reply_markup=keyboards.new_lanes())


async def _in_conversation(cq: CallbackQuery, state: FSMContext, *steps: State) -> Message | None:
    """The chat message to answer in, if the conversation is at one of `steps`."""
    current = await state.get_state()
    if current is None or not current.startswith(NewFlow.__name__) or cq.message is None:
        await cq.answer("That /new conversation is over; /new starts another.", show_alert=True)
        return None
    if current not in {step.state for step in steps}:
        await cq.answer("That button belongs to another step.", show_alert=True)
        return None
    assert isinstance(cq.message, Message)
    return cq.message


@router.callback_query(NewCB.filter(F.action == NewAction.REPO))
async def tap_repo(cq: CallbackQuery, callback_data: NewCB, state: FSMContext) -> None:
    if (message := await _in_conversation(cq, state, NewFlow.repo)) is None:
        return
    d = await _form(state)
    if callback_data.index != -1 and not 0 <= callback_data.index < len(d.offered_repos):
        await cq.answer("That button is not valid.", show_alert=True)
        return
    d.repo = None if callback_data.index == -1 else d.offered_repos[callback_data.index]
    await NEW_TASK.set(state, d)
    await cq.answer(d.repo or "no repo")
    await _ask_trigger(message, state)


@router.callback_query(NewCB.filter(F.action == NewAction.SKIP))
async def tap_skip(cq: CallbackQuery, state: FSMContext) -> None:
    if (message := await _in_conversation(cq, state, NewFlow.trigger)) is None:
        return
    d = await _form(state)
    d.trigger = None
    await NEW_TASK.set(state, d)
    await cq.answer()
    await _ask_steps(message, state)


@router.callback_query(NewCB.filter(F.action == NewAction.DONE))
async def tap_done(cq: CallbackQuery, state: FSMContext) -> None:
    if (message := await _in_conversation(cq, state, NewFlow.steps, NewFlow.risks)) is None:
        return
    await cq.answer()
    await _after_items(message, state, await state.get_state() == NewFlow.steps.state)


@router.callback_query(NewCB.filter((F.action == NewAction.LANE) & F.lane))
async def tap_lane(cq: CallbackQuery, callback_data: NewCB, state: FSMContext) -> None:
    if (message := await _in_conversation(cq, state, NewFlow.lane)) is None:
        return
    d = await _form(state)
    d.lane = callback_data.lane
    await NEW_TASK.set(state, d)
    await state.set_state(NewFlow.confirm)
    await cq.answer()
    await message.answer("Save this task?\n\n" + _summary(d), reply_markup=keyboards.confirm())


@router.callback_query(NewCB.filter(F.action == NewAction.SAVE))
async def tap_save(cq: CallbackQuery, state: FSMContext, backlog: Backlog) -> None:
    if (message := await _in_conversation(cq, state, NewFlow.confirm)) is None:
        return
    d = await _form(state)
    spec = make_spec(title=d.title, repo=d.repo, trigger=d.trigger, steps=d.steps, risks=d.risks)
    task = await backlog.file(spec, operator(cq.from_user.id), lane=d.lane)
    await state.clear()
    await cq.answer(f"Saved as {task.key}")
    lane = task.lane.short if task.lane else "-"
    await message.answer(f"💾 Saved <b>{render.esc(task.key)}</b> into {render.esc(lane)}.")


@router.callback_query(NewCB.filter(F.action == NewAction.CANCEL))
async def tap_cancel(cq: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await cq.answer("Cancelled")
    if isinstance(cq.message, Message):
        await cq.message.answer("Cancelled.")


@router.message(StateFilter(NewFlow), ~F.text)
async def not_text(message: Message) -> None:
    await message.answer("Please answer with text, or /cancel.")
