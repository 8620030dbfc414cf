"""Drain modes: /inbox (drafts), /triage, /decide walk one card at a time, then sum up."""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import cards, keyboards, render
from bot.callbacks import DigestCB, DrainCB, lane_of
from bot.routing import Routes
from core.backlog import Backlog
from core.errors import InvalidTransition, NotFound
from core.models import Lane, Status, Task
from core.tasks import TaskFilter

router = Routes(name="drain")

MODES = {
    "inbox": ("Inbox (drafts)", TaskFilter(status=[Status.DRAFT], limit=50)),
    "triage": ("Triage", TaskFilter(status=[Status.OPEN], lane=[Lane.TRIAGE], limit=50)),
    "decide": ("Decide", TaskFilter(status=[Status.OPEN], lane=[Lane.DECISION], limit=50)),
}
VERBS = {
    "ok": "approved",
    "mv": "moved",
    "rj": "rejected",
    "skip": "skipped",
    "gone": "changed elsewhere",
}


def _still_current(mode: str, task: Task) -> bool:
    if mode == "inbox":
        return task.status == Status.DRAFT
    lane = Lane.TRIAGE if mode == "triage" else Lane.DECISION
    return task.status == Status.OPEN and task.lane == lane


async def _next_card(backlog: Backlog, d: dict[str, Any]) -> Task | None:
    """The next task of the queue that is still in the mode's lane (others changed elsewhere)."""
    while d["q"]:
        try:
            task = await backlog.get(f"{backlog.prefix}-{d['q'][0]}")
        except NotFound:
            task = None
        if task is not None and _still_current(d["m"], task):
            return task
        d["q"].pop(0)
        d["s"]["gone"] = d["s"].get("gone", 0) + 1
    return None


def _card_text(mode: str, d: dict[str, Any], task: Task, backlog: Backlog) -> str:
    title, _ = MODES[mode]
    done = sum(d["s"].values())
    head = f"<b>{title}</b> · card {done + 1} of {done + len(d['q'])}\n\n"
    return render.fit(head + render.card(task, backlog.settings.tz))


def _summary(mode: str, d: dict[str, Any]) -> str:
    title, _ = MODES[mode]
    parts = [f"{VERBS[k]} {v}" for k, v in d["s"].items() if v]
    return f"<b>{title}</b> finished: " + (", ".join(parts) if parts else "nothing to do") + "."


async def start_drain(
    mode: str, chat_id: int, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    title, flt = MODES[mode]
    tasks = await backlog.list(flt)
    if mode == "inbox":
        tasks.sort(key=lambda t: t.created_at)
    d = {"m": mode, "q": [t.number for t in tasks], "s": {}}
    task = await _next_card(backlog, d)
    if task is None:
        await bot.send_message(chat_id, f"<b>{title}</b>: nothing waiting. 🎉")
        await state.update_data(drain=None)
        return
    await state.update_data(drain=d)
    await bot.send_message(
        chat_id, _card_text(mode, d, task, backlog), reply_markup=keyboards.drain(mode, task)
    )


@router.message(Command("inbox", "triage", "decide"))
async def on_command(message: Message, bot: Bot, backlog: Backlog, state: FSMContext) -> None:
    mode = (message.text or "").split()[0].lstrip("/").split("@")[0].lower()
    await start_drain(mode, message.chat.id, bot, backlog, state)


@router.callback_query(DigestCB.filter())
async def on_digest_button(
    cq: CallbackQuery, callback_data: DigestCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    if callback_data.m not in MODES:
        await cq.answer("That button is not valid.", show_alert=True)
        return
    await cq.answer()
    await start_drain(callback_data.m, cq.from_user.id, bot, backlog, state)


@router.callback_query(DrainCB.filter())
async def on_drain(
    cq: CallbackQuery, callback_data: DrainCB, bot: Bot, backlog: Backlog, state: FSMContext
) -> None:
    cb = callback_data
    d = (await state.get_data()).get("drain")
    if cb.m not in MODES or not d or d.get("m") != cb.m or not d.get("q") or d["q"][0] != cb.n:
        await cq.answer("That card is no longer current; start the mode again.", show_alert=True)
        return
    key = f"{backlog.prefix}-{cb.n}"
    actor = cards.operator(cq.from_user.id)
    outcome = cb.a
    try:
        if cb.a in ("ok", "mv"):
            lane = lane_of(cb.l)
            if lane is None:
                await cq.answer("That button is not valid.", show_alert=True)
                return
            if cb.a == "ok":
                await backlog.approve(key, actor, lane)
            else:
                await backlog.move_lane(key, lane, actor)
        elif cb.a == "rj":
            await backlog.reject(key, actor)
        elif cb.a == "stop":
            d["q"] = []
        elif cb.a != "skip":
            await cq.answer("That button is not valid.", show_alert=True)
            return
    except (InvalidTransition, NotFound):
        outcome = "gone"
    if cb.a != "stop":
        d["q"].pop(0)
        d["s"][outcome] = d["s"].get(outcome, 0) + 1
    await cq.answer(f"{key} {VERBS.get(outcome, 'done')}")
    if outcome in ("ok", "rj"):
        await cards.refresh(bot, backlog, cb.n, by=str(actor))
    task = await _next_card(backlog, d)
    await state.update_data(drain=d if task else None)
    if cq.message is None:
        return
    if task is None:
        await cards.safe_edit(bot, cq.message.chat.id, cq.message.message_id, _summary(cb.m, d))
    else:
        await cards.safe_edit(
            bot,
            cq.message.chat.id,
            cq.message.message_id,
            _card_text(cb.m, d, task, backlog),
            keyboards.drain(cb.m, task),
        )
