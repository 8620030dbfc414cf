"""The one way core's services are built: a class over a `Backlog`.

Faces (bot, gateway, cli) call `Service(backlog).verb(...)`, or a method of the Backlog itself;
a service is cheap to make (it holds no state of its own unless it says so). Inside core, SQL
lives in the services' methods and in a few named query functions that take a connection
first (`verb(conn, ...)`): those are core's own, never called from a face (tests/
test_layering.py checks both).
"""

from __future__ import annotations

from core.backlog import Backlog


class Service:
    """What every service needs from the backlog: its pool, settings and key prefix, and the
    notifier's wake after a change that wrote outbox rows."""

    def __init__(self, backlog: Backlog):
        self.backlog = backlog
        self.pool = backlog.pool
        self.settings = backlog.settings
        self.prefix = backlog.prefix

    async def wake(self) -> None:
        """Wake the notifier (after the transaction that wrote outbox rows committed)."""
        await self.backlog.wake()
