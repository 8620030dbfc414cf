"""Replies that survive a flood window: a request middleware that waits out Telegram's
`retry_after` (and backs off a few 5xx or network failures) before trying again, so the answer
to `/lanes` arrives late rather than never.

Not for long polling (aiogram backs getUpdates off itself) and not for the notifier, which has
the outbox: a notice that must wait goes back to the outbox with its time, and the notifier
holds every send until then (see `outbox_delivery`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import Response, TelegramType

log = logging.getLogger("ob.bot.patience")

MAX_WAIT = 120.0  # seconds a reply may wait in all before it is given up (and logged)
SERVER_RETRIES = 3
_IN_OUTBOX: ContextVar[bool] = ContextVar("ob_in_outbox", default=False)


@contextmanager
def outbox_delivery() -> Iterator[None]:
    """Requests made inside are the notifier's: they fail fast, and the outbox retries."""
    token = _IN_OUTBOX.set(True)
    try:
        yield
    finally:
        _IN_OUTBOX.reset(token)


class PatientReplies(BaseRequestMiddleware):
    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if _IN_OUTBOX.get() or isinstance(method, GetUpdates):
            return await make_request(bot, method)
        waited, failures = 0.0, 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as err:
                last: Exception = err
                wait = float(err.retry_after)
            except (TelegramServerError, TelegramNetworkError) as err:
                last = err
                failures += 1
                wait = float(2 ** (failures - 1)) if failures <= SERVER_RETRIES else MAX_WAIT
            if waited + wait > MAX_WAIT:
                raise last
            name = type(method).__name__
            log.info("%s waits %.0fs (%s); then it goes out", name, wait, type(last).__name__)
            await asyncio.sleep(wait)
            waited += wait
