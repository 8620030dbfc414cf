"""Approval cards: remembering the messages sent, and editing them once a task is decided."""

from __future__ import annotations

import logging

import asyncpg
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest

from bot import keyboards, render
from core.backlog import Backlog
from core.errors import NotFound
from core.models import Actor, Status, Task

log = logging.getLogger("ob.bot.cards")


def operator(user_id: int) -> Actor:
    return Actor.operator(f"tg:{user_id}")


async def remember(pool: asyncpg.Pool, task_id: int, chat_id: int, message_id: int) -> None:
    await pool.execute(
        "insert into bot_cards (task_id, chat_id, message_id) values ($1, $2, $3)"
        " on conflict do nothing",
        task_id,
        chat_id,
        message_id,
    )


async def is_card(pool: asyncpg.Pool, chat_id: int, message_id: int) -> bool:
    return bool(
        await pool.fetchval(
            "select exists (select 1 from bot_cards where chat_id = $1 and message_id = $2)",
            chat_id,
            message_id,
        )
    )


async def task_id(pool: asyncpg.Pool, number: int) -> int | None:
    return await pool.fetchval("select id from tasks where number = $1", number)


async def decided_by(backlog: Backlog, key: str) -> str | None:
    for ev in reversed(await backlog.history(key)):
        if ev.kind in ("approved", "rejected"):
            return ev.actor
    return None


def outcome_plain(task: Task, by: str | None, tz) -> str:
    """What already happened, for a stale tap (answerCallbackQuery allows 200 characters)."""
    at = render.when(task.status_at if task.status == Status.REJECTED else task.approved_at, tz)
    if task.status == Status.REJECTED:
        text = f"{task.key} was already rejected by {by or '?'} at {at}"
    elif task.status == Status.DRAFT:
        text = f"{task.key} is still a draft"
    elif task.status == Status.DONE:
        text = f"{task.key} is already done (by {task.completed_by})"
    else:
        lane = task.lane.value if task.lane else "-"
        text = f"{task.key} was already approved into {lane} by {task.approved_by} at {at}"
    return text[:200]


async def safe_edit(bot: Bot, chat_id: int, message_id: int, text: str, markup=None) -> bool:
    """Edit a message; 'message is not modified' counts as done, a vanished message as gone."""
    try:
        await bot.edit_message_text(
            chat_id=chat_id, message_id=message_id, text=render.fit(text), reply_markup=markup
        )
        return True
    except TelegramBadRequest as err:
        msg = str(err).lower()
        if "not modified" in msg:
            return True
        if "not found" in msg or "can't be edited" in msg:
            log.info("card %s/%s cannot be edited any more: %s", chat_id, message_id, err)
            return False
        raise


async def refresh(
    bot: Bot, backlog: Backlog, number: int, *, by: str | None = None, task: Task | None = None
) -> set[tuple[int, int]]:
    """Edit every still-pending card of a decided task to show outcome, who and when. Each card
    is switched to 'decided' before the edit and back if Telegram fails (the caller retries).
    Returns the (chat, message) pairs edited."""
    pool = backlog.pool
    if task is None:
        try:
            task = await backlog.get(f"{backlog.prefix}-{number}")
        except NotFound:
            return set()
    if task.status == Status.DRAFT:
        return set()
    rows = await pool.fetch(
        "update bot_cards set state = 'decided', updated_at = now()"
        " where task_id = (select id from tasks where number = $1) and state = 'pending'"
        " returning chat_id, message_id",
        number,
    )
    if not rows:
        return set()
    by = by or await decided_by(backlog, task.key)
    text = render.card(task, backlog.settings.tz, by=by)
    done: set[tuple[int, int]] = set()
    for i, r in enumerate(rows):
        try:
            await safe_edit(bot, r["chat_id"], r["message_id"], text, None)
            done.add((r["chat_id"], r["message_id"]))
        except Exception:
            for rest in rows[i:]:
                await pool.execute(
                    "update bot_cards set state = 'pending' where chat_id = $1 and message_id = $2",
                    rest["chat_id"],
                    rest["message_id"],
                )
            raise
    return done


def card_markup(task: Task):
    return keyboards.task_actions(task)
