"""Bot start-up: the Bot (configurable Bot API URL), the Dispatcher with its routers, the
allowlist middleware, PostgreSQL FSM storage, and the runner used by `ob serve`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

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
    crossrepo,
    documents,
    drain,
    errors,
    newtask,
    planning,
    questions,
    replies,
    shaping,
    views,
)
from bot.digest_job import DigestJob
from bot.forms import prompt_description
from bot.middleware import OperatorAllowlist, PromptExpiry
from bot.notifier import Notifier
from bot.patience import PatientReplies
from bot.storage import PostgresStorage
from bot.webhook import Webhook
from core.backlog import Backlog
from core.botstore import BotStore
from core.settings import Settings
from core.supervise import Supervisor, describe

log = logging.getLogger("ob.bot")

DEFAULTS = DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True)


def make_bot(settings: Settings) -> Bot:
    assert settings.bot_token is not None
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    session.middleware(PatientReplies())
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
    expiry = PromptExpiry(
        backlog.settings.prompt_ttl,
        lambda state, data: prompt_description(state, data, backlog.prefix),
    )
    dp.message.outer_middleware(expiry)
    dp.callback_query.outer_middleware(expiry)
    dp.include_routers(
        errors.router.build(),  # SpecError / BacklogError from any handler: the one clear line
        newtask.router.build(),
        approvals.router.build(),
        crossrepo.router.build(),
        drain.router.build(),
        shaping.router.build(),
        views.router.build(),
        charts.router.build(),
        questions.router.build(),  # a reply to a question's card answers it
        replies.router.build(),  # a reply amends, even in a planning session
        planning.router.build(),
        documents.router.build(),
        capture.router.build(),
        views.fallback.build(),
    )
    return dp


class BotRunner:
    """Everything Telegram inside `ob serve`, under the supervisor: updates (long polling, or a
    webhook), the notifier and the digest job."""

    def __init__(
        self,
        settings: Settings,
        backlog: Backlog,
        supervisor: Supervisor,
        scheduler: AsyncIOScheduler,
        *,
        poll_every: float = 5.0,
    ):
        self.settings = settings
        self.supervisor = supervisor
        self.bot = make_bot(settings)
        self.dp = build_dispatcher(backlog)
        worker = supervisor.board.worker
        self.notifier = Notifier(
            self.bot,
            backlog,
            settings.operator_ids,
            worker=worker,
            poll_every=poll_every,
            supervisor=supervisor,
        )
        self.digest = DigestJob(
            self.bot, backlog, settings.operator_ids, worker, settings.digest_grace
        )
        self.scheduler = scheduler
        # webhook mode: `ob serve` mounts `webhook.handle` on its HTTP server at `webhook.path`
        self.webhook = Webhook(settings, self.dp, self.bot) if settings.webhook_url else None

    async def _commands(self) -> None:
        """The command menu is cosmetic (some Bot API servers lack it): a failure is logged."""
        try:
            await self.bot.set_my_commands(views.COMMANDS)
        except Exception as err:
            log.warning("setMyCommands failed (%s); the bot works without the menu", describe(err))

    async def _poll(self) -> None:
        try:  # long polling needs no webhook; polling starts anyway
            await self.bot.delete_webhook(drop_pending_updates=False)
        except Exception as err:
            log.warning("deleteWebhook failed (%s); polling starts anyway", describe(err))
        await self._commands()
        await self.dp.start_polling(
            self.bot, handle_signals=False, close_bot_session=False, polling_timeout=10
        )

    async def _serve_webhook(self) -> None:
        """Register the webhook (a failure raises: the supervisor retries), then stay up."""
        assert self.webhook is not None
        await self.webhook.register()
        await self._commands()
        await self.supervisor.stopping.wait()

    async def start(self) -> None:
        if self.webhook is not None:
            self.supervisor.spawn("webhook", self._serve_webhook)
        else:
            self.supervisor.spawn("polling", self._poll)
        if not self.settings.operator_ids:
            why = "OB_OPERATOR_IDS is empty: nobody can use the bot; notices wait in the outbox"
            log.warning("OB_BOT_TOKEN is set but %s", why)
            self.supervisor.off("notifier", why)
            self.supervisor.off("digest", why)
        else:
            self.digest.schedule(self.scheduler, self.supervisor.job("digest", self.digest.run_due))
            self.supervisor.spawn("notifier", lambda: self.notifier.run(self.supervisor.stopping))
        log.info(
            "Telegram bot started (Bot API %s, %s)",
            self.settings.telegram_api_url,
            f"webhook {self.webhook.url}" if self.webhook else "long polling",
        )

    async def stop(self) -> None:
        """Stop polling (the supervisor then winds the loops down)."""
        with contextlib.suppress(RuntimeError):  # not polling right now
            await asyncio.wait_for(self.dp.stop_polling(), timeout=5)

    async def close(self) -> None:
        await self.bot.session.close()
