"""Conversation state with named fields: each conversation keeps one pydantic model in the FSM
data (stored in PostgreSQL by bot.storage), under its own slot."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from pydantic import BaseModel, ValidationError

from bot.callbacks import DrainMode
from core.models import Lane, format_key

M = TypeVar("M", bound=BaseModel)
LAST_SEEN = "prompt_seen_at"  # when the open prompt was last asked or answered (ISO time)


class Slot(Generic[M]):
    """One model in the FSM data; an unreadable value (an older version's) reads as None."""

    def __init__(self, name: str, model: type[M]):
        self.name = name
        self.model = model

    async def get(self, state: FSMContext) -> M | None:
        return self.read(await state.get_data())

    def read(self, data: dict[str, Any]) -> M | None:
        raw = data.get(self.name)
        if raw is None:
            return None
        try:
            return self.model.model_validate(raw)
        except ValidationError:
            return None

    async def set(self, state: FSMContext, value: M | None) -> None:
        await state.update_data({self.name: value.model_dump(mode="json") if value else None})


class NewTask(BaseModel):
    """The /new conversation so far."""

    title: str = ""
    repo: str | None = None
    offered_repos: list[str] = []
    trigger: str | None = None
    steps: list[str] = []
    risks: list[str] = []
    lane: Lane | None = None


class NewFlow(StatesGroup):
    title = State()
    repo = State()
    trigger = State()
    steps = State()
    risks = State()
    lane = State()
    confirm = State()


class TaskPrompt(BaseModel):
    """A task the next message is about (a reject reason, an edited spec)."""

    number: int


class CapturePrompt(BaseModel):
    """The capture the next message replaces."""

    capture: int


class RepoPrompt(BaseModel):
    """A document waiting for the repo its specs go to."""

    capture: int
    offered: list[str] = []


class Prompt(StatesGroup):
    reject_reason = State()
    edit_spec = State()
    edit_capture = State()
    capture_repo = State()


class PlanSession(BaseModel):
    """A /plan session: the capture its messages go into, and the message counting them."""

    capture: int
    status_message: int | None = None


class Planning(StatesGroup):
    collecting = State()


class DrainItem(BaseModel):
    """A card of a drain mode: a task, or (`question`) an agent's question about it."""

    number: int
    question: int | None = None


class Drain(BaseModel):
    """A drain mode in progress: the cards still to show, and what happened to the others."""

    mode: DrainMode
    queue: list[DrainItem]
    tally: dict[str, int] = {}

    def count(self, outcome: str) -> None:
        self.tally[outcome] = self.tally.get(outcome, 0) + 1


NEW_TASK = Slot("new_task", NewTask)
TASK_PROMPT = Slot("task_prompt", TaskPrompt)
CAPTURE_PROMPT = Slot("capture_prompt", CapturePrompt)
DRAIN = Slot("drain", Drain)
REPO_PROMPT = Slot("repo_prompt", RepoPrompt)
PLAN = Slot("plan", PlanSession)


def prompt_description(state: str, data: dict[str, Any], prefix: str) -> str:
    """What an expired conversation was waiting for, in the operator's words."""
    task = TASK_PROMPT.read(data)
    key = format_key(prefix, task.number) if task else "the task"
    if state == Prompt.edit_spec.state:
        return f"your edit of {key}"
    if state == Prompt.reject_reason.state:
        return f"the reason to reject {key}"
    if state == Prompt.edit_capture.state:
        return "your correction of a preview"
    if state.startswith(NewFlow.__name__):
        return "your /new task"
    return "the question I asked"
