"""The operator allowlist, an outer middleware on every update."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.context import FSMContext
from aiogram.types import TelegramObject, Update, User

from bot.forms import LAST_SEEN
from core.botstore import BotStore

log = logging.getLogger("ob.bot.allowlist")

REFUSAL = (
    "Hello! This is a private bot for its operator, so I can't help you here. Have a good day."
)


class OperatorAllowlist(BaseMiddleware):
    """Only the configured operator ids reach a handler. A stranger gets one polite refusal
    (recorded in Postgres, so once ever) and nothing else; every attempt is logged."""

    def __init__(self, operator_ids: list[int], store: BotStore):
        self.operator_ids = set(operator_ids)
        self.store = store

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is not None and user.id in self.operator_ids:
            return await handler(event, data)
        uid = user.id if user else None
        log.warning(
            "refused update %s from non-operator user %s (@%s)",
            getattr(event, "update_id", "?"),
            uid,
            user.username if user else None,
        )
        if user is None or not isinstance(event, Update):
            return None
        first = await self.store.stranger_seen(user.id)
        bot = data["bot"]
        try:
            if event.callback_query is not None:
                await bot.answer_callback_query(
                    event.callback_query.id, text=REFUSAL[:190] if first else None
                )
            elif first and event.message is not None:
                await bot.send_message(event.message.chat.id, REFUSAL)
        except Exception:  # a refusal that fails to send is not worth more than a log line
            log.exception("could not send the refusal to %s", uid)
        return None


class PromptExpiry(BaseMiddleware):
    """A prompt (an edit, a reject reason, a /new step) waits OB_PROMPT_TTL seconds since the
    last exchange; after that the conversation is dropped before routing, so a new idea sent
    hours later is captured as a new idea, and its handler is told what expired
    (`expired_prompt`)."""

    def __init__(self, ttl: int, describe: Callable[[str, dict[str, Any]], str]):
        self.ttl = timedelta(seconds=ttl)
        self.describe = describe

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        state: FSMContext | None = data.get("state")
        if state is None:
            return await handler(event, data)
        now = datetime.now(UTC)
        current = await state.get_state()
        if current is not None:
            saved = await state.get_data()
            seen = saved.get(LAST_SEEN)
            if seen is not None and now - datetime.fromisoformat(seen) > self.ttl:
                data["expired_prompt"] = self.describe(current, saved)
                await state.clear()
                data["raw_state"] = None  # route the message as if no prompt were open
        result = await handler(event, data)
        if await state.get_state() is not None:
            await state.update_data({LAST_SEEN: now.isoformat()})
        return result
