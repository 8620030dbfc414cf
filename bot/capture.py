"""Capture: any plain text (typed or forwarded) becomes a draft preview with [Save → lane]
[Edit] [Discard]. Messages sent in a row join the open preview, which updates in place; a text
holding several ideas becomes one summary with [Save all → lane] [One by one] [Discard]."""

from __future__ import annotations

from aiogram import Bot, F
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import previews, render
from bot.callbacks import CaptureAction, CaptureCB
from bot.cards import edit_message, operator
from bot.forms import CAPTURE_PROMPT, Prompt
from bot.routing import PLAIN, Routes
from core.botstore import BotStore
from core.captures import Capture, CaptureDecided
from core.settings import Settings
from core.spec import MAX_SPEC_BYTES

router = Routes(name="capture")


async def capture_message(
    message: Message,
    bot: Bot,
    store: BotStore,
    settings: Settings,
    text: str,
    photos: tuple[str, ...] = (),
) -> None:
    """A message for the chat's preview: it joins the open one, or starts a new one."""
    if message.from_user is None:
        return
    captured = await store.captures.add_text(
        message.chat.id,
        message.from_user.id,
        text,
        window=settings.capture_window,
        origin=previews.origin_of(message, settings.tz),
        photos=photos,
    )
    await previews.show(bot, message.chat.id, store.captures, captured, in_place=captured.joined)


@router.message(Prompt.edit_capture, PLAIN)
async def got_capture_edit(message: Message, bot: Bot, store: BotStore, state: FSMContext) -> None:
    prompt = await CAPTURE_PROMPT.get(state)
    await state.clear()
    if prompt is None or message.from_user is None:
        return
    captured = await store.captures.replace_text(
        prompt.capture, message.from_user.id, message.text or ""
    )
    await previews.show(bot, message.chat.id, store.captures, captured)


@router.message(PLAIN)
async def got_text(
    message: Message,
    bot: Bot,
    store: BotStore,
    settings: Settings,
    expired_prompt: str | None = None,
) -> None:
    text = message.text or ""
    if len(text.encode()) > MAX_SPEC_BYTES:
        await message.answer(
            f"That is too long for a task spec (at most {MAX_SPEC_BYTES:,} bytes)."
        )
        return
    if expired_prompt:  # the prompt's answer came too late: say so, then capture it
        await message.answer(
            f"⌛ I stopped waiting for {render.esc(expired_prompt)}, so I read this as a new idea."
        )
    await capture_message(message, bot, store, settings, text)


async def _after(cq: CallbackQuery, bot: Bot, store: BotStore, capture: Capture, text: str) -> None:
    """The decided preview says what happened; an idea of a walk brings the next one."""
    if cq.message is None:
        return
    await edit_message(bot, cq.message.chat.id, cq.message.message_id, text, None)
    if capture.parent_id is not None:
        parent = await store.captures.get(capture.parent_id, capture.user_id)
        if parent is not None:
            await previews.next_idea(bot, cq.message.chat.id, store.captures, parent)


@router.callback_query(CaptureCB.filter((F.action == CaptureAction.SAVE) & F.lane))
async def save(cq: CallbackQuery, callback_data: CaptureCB, bot: Bot, store: BotStore) -> None:
    assert callback_data.lane is not None
    capture = await store.captures.get(callback_data.capture, cq.from_user.id)
    tasks = await store.captures.save(
        callback_data.capture, cq.from_user.id, callback_data.lane, operator(cq.from_user.id)
    )
    keys = ", ".join(t.key for t in tasks)
    await cq.answer(f"Saved as {keys}"[:200])
    assert capture is not None
    await _after(cq, bot, store, capture, previews.saved_text(tasks))


@router.callback_query(CaptureCB.filter(F.action == CaptureAction.DISCARD))
async def discard(cq: CallbackQuery, callback_data: CaptureCB, bot: Bot, store: BotStore) -> None:
    capture = await store.captures.discard(callback_data.capture, cq.from_user.id)
    await cq.answer("Discarded")
    await _after(cq, bot, store, capture, "🗑 Discarded.")


@router.callback_query(CaptureCB.filter(F.action == CaptureAction.REVIEW))
async def review(cq: CallbackQuery, callback_data: CaptureCB, bot: Bot, store: BotStore) -> None:
    ideas = await store.captures.split(callback_data.capture, cq.from_user.id)
    await cq.answer(f"{len(ideas)} ideas, one by one")
    parent = await store.captures.get(callback_data.capture, cq.from_user.id)
    if parent is not None and cq.message is not None:
        await previews.next_idea(bot, cq.message.chat.id, store.captures, parent)


@router.callback_query(CaptureCB.filter(F.action == CaptureAction.EDIT))
async def edit(
    cq: CallbackQuery,
    callback_data: CaptureCB,
    bot: Bot,
    store: BotStore,
    state: FSMContext,
    settings: Settings,
) -> None:
    capture = await store.captures.get(callback_data.capture, cq.from_user.id)
    if capture is None:
        await cq.answer("That preview no longer exists.", show_alert=True)
        return
    if capture.outcome is not None:
        await cq.answer(str(CaptureDecided(capture)), show_alert=True)
        return
    prompt = await previews.ask_correction(state, capture, settings.prompt_ttl)
    await cq.answer()
    if cq.message is not None:
        await bot.send_message(cq.message.chat.id, prompt)
