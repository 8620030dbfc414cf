"""The notifier: delivers outbox rows to the operator's chats, and is the one path that edits
task cards.

Woken by LISTEN/NOTIFY on `ob_outbox` (core.listen, re-established after a PostgreSQL restart)
and polling as a fallback. Rows are leased through core.outbox (exactly one process works on a
row); a row is marked delivered only once Telegram accepted it for every chat. Retry-after is
honoured (without using up an attempt); every other failure backs off (up to five minutes) and
tries again for as long as it takes, except a permanent refusal (the chat is gone, the bot is
blocked, a message Telegram cannot read even as plain text), which makes the notice dead:
logged, and visible in `ob outbox`, `ob status` and the digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import Message

from bot import cards, render
from bot.notices import CARD_UPDATES, Delivery, Notice, notice_for
from bot.patience import outbox_delivery
from core.backlog import Backlog
from core.botstore import BotStore
from core.db import UNAVAILABLE
from core.events import OUTBOX_CHANNEL
from core.listen import Listener
from core.models import OutboxKind
from core.outbox import Outbox, OutboxRow, backoff
from core.questions import Questions
from core.supervise import Supervisor, describe, worker_name

log = logging.getLogger("ob.bot.notifier")
# An answer edits the question's cards: it waits until they have gone out.
QUESTION_CARDS = (OutboxKind.QUESTION_ASKED, OutboxKind.QUESTION_LEFT_OPEN)


class Defer(Exception):
    """Try this row again shortly without using up an attempt (keeps per-task order)."""


class Notifier:
    def __init__(
        self,
        bot: Bot,
        backlog: Backlog,
        chat_ids: list[int],
        *,
        worker: str | None = None,
        poll_every: float = 5.0,
        batch: int = 50,
        supervisor: Supervisor | None = None,
    ):
        self.bot = bot
        self.backlog = backlog
        self.store = BotStore(backlog)
        self.chat_ids = list(dict.fromkeys(chat_ids))
        self.outbox = Outbox(backlog)
        self.worker = worker or worker_name()
        self.supervisor = supervisor
        self.hold_until = 0.0  # after a retry-after, nothing is sent before this (monotonic)
        self.poll_every = poll_every
        self.batch = batch
        self.wake = asyncio.Event()
        self.delivered = 0

    # ------------------------------------------------------------------ loops

    async def run(self, stop: asyncio.Event) -> None:
        listener = Listener(self.backlog, {OUTBOX_CHANNEL: self.wake.set}, on_up=self.wake.set)
        await listener.start()
        try:
            await self._consume(stop)
        finally:
            await listener.stop()

    async def _consume(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            hold = self.hold_until - time.monotonic()
            if hold > 0:  # Telegram asked us to wait: wait, whatever wakes us
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=hold)
                continue
            try:
                n = await self.drain_once()
                delay = 0.5
                if self.supervisor is not None:
                    self.supervisor.beat("notifier", f"{self.delivered} delivered")
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as err:
                log.warning("outbox unavailable (%s); retrying in %.1fs", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            if n >= self.batch:
                continue
            timeout = self.poll_every
            with contextlib.suppress(*UNAVAILABLE):
                due = await self.outbox.next_due()
                if due is not None:  # a retry-after or backoff ends sooner than the next poll
                    timeout = min(timeout, max(0.05, due))
            self.wake.clear()
            waiter = asyncio.create_task(stop.wait())
            woken = asyncio.create_task(self.wake.wait())
            await asyncio.wait(
                {waiter, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for t in (waiter, woken):
                t.cancel()

    async def drain_once(self) -> int:
        """Work through up to one batch of rows, one at a time; returns how many were taken."""
        taken = 0
        while taken < self.batch:
            async with self.outbox.next(self.worker) as item:
                if item is None:
                    break
                taken += 1
                row = item.row
                try:
                    with outbox_delivery():
                        await self.deliver(row)
                    await item.delivered()
                    self.delivered += 1
                except TelegramRetryAfter as err:
                    log.warning("Telegram asks to retry after %ss", err.retry_after)
                    await item.retry(err.retry_after, "retry after", count=False)
                    self.hold_until = time.monotonic() + err.retry_after
                    break
                except Defer as err:
                    await item.retry(1.0, str(err), count=False)
                except (TelegramForbiddenError, TelegramBadRequest) as err:
                    reason = refusal(err)
                    log.error("outbox %s (%s) is dead: %s", row.id, row.kind, reason)
                    await item.dead(reason)
                except UNAVAILABLE:
                    raise  # the database is down: the consume loop waits for it
                except Exception as err:  # network, 5xx, an unreadable answer, anything else
                    delay = backoff(row.attempts + 1)
                    log.warning(
                        "outbox %s (%s) failed (%s); retry in %.0fs",
                        row.id,
                        row.kind,
                        describe(err),
                        delay,
                        exc_info=not isinstance(err, TelegramAPIError | TimeoutError),
                    )
                    await item.retry(delay, describe(err))
        return taken

    # -------------------------------------------------------------- delivery

    async def deliver(self, row: OutboxRow) -> None:
        tz = self.backlog.settings.tz
        if row.task_id is None:  # news about a repo or an import
            await self._send_all(row, None, notice_for(row.kind, row.payload, None, tz))
            return
        # a card update waits until the task's approval card has gone out
        if row.kind in CARD_UPDATES and (
            await self.outbox.undelivered_for_task(row.task_id, OutboxKind.DRAFT_FILED, row.id)
        ):
            raise Defer("the approval card has not gone out yet")
        if row.kind == OutboxKind.QUESTION_ANSWERED:
            for kind in QUESTION_CARDS:
                if await self.outbox.undelivered_for_task(row.task_id, kind, row.id):
                    raise Defer("the question's card has not gone out yet")
        task = await self.backlog.get_by_id(row.task_id)
        notice = notice_for(row.kind, row.payload, task, tz)
        if notice.delivery == Delivery.EDIT_QUESTION:
            assert notice.question is not None
            await cards.show_answer(self.bot, self.store, notice.question, notice.text)
        elif notice.delivery == Delivery.SEND:
            await self._send_all(row, task.number, notice)
        if notice.delivery == Delivery.EDIT_CARDS or notice.refresh_cards:
            questions = await Questions(self.backlog).open_of(task.key)
            await cards.refresh(self.bot, self.store, row.task_id, task, tz, questions)

    async def _send_all(self, row: OutboxRow, number: int | None, notice: Notice) -> None:
        sent = await self.outbox.sent_chats(row.id)
        for chat_id in self.chat_ids:
            if chat_id in sent:
                continue
            msg = await self._send(chat_id, notice)
            if notice.card is not None and number is not None:
                await self.store.remember_card(number, chat_id, msg.message_id, notice.card)
            if notice.question is not None:
                await self.store.remember_question_card(notice.question, chat_id, msg.message_id)
            await self.outbox.record_sent(row.id, chat_id, msg.message_id)

    async def _send(self, chat_id: int, notice: Notice) -> Message:
        """Send as HTML; a message Telegram refuses to read is sent again as plain text."""
        try:
            return await self.bot.send_message(
                chat_id, render.fit(notice.text), reply_markup=notice.markup
            )
        except TelegramBadRequest as err:
            if chat_gone(err):
                raise
            log.warning("Telegram refused a notice as HTML (%s); sending it as plain text", err)
            return await self.bot.send_message(
                chat_id, render.plain(notice.text), reply_markup=notice.markup, parse_mode=None
            )


def chat_gone(err: TelegramBadRequest) -> bool:
    return "chat not found" in str(err).lower()


def refusal(err: TelegramForbiddenError | TelegramBadRequest) -> str:
    """Why Telegram refused a notice for good, and what the operator can do about it."""
    then = "then `ob outbox retry --dead`"
    if isinstance(err, TelegramForbiddenError):
        return (
            f"Telegram refused the chat ({err.message}): open the bot in Telegram and press "
            f"Start (or unblock it), {then}"
        )
    if chat_gone(err):
        return f"Telegram knows no such chat ({err.message}): check OB_OPERATOR_IDS, {then}"
    return f"Telegram refused the notice even as plain text ({err.message})"
