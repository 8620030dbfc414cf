"""Showing captures: a one-idea preview, the summary of several ideas, the walk through them one
by one, and where a forwarded message came from. These are the bot's own messages: shown anew,
or edited in place when more messages join them."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    InlineKeyboardMarkup,
    Message,
    MessageOriginChannel,
    MessageOriginChat,
    MessageOriginHiddenUser,
    MessageOriginUser,
)

from bot import keyboards, render
from bot.cards import edit_message
from bot.forms import CAPTURE_PROMPT, CapturePrompt, Prompt
from core.captures import Capture, Captured, CaptureKind, CaptureOutcome, Captures, Draft
from core.models import Task

SUMMARY_ITEMS = 30


async def ask_correction(state: FSMContext, capture: Capture, ttl: int, head: str = "") -> str:
    """Open the prompt for a capture's corrected text (a preview's [Edit], or a planning session
    that did not read); the prompt to send, with the text to correct."""
    await state.set_state(Prompt.edit_capture)
    await CAPTURE_PROMPT.set(state, CapturePrompt(capture=capture.id))
    return render.fit(
        f"{head}Send the corrected text (or /cancel; {render.waits(ttl)}):\n"
        f"<pre>{render.esc(capture.text, 3000)}</pre>"
    )


def origin_of(message: Message, tz: ZoneInfo) -> str:
    """Where a forwarded message came from, and when it was first sent ("" when typed)."""
    o = message.forward_origin
    if o is None:
        return ""
    if isinstance(o, MessageOriginUser):
        who = o.sender_user.full_name + (
            f" (@{o.sender_user.username})" if o.sender_user.username else ""
        )
    elif isinstance(o, MessageOriginHiddenUser):
        who = o.sender_user_name
    elif isinstance(o, MessageOriginChannel):
        who = o.chat.title or "a channel"
        if o.chat.username:
            who += f" (https://t.me/{o.chat.username}/{o.message_id})"
    elif isinstance(o, MessageOriginChat):
        who = o.sender_chat.title or "a chat"
    else:
        who = "another chat"
    date: datetime = o.date
    return f"Forwarded from {who}, sent {render.when(date, tz)}"


def _head(c: Capture) -> str:
    what = (
        "📄 <b>Import preview</b>" if c.kind == CaptureKind.DOCUMENT else "📝 <b>Draft preview</b>"
    )
    extra = []
    if c.parts > 1:
        extra.append(f"{c.parts} messages")
    if c.photos:
        extra.append(f"📷 {len(c.photos)} photo{'s' if len(c.photos) > 1 else ''}")
    return what + "".join(f" · {e}" for e in extra)


def _left_out(d: Draft) -> list[str]:
    """What a preview leaves out or changes besides the new specs, as `ob import-todo
    --dry-run` says it."""
    out = []
    if d.updates:
        out.append("<b>Updates</b> (the document changed them):")
        for u in d.updates[:10]:
            fields = ", ".join(f.replace("_", " ") for f in u.changes)
            out.append(f"• {render.esc(u.key)} (line {u.line}): {render.esc(fields)}")
    if d.existing:
        out.append(f"Already in the backlog: {render.esc(', '.join(d.existing[:20]))}")
    if d.skipped:
        out.append(f"Marked done, dropped or checked, left out: {len(d.skipped)}")
        out += [f"  {render.esc(s, 120)}" for s in d.skipped[:5]]
        if len(d.skipped) > 5:
            out.append(f"  … and {len(d.skipped) - 5} more")
    if d.unreadable:
        out.append(f"⚠️ <b>Could not read {len(d.unreadable)}</b> (the rest is fine):")
        out += [f"  {render.esc(u, 200)}" for u in d.unreadable[:10]]
    out += [f"⚠️ {render.esc(w, 300)}" for w in d.warnings[:5]]
    return out


def text_of(captured: Captured) -> str:
    c, d = captured.capture, captured.draft
    if len(d.specs) == 1 and not d.updates:
        return render.fit("\n".join([_head(c), "", *render.spec_body(d.specs[0]), *_left_out(d)]))
    lines = [f"{_head(c)} · <b>{len(d.specs)} ideas</b>", ""]
    for n, spec in enumerate(d.specs[:SUMMARY_ITEMS], 1):
        lines.append(f"{n}. {_idea_line(spec.title, spec.priority, spec.repo, len(spec.steps))}")
    if len(d.specs) > SUMMARY_ITEMS:
        lines.append(f"… and {len(d.specs) - SUMMARY_ITEMS} more")
    lines += [*_left_out(d), "", "Save them all into a lane, review them one by one, or discard."]
    return render.fit("\n".join(lines))


def _idea_line(title: str, priority: int, repo: str | None, steps: int) -> str:
    meta = [f"P{priority}"] + ([f"repo {render.esc(repo)}"] if repo else [])
    if steps:
        meta.append(f"{steps} step{'s' if steps > 1 else ''}")
    return f"<b>{render.esc(title, 150)}</b> · {' · '.join(meta)}"


def markup_of(captured: Captured) -> InlineKeyboardMarkup:
    d = captured.draft
    lane = d.specs[0].lane if len(d.specs) == 1 else None
    return keyboards.capture(captured.capture.id, lane, ideas=len(d.specs) + len(d.updates))


async def show(
    bot: Bot, chat_id: int, captures: Captures, captured: Captured, *, in_place: bool = False
) -> None:
    """The preview: edited `in_place` (a message joined it, a reply amended it) while its
    message can be, else sent and remembered as the capture's message (for the next message
    and for replies)."""
    c = captured.capture
    text, markup = text_of(captured), markup_of(captured)
    if (
        in_place
        and c.message_id is not None
        and await edit_message(bot, chat_id, c.message_id, text, markup)
    ):
        return
    sent = await bot.send_message(chat_id, text, reply_markup=markup)
    await captures.set_message(c.id, sent.message_id)


def saved_text(tasks: list[Task]) -> str:
    lane = render.esc(tasks[0].lane.short if tasks[0].lane else "-")
    if len(tasks) == 1:
        body = "\n".join(render.spec_body(tasks[0]))
        return render.fit(f"💾 Saved as <b>{render.esc(tasks[0].key)}</b> into {lane}\n\n{body}")
    lines = [f"💾 Saved {len(tasks)} tasks into {lane}:"]
    lines += [f"<b>{render.esc(t.key)}</b> {render.esc(t.title, 150)}" for t in tasks]
    return render.fit("\n".join(lines))


# ------------------------------------------------------------- one by one


def walk_text(ideas: list[Capture]) -> str:
    """A split capture's summary: where each of its ideas stands."""
    marks = {CaptureOutcome.SAVED: "💾", CaptureOutcome.DISCARDED: "🗑", None: "⏳"}
    lines = [f"🔎 <b>{len(ideas)} ideas</b>, one by one"]
    for idea in ideas[:SUMMARY_ITEMS]:
        key = f" <b>{render.esc(idea.task_key)}</b>" if idea.task_key else ""
        title = render.esc(idea.text.split("\n", 1)[0].removeprefix("title: "), 150)
        lines.append(f"{idea.position}. {marks.get(idea.outcome, '⏳')}{key} {title}")
    left = sum(1 for i in ideas if i.outcome is None)
    lines += ["", f"{left} left to decide." if left else "All decided."]
    return render.fit("\n".join(lines))


async def next_idea(bot: Bot, chat_id: int, captures: Captures, parent: Capture) -> None:
    """After a decision on one idea: the split capture's summary shows it, and the next idea
    waiting for a decision is shown (or the walk is over)."""
    ideas = await captures.ideas(parent.id)
    if parent.message_id is not None:
        await edit_message(bot, chat_id, parent.message_id, walk_text(ideas), None)
    waiting = next((i for i in ideas if i.outcome is None and i.message_id is None), None)
    if waiting is not None:
        await show(
            bot, chat_id, captures, Captured(capture=waiting, draft=await captures.draft(waiting))
        )
    elif all(i.outcome is not None for i in ideas):
        saved = [i.task_key for i in ideas if i.task_key]
        await bot.send_message(
            chat_id,
            render.fit(
                f"✅ All {len(ideas)} ideas decided: {len(saved)} saved"
                + (f" ({render.esc(', '.join(saved[:30]))})" if saved else "")
                + f", {len(ideas) - len(saved)} discarded."
            ),
        )
