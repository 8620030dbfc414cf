"""Bearer-token authentication with a cache that revocation clears at once.

Every gateway request names its agent by token. Checking the token in PostgreSQL on every
request would double the gateway's database work, so verified tokens are cached for a short
while. `ob agent revoke` sends NOTIFY on AGENTS_CHANNEL and the cache is cleared; while the
listening connection is lost, nothing is cached.
"""

from __future__ import annotations

import hashlib
import time

from core.agents import AGENTS_CHANNEL, Agents
from core.backlog import Backlog
from core.listen import Listener
from core.models import Actor

CACHE_SECONDS = 30.0
MAX_CACHED = 10_000


class Authenticator:
    def __init__(self, backlog: Backlog):
        self.backlog = backlog
        self._cache: dict[bytes, tuple[Actor, float]] = {}
        self._listener = Listener(
            backlog,
            {AGENTS_CHANNEL: self._cache.clear},
            on_up=self._cache.clear,
            on_down=self._cache.clear,
        )

    @property
    def caching(self) -> bool:
        return self._listener.up

    async def start(self) -> None:
        await self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()
        self._cache.clear()

    async def __call__(self, token: str | None) -> Actor:
        """The agent the token belongs to; Unauthorized for a missing, bad or revoked token."""
        key = hashlib.sha256((token or "").encode()).digest()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > time.monotonic() and self.caching:
            return hit[0]
        actor = await Agents(self.backlog).authenticate(token)
        if self.caching:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (actor, time.monotonic() + CACHE_SECONDS)
        return actor
