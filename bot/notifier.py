"""The notifier: delivers outbox rows to the operator's chats.

Woken by LISTEN/NOTIFY on `ob_outbox` (a dedicated connection, re-opened after a PostgreSQL
restart) and polling as a fallback. Rows are leased through core/outbox (exactly one process
works on a row); a row is marked delivered only once Telegram accepted it for every chat.
Retry-after is honoured (without using up an attempt), 5xx and network errors back off
exponentially, permanent errors (400/403) are given up on and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import asyncpg
from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardMarkup

from bot import cards, keyboards, render
from core.backlog import Backlog
from core.events import OUTBOX_CHANNEL
from core.models import Status, Task
from core.outbox import MAX_ATTEMPTS, Claimed, Outbox, OutboxRow, backoff
from core.tasks import fetch_task

log = logging.getLogger("ob.bot.notifier")


class Defer(Exception):
    """Try this row again shortly without using up an attempt (keeps per-task order)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _kv(payload: dict[str, Any]) -> str:
    parts = []
    for k, v in payload.items():
        if k in ("key", "title"):
            continue
        parts.append(f"{render.esc(k, 40)}: {render.esc(v, 200)}")
    return "\n".join(parts[:15])


class Notifier:
    def __init__(
        self,
        bot: Bot,
        backlog: Backlog,
        url: str,
        chat_ids: list[int],
        *,
        worker: str | None = None,
        poll_every: float = 5.0,
        batch: int = 50,
    ):
        self.bot = bot
        self.backlog = backlog
        self.url = url
        self.chat_ids = list(dict.fromkeys(chat_ids))
        self.outbox = Outbox(backlog.pool, worker or worker_name())
        self.hold_until = 0.0  # after a retry-after, nothing is sent before this (monotonic)
        self.poll_every = poll_every
        self.batch = batch
        self.wake = asyncio.Event()
        self.delivered = 0

    # ------------------------------------------------------------------ loops

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop), name="ob-notifier-listen")
        try:
            await self._consume(stop)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self, stop: asyncio.Event) -> None:
        """Hold a LISTEN connection; reconnect (with backoff) whenever it is lost."""
        delay = 0.5
        while not stop.is_set():
            conn = None
            try:
                conn = await asyncpg.connect(self.url, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self.wake.set())
                self.wake.set()  # anything written while we were not listening
                delay = 0.5
                while not lost.is_set() and not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=15)
                    if not lost.is_set():
                        await conn.execute("select 1")  # notice a dead socket
                if lost.is_set():
                    log.warning("outbox listener connection closed; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("outbox listener lost (%s); reconnecting in %.1fs", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)

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
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("outbox unavailable (%s); retrying in %.1fs", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            if n >= self.batch:
                continue
            timeout = self.poll_every
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
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
            async with self.outbox.next() as item:
                if item is None:
                    break
                taken += 1
                row = item.row
                try:
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
                except (TelegramServerError, TelegramNetworkError, TimeoutError) as err:
                    await self._failed(item, err, transient=True)
                except (TelegramBadRequest, TelegramForbiddenError) as err:
                    await self._failed(item, err, transient=False)
                except TelegramAPIError as err:
                    await self._failed(item, err, transient=True)
        return taken

    async def _failed(self, item: Claimed, err: Exception, *, transient: bool) -> None:
        row = item.row
        text = f"{type(err).__name__}: {err}"
        attempts = row.attempts + 1
        if transient and attempts < MAX_ATTEMPTS:
            delay = backoff(attempts)
            log.warning("outbox %s (%s) failed, retry in %.0fs: %s", row.id, row.kind, delay, text)
            await item.retry(delay, text)
        else:
            log.error(
                "giving up on outbox %s (%s) after %s attempt(s): %s",
                row.id,
                row.kind,
                attempts,
                text,
            )
            await item.give_up(text)

    # -------------------------------------------------------------- delivery

    async def _task(self, row: OutboxRow) -> Task | None:
        if row.task_id is None:
            return None
        async with self.backlog.pool.acquire() as conn:
            return await fetch_task(conn, row.task_id, self.backlog.prefix)

    async def _send_all(
        self,
        row: OutboxRow,
        text: str,
        markup: InlineKeyboardMarkup | None = None,
        *,
        card_task_id: int | None = None,
    ) -> None:
        sent = await self.outbox.sent_chats(row.id)
        for chat_id in self.chat_ids:
            if chat_id in sent:
                continue
            msg = await self.bot.send_message(chat_id, render.fit(text), reply_markup=markup)
            if card_task_id is not None:
                await cards.remember(self.backlog.pool, card_task_id, chat_id, msg.message_id)
            await self.outbox.record_sent(row.id, chat_id, msg.message_id)

    async def deliver(self, row: OutboxRow) -> None:
        p = row.payload
        task = await self._task(row)
        key = render.esc(p.get("key") or (task.key if task else "?"))
        title = render.esc(p.get("title") or (task.title if task else ""), 200)
        tz = self.backlog.settings.tz
        if row.kind == "draft_filed" and task is not None:
            if task.status == Status.DRAFT:
                await self._send_all(
                    row,
                    render.card(task, tz),
                    keyboards.approval(task.number),
                    card_task_id=row.task_id,
                )
            else:  # decided before the card went out: show the outcome instead
                by = await cards.decided_by(self.backlog, task.key)
                await self._send_all(row, render.card(task, tz, by=by))
        elif row.kind == "task_decided":
            if row.task_id and await self.outbox.undelivered_for_task(
                row.task_id, "draft_filed", row.id
            ):
                raise Defer("the approval card has not gone out yet")
            if task is not None:
                await cards.refresh(self.bot, self.backlog, task.number, by=p.get("by"))
        elif row.kind == "task_completed":
            commits = p.get("commits") or []
            verified = (
                "verified ✔"
                if p.get("verified")
                else "unverified (not yet seen on the default branch)"
            )
            evidence = (
                f"commits: <code>{render.esc(', '.join(c[:12] for c in commits[:10]))}</code> · {verified}"
                if commits
                else "⚠️ no commit given"
            )
            note = f"\n<i>{render.esc(p.get('note'), 1500)}</i>" if p.get("note") else ""
            await self._send_all(
                row,
                f"🏁 <b>{key}</b> completed by {render.esc(p.get('by'))}\n{title}\n{evidence}{note}",
            )
        elif row.kind == "handoff":
            reason = f"\nreason: {render.esc(p.get('reason'), 500)}" if p.get("reason") else ""
            await self._send_all(
                row,
                f"🤝 <b>{key}</b> handed off by {render.esc(p.get('by'))}: it now waits for "
                f"<b>{render.esc(p.get('prerequisite'))}</b> "
                f"{render.esc(p.get('prerequisite_title'), 200)} "
                f"({render.esc(p.get('prerequisite_status'))}){reason}",
            )
        elif row.kind == "lease_expired":
            await self._send_all(
                row,
                f"⌛ Lease on <b>{key}</b> {title} expired (held by "
                f"{render.esc(p.get('holder'))}; expiry {render.esc(p.get('expiries'))} of "
                f"{render.esc(p.get('max_expiries'))}). It is claimable again.",
            )
        elif row.kind == "attempts_exhausted":
            await self._send_all(
                row,
                f"🛑 <b>{key}</b> {title}: {render.esc(p.get('expiries'))} leases expired without "
                "progress; it moved to requires_decision.",
                keyboards.task_actions(task) if task else None,
            )
        elif row.kind == "findings_reported":
            await self._send_all(
                row,
                f"🔎 Findings on <b>{key}</b> by {render.esc(p.get('by'))}:\n"
                f"{render.esc(p.get('text'), 2500)}",
                keyboards.task_actions(task) if task else None,
            )
        elif row.kind == "task_unblocked":
            await self._send_all(
                row,
                f"🔓 <b>{key}</b> is ready again ({render.esc(p.get('prerequisite'))} is done).",
            )
        else:  # a kind this bot does not know yet (e.g. task_closed_by_commit): a generic notice
            await self._send_all(
                row,
                f"ℹ️ <b>{render.esc(row.kind, 60)}</b> · <b>{key}</b> {title}\n{_kv(p)}",
            )
