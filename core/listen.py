"""LISTEN/NOTIFY with reconnection: one connection of its own (outside the pool, so it never
holds a pool slot or delays the pool's closing) listening on a few channels; a channel's
callback gets nothing, or (`messages`) the notification's payload.

Whoever relies on notifications (the notifier's wake-ups, the gateway's token cache) must also
know when it could have missed one: `up` is False while the connection is lost, and `on_up`
runs each time listening (re)starts, so the caller can look for what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from core.backlog import Backlog
from core.db import UNAVAILABLE

log = logging.getLogger(__name__)

Callback = Callable[[], None]
OnMessage = Callable[[str], None]
RECONNECT_MIN = 0.5
RECONNECT_MAX = 30.0
PING_EVERY = 15.0


class Listener:
    def __init__(
        self,
        backlog: Backlog,
        channels: dict[str, Callback],
        *,
        messages: dict[str, OnMessage] | None = None,
        on_up: Callback | None = None,
        on_down: Callback | None = None,
    ):
        self.url = backlog.url
        self.channels = channels
        self._handlers = {channel: _ignore_args(cb) for channel, cb in channels.items()}
        self._handlers.update({ch: _payload_only(cb) for ch, cb in (messages or {}).items()})
        self.on_up = on_up
        self.on_down = on_down
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    @property
    def up(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        """Listen now if the database answers (else keep trying in the background)."""
        with contextlib.suppress(*UNAVAILABLE):
            await self._connect()
        self._task = asyncio.create_task(self._keep(), name="ob-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.url, timeout=10)
        try:
            for channel, handler in self._handlers.items():
                await conn.add_listener(channel, handler)
        except BaseException:
            conn.terminate()
            raise
        self._lost.clear()
        conn.add_termination_listener(lambda _conn: self._lost.set())
        self._conn = conn
        if self.on_up is not None:
            self.on_up()

    async def _drop(self) -> None:
        """Close the connection without a round trip (it may be mid-ping, or the server gone)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _keep(self) -> None:
        """Ping the held connection (a dead socket is noticed within PING_EVERY, a closed one
        at once); when it is gone, reconnect with backoff."""
        delay = RECONNECT_MIN
        while True:
            if self._conn is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), timeout=PING_EVERY)
                try:
                    if self._lost.is_set():
                        raise ConnectionError("the connection was closed")
                    await self._conn.execute("select 1")
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    log.warning("notification listener lost (%s); reconnecting", err)
                    await self._drop()
                    if self.on_down is not None:
                        self.on_down()
            try:
                await self._connect()
                delay = RECONNECT_MIN
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("cannot listen for notifications (%s); retry in %.1fs", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)


def _ignore_args(callback: Callback) -> Callable[..., None]:
    def handler(*_: object) -> None:
        callback()

    return handler


def _payload_only(callback: OnMessage) -> Callable[..., None]:
    def handler(_conn: object, _pid: object, _channel: object, payload: str) -> None:
        callback(payload)

    return handler
