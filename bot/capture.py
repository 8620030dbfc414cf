"""Capture: any plain text becomes a draft preview with [Save → lane] [Edit] [Discard]."""

from __future__ import annotations

from aiogram import F
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot import keyboards, render
from bot.callbacks import CaptureCB, lane_of
from bot.cards import operator
from bot.routing import Routes
from core.backlog import Backlog
from core.errors import BacklogError
from core.spec import MAX_SPEC_BYTES, Spec, SpecError, parse

router = Routes(name="capture")


class Capture(StatesGroup):
    edit = State()


def _problems(err: SpecError) -> str:
    lines = "\n".join(f"• {render.esc(p, 300)}" for p in err.problems[:10])
    return render.fit(
        "I could not read that as a task:\n"
        f"{lines}\n\nThe first line is the title (at most 200 characters); fields like "
        "<code>repo: name</code>, <code>priority: P1</code> and sections <code>steps:</code>, "
        "<code>risks:</code> follow. /new walks you through it."
    )


async def _preview(message: Message, backlog: Backlog, text: str, capture_id: int | None) -> None:
    try:
        spec: Spec = parse(text)
        if spec.key or spec.status:
            raise SpecError(["a new task has no key or status line; remove them"])
    except SpecError as err:
        await message.answer(_problems(err))
        return
    if capture_id is None:
        capture_id = await backlog.pool.fetchval(
            "insert into bot_captures (chat_id, user_id, text) values ($1, $2, $3) returning id",
            message.chat.id,
            message.from_user.id,
            text,
        )
    else:
        await backlog.pool.execute(
            "update bot_captures set text = $2 where id = $1 and outcome is null", capture_id, text
        )
    await message.answer(
        render.preview(spec), reply_markup=keyboards.capture(capture_id, spec.lane)
    )


@router.message(Capture.edit, F.text)
async def on_capture_edit(message: Message, backlog: Backlog, state: FSMContext) -> None:
    data = await state.get_data()
    await state.set_state(None)
    capture_id = data.get("capture")
    still_open = isinstance(capture_id, int) and await backlog.pool.fetchval(
        "select outcome is null from bot_captures where id = $1 and user_id = $2",
        capture_id,
        message.from_user.id,
    )
    await _preview(message, backlog, message.text or "", capture_id if still_open else None)


@router.message(F.text & ~F.text.startswith("/"))
async def on_text(message: Message, backlog: Backlog) -> None:
    text = message.text or ""
    if len(text.encode()) > MAX_SPEC_BYTES:
        await message.answer(
            f"That is too long for a task spec (at most {MAX_SPEC_BYTES:,} bytes)."
        )
        return
    await _preview(message, backlog, text, None)


@router.callback_query(CaptureCB.filter())
async def on_capture(
    cq: CallbackQuery, callback_data: CaptureCB, backlog: Backlog, state: FSMContext
) -> None:
    cb = callback_data
    row = await backlog.pool.fetchrow(
        "select id, text, outcome, task_key from bot_captures where id = $1 and user_id = $2",
        cb.id,
        cq.from_user.id,
    )
    if row is None:
        await cq.answer("That preview no longer exists.", show_alert=True)
        return
    if row["outcome"] is not None:
        what = f"saved as {row['task_key']}" if row["outcome"] == "saved" else "discarded"
        await cq.answer(f"Already {what}.", show_alert=True)
        return
    if cb.a == "sv":
        lane = lane_of(cb.l)
        if lane is None:
            await cq.answer("That button is not valid.", show_alert=True)
            return
        # Claim the capture first, so a double tap can never file it twice.
        claimed = await backlog.pool.fetchval(
            "update bot_captures set outcome = 'saved', decided_at = now()"
            " where id = $1 and outcome is null returning id",
            cb.id,
        )
        if claimed is None:
            await cq.answer("Already saved.", show_alert=True)
            return
        try:
            task = await backlog.file(parse(row["text"]), operator(cq.from_user.id), lane=lane)
        except (SpecError, BacklogError) as err:
            await backlog.pool.execute(
                "update bot_captures set outcome = null, decided_at = null where id = $1", cb.id
            )
            await cq.answer(str(err)[:200], show_alert=True)
            return
        await backlog.pool.execute(
            "update bot_captures set task_key = $2 where id = $1", cb.id, task.key
        )
        await cq.answer(f"Saved as {task.key}")
        if cq.message is not None:
            await cq.message.edit_text(
                render.fit(
                    f"💾 Saved as <b>{render.esc(task.key)}</b> into {render.esc(lane.value)}\n\n"
                    + "\n".join(render.spec_body(task))
                ),
                reply_markup=None,
            )
    elif cb.a == "dc":
        await backlog.pool.execute(
            "update bot_captures set outcome = 'discarded', decided_at = now()"
            " where id = $1 and outcome is null",
            cb.id,
        )
        await cq.answer("Discarded")
        if cq.message is not None:
            await cq.message.edit_text("🗑 Discarded.", reply_markup=None)
    elif cb.a == "ed":
        await state.set_state(Capture.edit)
        await state.update_data(capture=cb.id)
        await cq.answer()
        if cq.message is not None:
            await cq.message.answer(
                render.fit(
                    "Send the corrected text (or /cancel):\n"
                    f"<pre>{render.esc(row['text'], 3500)}</pre>"
                )
            )
    else:
        await cq.answer("That button is not valid.", show_alert=True)
