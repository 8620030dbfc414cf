"""Capture: any plain text becomes a draft preview with [Save → lane] [Edit] [Discard]."""

from __future__ import annotations

from aiogram import Bot, F
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards, render
from bot.callbacks import CaptureAction, CaptureCB
from bot.cards import operator
from bot.forms import CAPTURE_PROMPT, CapturePrompt, Prompt
from bot.routing import Routes
from core.backlog import Backlog
from core.botstore import BotStore, CaptureDecided
from core.errors import BacklogError
from core.settings import Settings
from core.spec import MAX_SPEC_BYTES, SpecError, parse

router = Routes(name="capture")
PLAIN = F.text & ~F.text.startswith("/")


def _problems(err: SpecError) -> str:
    lines = "\n".join(f"• {render.esc(p, 300)}" for p in err.problems[:10])
    return render.fit(
        "I could not read that as a task:\n"
        f"{lines}\n\nThe first line is the title (at most 200 characters); fields like "
        "<code>repo: name</code>, <code>priority: P1</code> and sections <code>steps:</code>, "
        "<code>risks:</code> follow. /new walks you through it."
    )


async def _preview(
    message: Message,
    store: BotStore,
    text: str,
    capture_id: int | None,
    expired_prompt: str | None = None,
) -> None:
    """Show the text as a draft preview (a new capture, or new text for `capture_id`); when a
    prompt expired before this message, say so first."""
    if message.from_user is None:
        return
    try:
        spec = parse(text)
        Backlog.check_new(spec)
    except (SpecError, BacklogError) as err:
        await message.answer(
            _problems(err) if isinstance(err, SpecError) else render.esc(str(err), 500)
        )
        return
    if capture_id is None or not await store.replace_capture_text(
        capture_id, message.from_user.id, text
    ):
        capture_id = await store.new_capture(message.chat.id, message.from_user.id, text)
    note = (
        f"⌛ I stopped waiting for {render.esc(expired_prompt)}, so I read this as a new idea.\n\n"
        if expired_prompt
        else ""
    )
    await message.answer(
        render.fit(note + render.preview(spec)),
        reply_markup=keyboards.capture(capture_id, spec.lane),
    )


@router.message(Prompt.edit_capture, PLAIN)
async def got_capture_edit(message: Message, store: BotStore, state: FSMContext) -> None:
    prompt = await CAPTURE_PROMPT.get(state)
    await state.clear()
    await _preview(message, store, message.text or "", prompt.capture if prompt else None)


@router.message(PLAIN)
async def got_text(message: Message, store: BotStore, expired_prompt: str | None = None) -> None:
    text = message.text or ""
    if len(text.encode()) > MAX_SPEC_BYTES:
        await message.answer(
            f"That is too long for a task spec (at most {MAX_SPEC_BYTES:,} bytes)."
        )
        return
    await _preview(message, store, text, None, expired_prompt)


@router.callback_query(CaptureCB.filter((F.action == CaptureAction.SAVE) & F.lane))
async def save(cq: CallbackQuery, callback_data: CaptureCB, bot: Bot, store: BotStore) -> None:
    assert callback_data.lane is not None
    try:
        task = await store.save_capture(
            callback_data.capture, cq.from_user.id, callback_data.lane, operator(cq.from_user.id)
        )
    except (SpecError, BacklogError) as err:
        await cq.answer(str(err)[:200], show_alert=True)
        return
    await cq.answer(f"Saved as {task.key}")
    if cq.message is not None:
        await bot.edit_message_text(
            chat_id=cq.message.chat.id,
            message_id=cq.message.message_id,
            text=render.fit(
                f"💾 Saved as <b>{render.esc(task.key)}</b> into "
                f"{render.esc(callback_data.lane.short)}\n\n" + "\n".join(render.spec_body(task))
            ),
            reply_markup=None,
        )


@router.callback_query(CaptureCB.filter(F.action == CaptureAction.DISCARD))
async def discard(cq: CallbackQuery, callback_data: CaptureCB, bot: Bot, store: BotStore) -> None:
    try:
        await store.discard_capture(callback_data.capture, cq.from_user.id)
    except BacklogError as err:
        await cq.answer(str(err)[:200], show_alert=True)
        return
    await cq.answer("Discarded")
    if cq.message is not None:
        await bot.edit_message_text(
            chat_id=cq.message.chat.id,
            message_id=cq.message.message_id,
            text="🗑 Discarded.",
            reply_markup=None,
        )


@router.callback_query(CaptureCB.filter(F.action == CaptureAction.EDIT))
async def edit(
    cq: CallbackQuery,
    callback_data: CaptureCB,
    bot: Bot,
    store: BotStore,
    state: FSMContext,
    settings: Settings,
) -> None:
    capture = await store.capture(callback_data.capture, cq.from_user.id)
    if capture is None:
        await cq.answer("That preview no longer exists.", show_alert=True)
        return
    if capture.outcome is not None:
        await cq.answer(str(CaptureDecided(capture)), show_alert=True)
        return
    await state.set_state(Prompt.edit_capture)
    await CAPTURE_PROMPT.set(state, CapturePrompt(capture=capture.id))
    await cq.answer()
    if cq.message is not None:
        await bot.send_message(
            cq.message.chat.id,
            render.fit(
                f"Send the corrected text (or /cancel; {render.waits(settings.prompt_ttl)}):\n"
                f"<pre>{render.esc(capture.text, 3500)}</pre>"
            ),
        )
