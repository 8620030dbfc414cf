"""The daily lane digest job (with its chart): a cron trigger at OB_DIGEST_AT in OB_TIMEZONE, sent once per day
(claimed in `digest_runs`, so two `ob serve` processes never both send it), and caught up after a
missed run while still within the grace window (OB_DIGEST_GRACE)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

from aiogram import Bot
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import keyboards, render
from bot.charts import send_chart
from core.backlog import Backlog
from core.botstore import BotStore
from core.digest import Digests
from core.settings import Settings

log = logging.getLogger("ob.bot.digest")


class DigestJob:
    def __init__(
        self, bot: Bot, backlog: Backlog, chat_ids: list[int], worker: str, grace_seconds: int
    ):
        self.bot = bot
        self.backlog = backlog
        self.store = BotStore(backlog)
        self.chat_ids = list(dict.fromkeys(chat_ids))
        self.worker = worker
        self.grace = timedelta(seconds=grace_seconds)

    @property
    def settings(self) -> Settings:
        return self.backlog.settings

    def due_day(self, now: datetime | None = None) -> date | None:
        """The local day whose digest is due at `now` (at or after its time, within the grace
        window), or None."""
        tz = self.settings.tz
        local = (now or datetime.now(UTC)).astimezone(tz)
        for day in (local.date(), local.date() - timedelta(days=1)):
            target = datetime.combine(day, self.settings.digest_at, tzinfo=tz)
            if target <= local <= target + self.grace:
                return day
        return None

    async def run_due(self, now: datetime | None = None) -> str | None:
        """Send the due digest unless some process already has; says so when this call sent
        it. A failure raises (the supervisor shows it) after freeing the day for a retry."""
        day = self.due_day(now)
        if day is None or not await self.send_for(day):
            return None
        return f"sent the digest for {day}"

    async def send_for(self, day: date) -> bool:
        """True when this call sent the day's digest; False when another process has it."""
        if not await self.store.claim_digest(day, self.worker):
            return False
        try:
            d = await Digests(self.backlog).build(day=day)
            text = render.digest(d, self.settings.tz)
            for chat_id in self.chat_ids:
                await self.bot.send_message(chat_id, text, reply_markup=keyboards.digest())
        except BaseException:
            # let the next check (or another process) try again at once, not after the claim ages
            await self.store.digest_failed(day)
            raise
        await self.store.digest_sent(day)
        log.info("sent the digest for %s", day)
        try:  # the picture is a bonus: its failure never sends the digest twice
            await send_chart(self.bot, self.chat_ids, self.backlog, day)
        except Exception:
            log.exception("the digest's chart for %s could not be sent", day)
        return True

    def schedule(
        self,
        scheduler: AsyncIOScheduler,
        job: Callable[[], Awaitable[None]],
        *,
        check_every: int = 300,
    ) -> None:
        """Run `job` (the supervised `run_due`) at the digest time, and every few minutes to
        catch up a run that was missed or failed, while still inside the grace window."""
        at = self.settings.digest_at
        scheduler.add_job(
            job,
            "cron",
            hour=at.hour,
            minute=at.minute,
            timezone=self.settings.tz,
            id="digest",
            misfire_grace_time=int(self.grace.total_seconds()) or None,
            coalesce=True,
            max_instances=1,
        )
        scheduler.add_job(
            job,
            "interval",
            seconds=check_every,
            id="digest-catch-up",
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
        )
