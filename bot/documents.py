"""Documents and photos. A `.md` / `.txt` document (a TODO.md) becomes an import preview read
as `ob import-todo` reads it — its repo from the caption (`web`, `repo: web`), else asked when
its specs name none — saved in one tap or reviewed one by one. A photo's caption is captured
like a typed message, and the photo is kept on every task it files (`/task` shows it); a photo
without a caption joins the preview being written."""

from __future__ import annotations

import io
import re

from aiogram import Bot, F
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards, previews, render
from bot.callbacks import RepoCB
from bot.capture import capture_message
from bot.forms import REPO_PROMPT, Prompt, RepoPrompt
from bot.routing import PLAIN, Routes
from core.botstore import BotStore
from core.captures import MAX_CAPTURE_BYTES, Captured
from core.git.repos import Repos
from core.settings import Settings
from core.spec import REPO_RE

router = Routes(name="documents")
TEXT_SUFFIXES = (".md", ".markdown", ".txt")
_CAPTION_REPO = re.compile(r"^(?:repo[ \t]*:?[ \t]*)?(\S+)$", re.I)


def _repo_of(caption: str | None) -> str | None:
    m = _CAPTION_REPO.match((caption or "").strip())
    return m.group(1) if m and REPO_RE.match(m.group(1)) else None


@router.message(F.document)
async def got_document(
    message: Message, bot: Bot, store: BotStore, settings: Settings, state: FSMContext
) -> None:
    doc = message.document
    if doc is None or message.from_user is None:
        return
    name = doc.file_name or "document"
    if not name.lower().endswith(TEXT_SUFFIXES):
        await message.answer(
            "I read TODO.md-style documents (<code>.md</code> or <code>.txt</code>); "
            "send text, or a photo with a caption."
        )
        return
    if (doc.file_size or 0) > MAX_CAPTURE_BYTES:
        await message.answer("That document is over 1 MiB; split it, or use `ob import-todo`.")
        return
    data = io.BytesIO()
    await bot.download(doc, destination=data)
    try:
        text = data.getvalue().decode("utf-8-sig")
    except UnicodeDecodeError:
        await message.answer(f"{render.esc(name)} is not UTF-8 text.")
        return
    caption_repo = _repo_of(message.caption)
    captured = await store.captures.add_document(
        message.chat.id,
        message.from_user.id,
        text,
        repo=caption_repo,
        origin=f"Imported from {name} (sent to the bot)",
    )
    offered = await Repos(store.backlog).known_names()
    if caption_repo or not offered or all(s.repo for s in captured.draft.specs):
        await previews.show(bot, message.chat.id, store.captures, captured)
        return
    await state.set_state(Prompt.capture_repo)
    await REPO_PROMPT.set(state, RepoPrompt(capture=captured.capture.id, offered=offered))
    count = len(captured.draft.specs)
    await message.answer(
        f"📄 {render.esc(name)}: {count} spec{'s' if count != 1 else ''}. Which <b>repo</b> "
        "are they for (those that name none)? Tap one, or type a name.",
        reply_markup=keyboards.repos(
            offered, lambda i: RepoCB(capture=captured.capture.id, index=i)
        ),
    )


async def _with_repo(
    bot: Bot, chat_id: int, store: BotStore, user_id: int, capture_id: int, repo: str | None
) -> None:
    """Set the document's repo and show its preview."""
    captured: Captured = await store.captures.set_repo(capture_id, user_id, repo)
    await previews.show(bot, chat_id, store.captures, captured)


@router.callback_query(RepoCB.filter())
async def tap_repo(
    cq: CallbackQuery, callback_data: RepoCB, bot: Bot, store: BotStore, state: FSMContext
) -> None:
    prompt = await REPO_PROMPT.get(state)
    if prompt is None or prompt.capture != callback_data.capture or cq.message is None:
        await cq.answer("That question is over; send the document again.", show_alert=True)
        return
    if not -1 <= callback_data.index < len(prompt.offered):
        await cq.answer("That button is not valid.", show_alert=True)
        return
    repo = None if callback_data.index == -1 else prompt.offered[callback_data.index]
    await state.clear()
    await _with_repo(bot, cq.message.chat.id, store, cq.from_user.id, prompt.capture, repo)
    await cq.answer(repo or "no repo")


@router.message(Prompt.capture_repo, PLAIN)
async def typed_repo(message: Message, bot: Bot, store: BotStore, state: FSMContext) -> None:
    prompt = await REPO_PROMPT.get(state)
    name = (message.text or "").strip()
    if prompt is None or message.from_user is None:
        await state.clear()
        return
    if not REPO_RE.match(name):
        await message.answer("That is not a repository name; tap one, or type another.")
        return
    await state.clear()
    await _with_repo(bot, message.chat.id, store, message.from_user.id, prompt.capture, name)


@router.message(F.photo)
async def got_photo(message: Message, bot: Bot, store: BotStore, settings: Settings) -> None:
    assert message.photo is not None
    largest = message.photo[-1].file_id
    await capture_message(message, bot, store, settings, message.caption or "", (largest,))
