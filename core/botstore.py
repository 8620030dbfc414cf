"""What the operator's chat keeps in PostgreSQL: capture previews (core.captures), the card
messages that show a task, conversation (FSM) state, strangers who wrote to the bot, and the daily
digest's runs.

Core knows nothing of Telegram here: a chat, a user and a message are plain integers, and a
conversation key is an opaque string the bot builds.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from core.backlog import Backlog
from core.captures import Captures
from core.service import Service


class CardKind(StrEnum):
    """An approval card loses its buttons once the draft is decided; a task card keeps the
    task's current actions."""

    APPROVAL = "approval"
    TASK = "task"


class Card(BaseModel):
    chat_id: int
    message_id: int
    kind: CardKind


# A digest day is claimed by one process; a claim older than two minutes that never reached
# `sent_at` (the process died) may be taken over.
_CLAIM_DIGEST = """
insert into digest_runs (day, claimed_by) values ($1, $2)
on conflict (day) do update set claimed_by = excluded.claimed_by, claimed_at = now()
    where digest_runs.sent_at is null and digest_runs.claimed_at < now() - interval '2 minutes'
returning day
"""


class BotStore(Service):
    def __init__(self, backlog: Backlog):
        super().__init__(backlog)
        self.captures = Captures(backlog)

    # ------------------------------------------------------------------- cards

    async def remember_card(
        self, task_number: int, chat_id: int, message_id: int, kind: CardKind
    ) -> None:
        """A message that shows this task: the notifier edits it whenever the task is decided,
        moved or edited (it is the one path that edits cards)."""
        await self.pool.execute(
            "insert into bot_cards (task_id, chat_id, message_id, kind)"
            " select id, $2, $3, $4 from tasks where number = $1"
            " on conflict (chat_id, message_id) do update set kind = excluded.kind,"
            " task_id = excluded.task_id, updated_at = now()",
            task_number,
            chat_id,
            message_id,
            kind,
        )

    async def card_task(self, chat_id: int, message_id: int) -> int | None:
        """The number of the task a card message shows (what a reply to it points at)."""
        number = await self.pool.fetchval(
            "select t.number from bot_cards c join tasks t on t.id = c.task_id"
            " where c.chat_id = $1 and c.message_id = $2",
            chat_id,
            message_id,
        )
        return int(number) if number is not None else None

    async def cards(self, task_id: int) -> list[Card]:
        rows = await self.pool.fetch(
            "select chat_id, message_id, kind from bot_cards where task_id = $1"
            " order by created_at",
            task_id,
        )
        return [Card(**dict(r)) for r in rows]

    async def card_edited(self, card: Card) -> None:
        await self.pool.execute(
            "update bot_cards set updated_at = now() where chat_id = $1 and message_id = $2",
            card.chat_id,
            card.message_id,
        )

    async def forget_card(self, card: Card) -> None:
        """The message is gone (deleted, too old to edit): stop trying to edit it."""
        await self.pool.execute(
            "delete from bot_cards where chat_id = $1 and message_id = $2",
            card.chat_id,
            card.message_id,
        )

    # ------------------------------------------------------------ question cards

    async def remember_question_card(self, question_id: int, chat_id: int, message_id: int) -> None:
        """A message that shows an agent's question: a reply to it answers the question, and
        the notifier edits it to show the answer."""
        await self.pool.execute(
            "insert into question_cards (question_id, chat_id, message_id) values ($1, $2, $3)"
            " on conflict (chat_id, message_id) do update set question_id = excluded.question_id",
            question_id,
            chat_id,
            message_id,
        )

    async def question_at(self, chat_id: int, message_id: int) -> int | None:
        """The question a message shows (what a reply to it answers)."""
        qid = await self.pool.fetchval(
            "select question_id from question_cards where chat_id = $1 and message_id = $2",
            chat_id,
            message_id,
        )
        return int(qid) if qid is not None else None

    async def question_cards(self, question_id: int) -> list[tuple[int, int]]:
        """The (chat, message) pairs that show this question."""
        rows = await self.pool.fetch(
            "select chat_id, message_id from question_cards where question_id = $1"
            " order by created_at",
            question_id,
        )
        return [(r["chat_id"], r["message_id"]) for r in rows]

    async def forget_question_card(self, chat_id: int, message_id: int) -> None:
        await self.pool.execute(
            "delete from question_cards where chat_id = $1 and message_id = $2",
            chat_id,
            message_id,
        )

    # --------------------------------------------------------- conversations

    async def conversation_state(self, key: str) -> str | None:
        value = await self.pool.fetchval("select state from bot_fsm where key = $1", key)
        return str(value) if value is not None else None

    async def set_conversation_state(self, key: str, state: str | None) -> None:
        await self.pool.execute(
            """insert into bot_fsm (key, state) values ($1, $2)
               on conflict (key) do update set state = excluded.state, updated_at = now()""",
            key,
            state,
        )

    async def conversation_data(self, key: str) -> dict[str, Any]:
        data = await self.pool.fetchval("select data from bot_fsm where key = $1", key)
        return dict(data or {})

    async def set_conversation_data(self, key: str, data: dict[str, Any]) -> None:
        await self.pool.execute(
            """insert into bot_fsm (key, data) values ($1, $2)
               on conflict (key) do update set data = excluded.data, updated_at = now()""",
            key,
            data,
        )

    async def update_conversation_data(self, key: str, data: dict[str, Any]) -> dict[str, Any]:
        merged = await self.pool.fetchval(
            """insert into bot_fsm (key, data) values ($1, $2)
               on conflict (key) do update set data = bot_fsm.data || excluded.data,
                                               updated_at = now()
               returning data""",
            key,
            data,
        )
        return dict(merged)

    # --------------------------------------------------------------- strangers

    async def stranger_seen(self, user_id: int) -> bool:
        """Record a message from someone who is not an operator; True the first time ever."""
        return bool(
            await self.pool.fetchval(
                """insert into bot_strangers (user_id) values ($1)
                   on conflict (user_id) do update set last_seen = now(),
                       attempts = bot_strangers.attempts + 1
                   returning attempts = 1""",
                user_id,
            )
        )

    # ------------------------------------------------------------ digest runs

    async def claim_digest(self, day: date, worker: str) -> bool:
        """Take the digest of `day` for this process; False when another has it or sent it."""
        return await self.pool.fetchval(_CLAIM_DIGEST, day, worker) is not None

    async def digest_failed(self, day: date) -> None:
        """Let another tick (or process) try the day again at once."""
        await self.pool.execute(
            "update digest_runs set claimed_at = now() - interval '1 hour'"
            " where day = $1 and sent_at is null",
            day,
        )

    async def digest_sent(self, day: date) -> None:
        await self.pool.execute("update digest_runs set sent_at = now() where day = $1", day)
