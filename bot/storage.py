"""aiogram FSM storage in PostgreSQL (through core's BotStore): a conversation survives a
restart of `ob serve`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey

from core.botstore import BotStore


def storage_key(key: StorageKey) -> str:
    return ":".join(
        str(p)
        for p in (
            key.bot_id,
            key.business_connection_id or "",
            key.chat_id,
            key.thread_id or "",
            key.user_id,
            key.destiny,
        )
    )


class PostgresStorage(BaseStorage):
    def __init__(self, store: BotStore):
        self.store = store

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        await self.store.set_conversation_state(storage_key(key), value)

    async def get_state(self, key: StorageKey) -> str | None:
        return await self.store.conversation_state(storage_key(key))

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self.store.set_conversation_data(storage_key(key), dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return await self.store.conversation_data(storage_key(key))

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        return await self.store.update_conversation_data(storage_key(key), dict(data))

    async def close(self) -> None:
        """The database belongs to `ob serve`; nothing to close here."""
