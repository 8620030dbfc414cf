"""Refreshing repos at once: what a forge's push webhook asks for.

The gateway answers the forge straight away and hands the repo names here; a loop in `ob serve`
(supervised: an error is logged with its traceback, shown failing in `ob status`, and the loop
starts again) fetches and reads them, waiting for a repo's lock if another process holds it
(that process may have fetched just before the push), so a merge on the forge closes its task
and writes the notice within seconds. Names asked for while a round runs are read in the next
round; a round that fails keeps its names for the next try, and the scheduled reconcile is the
safety net for a process that dies meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from core.backlog import Backlog
from core.git.reconcile import Reconciler, ReconcileSummary


class Refresher:
    def __init__(
        self,
        backlog: Backlog,
        *,
        on_round: Callable[[ReconcileSummary], None] | None = None,
    ):
        self.reconciler = Reconciler(backlog)
        self.on_round = on_round
        self.pending: set[str] = set()
        self.wake = asyncio.Event()
        self.rounds = 0

    def request(self, repos: list[str]) -> None:
        """Fetch and read these repos as soon as possible."""
        if repos:
            self.pending.update(repos)
            self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: a round for whatever was asked, each time something is."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                woken = asyncio.create_task(self.wake.wait())
                await asyncio.wait({stopping, woken}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                if stop.is_set():
                    return
                await self.round()
        finally:
            stopping.cancel()

    async def round(self) -> ReconcileSummary | None:
        """Fetch and read what was asked for (None: nothing was)."""
        self.wake.clear()
        names = sorted(self.pending)
        self.pending.clear()
        if not names:
            return None
        try:
            summary = await self.reconciler.run(names, wait=True, discover_roots=False)
        except BaseException:
            self.pending.update(names)  # not lost: the next round reads them
            self.wake.set()
            raise
        self.rounds += 1
        if self.on_round is not None:
            self.on_round(summary)
        return summary
