"""Bot start-up: the Bot (configurable Bot API URL), the Dispatcher with its routers, the
allowlist middleware, PostgreSQL FSM storage, and the runner used by `ob serve`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import SimpleEventIsolation
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import (
    approvals,
    capture,
    charts,
    documents,
    drain,
    newtask,
    planning,
    replies,
    shaping,
    views,
)
from bot.digest_job import DigestJob
from bot.middleware import OperatorAllowlist
from bot.notifier import Notifier, worker_name
from bot.storage import PostgresStorage
from bot.webhook import Webhook
from core.backlog import Backlog
from core.botstore import BotStore
from core.settings import Settings

log = logging.getLogger("ob.bot")

DEFAULTS = DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True)


def make_bot(settings: Settings) -> Bot:
    assert settings.bot_token is not None
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(settings.bot_token.get_secret_value(), session=session, default=DEFAULTS)


def build_dispatcher(backlog: Backlog, storage: BaseStorage | None = None) -> Dispatcher:
    """The Dispatcher with every router; handlers get `backlog`, `store` and `settings`
    injected by name."""
    store = BotStore(backlog)
    dp = Dispatcher(
        storage=storage or PostgresStorage(store), events_isolation=SimpleEventIsolation()
    )
    dp["backlog"] = backlog
    dp["store"] = store
    dp["settings"] = backlog.settings
    dp.update.outer_middleware(OperatorAllowlist(backlog.settings.operator_ids, store))
    dp.include_routers(
        newtask.router.build(),
        approvals.router.build(),
        drain.router.build(),
        shaping.router.build(),
        views.router.build(),
        charts.router.build(),
        replies.router.build(),  # a reply amends, even in a planning session
        planning.router.build(),
        documents.router.build(),
        capture.router.build(),
        views.fallback.build(),
    )
    return dp


async def _retrying(what: str, call: Callable[[], Awaitable[object]], stop: asyncio.Event) -> None:
    delay = 1.0
    while not stop.is_set():
        try:
            await call()
            return
        except Exception as err:
            log.warning("%s failed (%s); retrying in %.0fs", what, err, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 60)


class BotRunner:
    """Everything Telegram inside `ob serve`: updates (long polling, or a webhook), the
    notifier and the digest job."""

    def __init__(
        self,
        settings: Settings,
        backlog: Backlog,
        scheduler: AsyncIOScheduler,
        *,
        poll_every: float = 5.0,
    ):
        self.settings = settings
        self.backlog = backlog
        self.bot = make_bot(settings)
        self.dp = build_dispatcher(backlog)
        worker = worker_name()
        self.notifier = Notifier(
            self.bot, backlog, settings.operator_ids, worker=worker, poll_every=poll_every
        )
        self.digest = DigestJob(
            self.bot, backlog, settings.operator_ids, worker, settings.digest_grace
        )
        self.scheduler = scheduler
        # webhook mode: `ob serve` mounts `webhook.handle` on its HTTP server at `webhook.path`
        self.webhook = Webhook(settings, self.dp, self.bot) if settings.webhook_url else None
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def _polling(self) -> None:
        async def prepare() -> None:
            await self.bot.delete_webhook(drop_pending_updates=False)
            await self.bot.set_my_commands(views.COMMANDS)

        await _retrying("bot start-up (deleteWebhook, setMyCommands)", prepare, self.stop_event)
        if self.stop_event.is_set():
            return
        await self.dp.start_polling(
            self.bot, handle_signals=False, close_bot_session=False, polling_timeout=10
        )

    async def _webhook(self, webhook: Webhook) -> None:
        async def prepare() -> None:
            await webhook.register()
            await self.bot.set_my_commands(views.COMMANDS)

        await _retrying("bot start-up (setWebhook, setMyCommands)", prepare, self.stop_event)

    async def start(self) -> None:
        if self.webhook is not None:
            self.tasks = [asyncio.create_task(self._webhook(self.webhook), name="ob-bot-webhook")]
        else:
            self.tasks = [asyncio.create_task(self._polling(), name="ob-bot-polling")]
        if not self.settings.operator_ids:
            # Nobody to tell: notifications stay in the outbox until an operator is configured.
            log.warning(
                "OB_BOT_TOKEN is set but OB_OPERATOR_IDS is empty: nobody can use the bot, "
                "and notifications wait in the outbox"
            )
        else:
            self.digest.schedule(self.scheduler)
            self.tasks.append(
                asyncio.create_task(self.notifier.run(self.stop_event), name="ob-notifier")
            )
        log.info(
            "Telegram bot started (Bot API %s, %s)",
            self.settings.telegram_api_url,
            f"webhook {self.webhook.url}" if self.webhook else "long polling",
        )

    async def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(RuntimeError):
            await asyncio.wait_for(self.dp.stop_polling(), timeout=5)
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.bot.session.close()
