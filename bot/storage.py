"""aiogram FSM storage in PostgreSQL: a conversation survives a restart of `ob serve`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey


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
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        await self.pool.execute(
            """insert into bot_fsm (key, state) values ($1, $2)
               on conflict (key) do update set state = excluded.state, updated_at = now()""",
            storage_key(key),
            value,
        )

    async def get_state(self, key: StorageKey) -> str | None:
        return await self.pool.fetchval(
            "select state from bot_fsm where key = $1", storage_key(key)
        )

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self.pool.execute(
            """insert into bot_fsm (key, data) values ($1, $2)
               on conflict (key) do update set data = excluded.data, updated_at = now()""",
            storage_key(key),
            dict(data),
        )

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        data = await self.pool.fetchval("select data from bot_fsm where key = $1", storage_key(key))
        return dict(data or {})

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        row = await self.pool.fetchval(
            """insert into bot_fsm (key, data) values ($1, $2)
               on conflict (key) do update set data = bot_fsm.data || excluded.data,
                                               updated_at = now()
               returning data""",
            storage_key(key),
            dict(data),
        )
        return dict(row)

    async def close(self) -> None:
        """The pool belongs to `ob serve`; nothing to close here."""
