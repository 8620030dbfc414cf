"""Bearer-token authentication for the gateway, with a cache that revocation clears at once.

Every request names its agent by token. Checking the token in PostgreSQL on every request
would double the gateway's database work, so verified tokens are cached for a short while.
`ob agent revoke` sends NOTIFY on AGENTS_CHANNEL, and the listener clears the cache; if the
listening connection is lost, the cache is switched off until it is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import asyncpg

from core.agents import AGENTS_CHANNEL, authenticate
from core.models import Actor

log = logging.getLogger(__name__)
CACHE_SECONDS = 30.0
RECONNECT_SECONDS = 2.0


class Authenticator:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self._cache: dict[bytes, tuple[Actor, float]] = {}
        self._conn: asyncpg.Connection | None = None
        self._retry: asyncio.Task[None] | None = None

    @property
    def caching(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        try:
            conn = await self.pool.acquire()
            await conn.add_listener(AGENTS_CHANNEL, self._invalidate)
            conn.add_termination_listener(self._lost)
            self._conn = conn
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            log.warning("token cache off (cannot listen for revocations: %s)", err)

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        conn, self._conn = self._conn, None
        self._cache.clear()
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._lost)
            await conn.remove_listener(AGENTS_CHANNEL, self._invalidate)
            await self.pool.release(conn)

    def _invalidate(self, *_: object) -> None:
        self._cache.clear()

    def _lost(self, *_: object) -> None:
        if self._conn is None:
            return
        log.warning("token cache off until the revocation listener reconnects")
        self._conn = None
        self._cache.clear()
        self._retry = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while self._conn is None:
            await asyncio.sleep(RECONNECT_SECONDS)
            await self.start()

    async def __call__(self, token: str | None) -> Actor:
        key = hashlib.sha256((token or "").encode()).digest()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > time.monotonic() and self.caching:
            return hit[0]
        actor = await authenticate(self.pool, token)
        if self.caching:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (actor, time.monotonic() + CACHE_SECONDS)
        return actor
