"""/new: a guided conversation (title, repo, trigger, steps, risks, lane, confirm) whose state
lives in PostgreSQL (PostgresStorage), so it survives a restart. /cancel works anywhere."""

from __future__ import annotations

from typing import Any

from aiogram import F
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot import keyboards, render
from bot.callbacks import NewCB, lane_of
from bot.cards import operator
from bot.routing import Routes
from core.backlog import Backlog
from core.errors import BacklogError
from core.spec import MAX_ITEM, MAX_RISKS, MAX_STEPS, MAX_TITLE, SpecError, make_spec

router = Routes(name="newtask")
# Answers in a conversation are plain text; other commands keep working during it.
PLAIN = F.text & ~F.text.startswith("/")


class New(StatesGroup):
    title = State()
    repo = State()
    trigger = State()
    steps = State()
    risks = State()
    lane = State()
    confirm = State()


async def known_repos(backlog: Backlog) -> list[str]:
    rows = await backlog.pool.fetch(
        "select name from (select name from repos union"
        " select distinct repo from tasks where repo is not null) r order by name limit 24"
    )
    return [r["name"] for r in rows]


def _summary(d: dict[str, Any]) -> str:
    lines = [f"<b>{render.esc(d.get('title'), 200)}</b>"]
    lines.append(f"repo: {render.esc(d.get('repo') or '-')}")
    lines.append(f"trigger: {render.esc(d.get('trigger') or '-', 300)}")
    for name in ("steps", "risks"):
        items = d.get(name) or []
        lines.append(f"{name}: {len(items)}")
        lines += [f"  {i}. {render.esc(s, 200)}" for i, s in enumerate(items[:15], 1)]
    if d.get("lane"):
        lines.append(f"lane: {render.esc(d['lane'])}")
    return render.fit("\n".join(lines))


@router.message(Command("cancel"))
async def cancel(message: Message, state: FSMContext) -> None:
    current = await state.get_state()
    await state.set_state(None)
    await state.update_data(new=None, reject=None, edit=None, capture=None)
    await message.answer("Cancelled." if current else "Nothing to cancel.")


@router.message(Command("new"))
async def start(message: Message, state: FSMContext) -> None:
    await state.set_state(New.title)
    await state.update_data(new={"steps": [], "risks": []})
    await message.answer("New task. What is the <b>title</b>? (one line; /cancel to stop)")


async def _data(state: FSMContext) -> dict[str, Any]:
    return dict((await state.get_data()).get("new") or {"steps": [], "risks": []})


@router.message(New.title, PLAIN)
async def got_title(message: Message, state: FSMContext, backlog: Backlog) -> None:
    title = (message.text or "").strip()
    if title.startswith("/"):
        await message.answer("Send the title as plain text, or /cancel.")
        return
    if not title or len(title) > MAX_TITLE or "\n" in title:
        await message.answer(f"A title is one line of at most {MAX_TITLE} characters. Try again.")
        return
    d = await _data(state)
    d["title"] = title
    d["repos"] = await known_repos(backlog)
    await state.update_data(new=d)
    await state.set_state(New.repo)
    await message.answer(
        "Which <b>repo</b>? Tap one, or type a name.", reply_markup=keyboards.repos(d["repos"])
    )


async def _ask_trigger(message: Message, state: FSMContext) -> None:
    await state.set_state(New.trigger)
    await message.answer(
        "What is the <b>trigger</b> (why it becomes urgent)?", reply_markup=keyboards.skip()
    )


@router.message(New.repo, PLAIN)
async def got_repo(message: Message, state: FSMContext) -> None:
    name = (message.text or "").strip()
    try:
        make_spec(title="x", repo=name)
    except SpecError as err:
        await message.answer(render.esc(err.problems[0], 300) + "\nTry again, or tap a button.")
        return
    d = await _data(state)
    d["repo"] = name or None
    await state.update_data(new=d)
    await _ask_trigger(message, state)


@router.message(New.trigger, PLAIN)
async def got_trigger(message: Message, state: FSMContext) -> None:
    d = await _data(state)
    d["trigger"] = (message.text or "").strip()[:500] or None
    await state.update_data(new=d)
    await state.set_state(New.steps)
    await message.answer(
        "Now the <b>steps</b>, one per message. Tap Done when finished.",
        reply_markup=keyboards.done(),
    )


@router.message(New.steps, PLAIN | (F.text == "/done"))
@router.message(New.risks, PLAIN | (F.text == "/done"))
async def got_item(message: Message, state: FSMContext) -> None:
    current = await state.get_state()
    name = "steps" if current == New.steps.state else "risks"
    limit = MAX_STEPS if name == "steps" else MAX_RISKS
    text = " ".join((message.text or "").split())
    if text.lower() in ("/done", "done"):
        await _next_after_items(message, state, name)
        return
    d = await _data(state)
    if len(d.get(name, [])) >= limit:
        await message.answer(f"That is the most {name} a task can have ({limit}); tap Done.")
        return
    if len(text) > MAX_ITEM:
        await message.answer(f"One item is at most {MAX_ITEM} characters; send it shorter.")
        return
    d.setdefault(name, []).append(text)
    await state.update_data(new=d)
    await message.answer(
        f"{name[:-1].capitalize()} {len(d[name])} noted. Next, or Done.",
        reply_markup=keyboards.done(),
    )


async def _next_after_items(message: Message, state: FSMContext, name: str) -> None:
    if name == "steps":
        await state.set_state(New.risks)
        await message.answer(
            "Any <b>risks</b>? One per message; Done when finished.", reply_markup=keyboards.done()
        )
    else:
        await state.set_state(New.lane)
        await message.answer("Which <b>lane</b>?", reply_markup=keyboards.new_lanes())


@router.callback_query(NewCB.filter())
async def on_button(
    cq: CallbackQuery, callback_data: NewCB, state: FSMContext, backlog: Backlog
) -> None:
    cb = callback_data
    current = await state.get_state()
    message = cq.message
    if current is None or not current.startswith("New:") or message is None:
        await cq.answer("That conversation is over; /new starts another.", show_alert=True)
        return
    d = await _data(state)
    if cb.a == "repo" and current == New.repo.state:
        repos = d.get("repos") or []
        if cb.i != -1 and not 0 <= cb.i < len(repos):
            await cq.answer("That button is not valid.", show_alert=True)
            return
        d["repo"] = None if cb.i == -1 else repos[cb.i]
        await state.update_data(new=d)
        await cq.answer(d["repo"] or "no repo")
        await _ask_trigger(message, state)
    elif cb.a == "skip" and current == New.trigger.state:
        d["trigger"] = None
        await state.update_data(new=d)
        await state.set_state(New.steps)
        await cq.answer()
        await message.answer(
            "Now the <b>steps</b>, one per message. Tap Done when finished.",
            reply_markup=keyboards.done(),
        )
    elif cb.a == "done" and current in (New.steps.state, New.risks.state):
        await cq.answer()
        await _next_after_items(message, state, "steps" if current == New.steps.state else "risks")
    elif cb.a == "lane" and current == New.lane.state and lane_of(cb.l):
        d["lane"] = lane_of(cb.l).value
        await state.update_data(new=d)
        await state.set_state(New.confirm)
        await cq.answer()
        await message.answer("Save this task?\n\n" + _summary(d), reply_markup=keyboards.confirm())
    elif cb.a == "save" and current == New.confirm.state:
        try:
            spec = make_spec(
                title=d.get("title"),
                repo=d.get("repo"),
                trigger=d.get("trigger"),
                steps=d.get("steps") or [],
                risks=d.get("risks") or [],
            )
            task = await backlog.file(spec, operator(cq.from_user.id), lane=lane_of_value(d))
        except (SpecError, BacklogError) as err:
            await cq.answer(str(err)[:200], show_alert=True)
            return
        await state.set_state(None)
        await state.update_data(new=None)
        await cq.answer(f"Saved as {task.key}")
        await message.answer(
            f"💾 Saved <b>{render.esc(task.key)}</b> into {render.esc(task.lane.value if task.lane else '-')}."
        )
    elif cb.a == "cancel":
        await state.set_state(None)
        await state.update_data(new=None)
        await cq.answer("Cancelled")
        await message.answer("Cancelled.")
    else:
        await cq.answer("That button belongs to another step.", show_alert=True)


def lane_of_value(d: dict[str, Any]):
    from core.models import parse_lane

    return parse_lane(d["lane"]) if d.get("lane") else None


@router.message(StateFilter(New), ~F.text)
async def not_text(message: Message) -> None:
    await message.answer("Please answer with text, or /cancel.")
