"""`ob serve`: the main job. Migrates, then runs every service until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from ob.core.db import open_database
from ob.settings import Settings

log = logging.getLogger("ob.serve")


async def serve_forever(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_database(settings) as db:
        log.info("database ready; ob serve is running (Ctrl-C stops it)")
        del db
        await stop.wait()
    log.info("stopped")
