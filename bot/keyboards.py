"""Inline keyboards. Every button's callback data is a typed factory, packed under 64 bytes;
lane names come from core's one map (`Lane.short`)."""

from __future__ import annotations

from collections.abc import Callable

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import (
    PRIORITIES,
    SNOOZES,
    CaptureAction,
    CaptureCB,
    CardAction,
    CardCB,
    CrossRepoAction,
    CrossRepoCB,
    DigestCB,
    DrainAction,
    DrainCB,
    DrainMode,
    NewAction,
    NewCB,
    QuestionCB,
    ShapeCB,
)
from core.models import Lane, Status, Task
from core.questions import Question

OPERATOR_LANES = (Lane.TRIAGE, Lane.DECISION)

MAX_CALLBACK_BYTES = 64


def button(text: str, data: CallbackData) -> InlineKeyboardButton:
    packed = data.pack()
    if len(packed.encode()) > MAX_CALLBACK_BYTES:
        raise ValueError(f"callback data over {MAX_CALLBACK_BYTES} bytes: {packed!r}")
    return InlineKeyboardButton(text=text, callback_data=packed)


def approval(number: int, duplicate_of: str | None = None) -> InlineKeyboardMarkup:
    """A draft's card: approve into a lane, edit, reject; a likely duplicate also offers to
    reject it as one."""
    rows = [
        [
            button(f"✅ {lane.short}", CardCB(action=CardAction.APPROVE, number=number, lane=lane))
            for lane in pair
        ]
        for pair in ((Lane.AUTONOMOUS, Lane.INVESTIGATION), (Lane.TRIAGE, Lane.DECISION))
    ]
    rows.append(
        [
            button("✏️ Edit", CardCB(action=CardAction.EDIT, number=number)),
            button("❌ Reject", CardCB(action=CardAction.REJECT, number=number)),
            button("❌ + reason", CardCB(action=CardAction.REJECT_WITH_REASON, number=number)),
        ]
    )
    if duplicate_of:
        rows.append([duplicate(duplicate_of, CardCB(action=CardAction.DUPLICATE, number=number))])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def duplicate(original: str, data: CallbackData) -> InlineKeyboardButton:
    return button(f"♊ Reject as duplicate of {original}", data)


def reopen(number: int) -> InlineKeyboardMarkup:
    """A done or rejected task's one action: undo the decision."""
    return InlineKeyboardMarkup(
        inline_keyboard=[[button("↩️ Reopen", CardCB(action=CardAction.REOPEN, number=number))]]
    )


def task_actions(task: Task) -> InlineKeyboardMarkup:
    """What the operator can do with the task now."""
    if task.status == Status.DRAFT:
        return approval(task.number, task.duplicate_of)
    if task.status not in (Status.OPEN, Status.CLAIMED):
        return reopen(task.number)
    kb = InlineKeyboardBuilder()
    for lane in Lane:
        if lane != task.lane:
            kb.add(
                button(
                    f"→ {lane.short}", CardCB(action=CardAction.MOVE, number=task.number, lane=lane)
                )
            )
    kb.add(button("✏️ Edit", CardCB(action=CardAction.EDIT, number=task.number)))
    kb.add(button("❌ Reject", CardCB(action=CardAction.DROP, number=task.number)))
    kb.adjust(3, 2)
    for row in shaping(task):
        kb.row(*row)
    return kb.as_markup()


def question_options(
    qid: int, options: list[str], mode: DrainMode | None = None
) -> list[list[InlineKeyboardButton]]:
    """One button per option of an agent's question, two to a row."""
    buttons = [
        button(f"{i}. {option[:40]}", QuestionCB(question=qid, option=i, mode=mode))
        for i, option in enumerate(options, 1)
    ]
    return [buttons[i : i + 2] for i in range(0, len(buttons), 2)]


def question(qid: int, options: list[str]) -> InlineKeyboardMarkup | None:
    rows = question_options(qid, options)
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def shaping(task: Task, mode: DrainMode | None = None) -> list[list[InlineKeyboardButton]]:
    """One-tap shaping of an open task in the operator's lanes (triage, decision): a priority
    (the current one marked) and a snooze; `mode` when the card is a drain mode's."""
    if task.status != Status.OPEN or task.lane not in OPERATOR_LANES:
        return []
    priorities = [
        button(
            ("• " if p == task.priority else "") + f"P{p}",
            ShapeCB(shape=s, number=task.number, mode=mode),
        )
        for s, p in PRIORITIES.items()
    ]
    snoozes = [
        button(f"💤 {later.label}", ShapeCB(shape=s, number=task.number, mode=mode))
        for s, later in SNOOZES.items()
    ]
    return [priorities, snoozes]


def capture(capture_id: int, default: Lane | None, ideas: int = 1) -> InlineKeyboardMarkup:
    """A preview's buttons: save (all its ideas) into a lane, edit, discard; with several
    ideas, also review them one by one."""
    save = "💾 Save → " if ideas == 1 else f"💾 Save all {ideas} → "
    rows = []
    for pair in ((Lane.TRIAGE, Lane.DECISION), (Lane.INVESTIGATION, Lane.AUTONOMOUS)):
        rows.append(
            [
                button(
                    (save if lane == (default or Lane.TRIAGE) else "→ ") + lane.short,
                    CaptureCB(action=CaptureAction.SAVE, capture=capture_id, lane=lane),
                )
                for lane in pair
            ]
        )
    last = [
        button("✏️ Edit", CaptureCB(action=CaptureAction.EDIT, capture=capture_id)),
        button("🗑 Discard", CaptureCB(action=CaptureAction.DISCARD, capture=capture_id)),
    ]
    if ideas > 1:
        last.insert(
            0, button("🔎 One by one", CaptureCB(action=CaptureAction.REVIEW, capture=capture_id))
        )
    rows.append(last)
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _new_task_repo(index: int) -> CallbackData:
    return NewCB(action=NewAction.REPO, index=index)


def repos(
    names: list[str], pick: Callable[[int], CallbackData] = _new_task_repo
) -> InlineKeyboardMarkup:
    """The repos offered, by index (-1: no repo); /new's by default."""
    kb = InlineKeyboardBuilder()
    for i, name in enumerate(names[:24]):
        kb.add(button(name[:40], pick(i)))
    kb.add(button("no repo", pick(-1)))
    kb.adjust(2)
    return kb.as_markup()


def skip() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[button("Skip", NewCB(action=NewAction.SKIP))]])


def done() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[button("Done ✔", NewCB(action=NewAction.DONE))]])


def new_lanes() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for lane in Lane:
        kb.add(button(lane.short, NewCB(action=NewAction.LANE, lane=lane)))
    kb.adjust(2)
    return kb.as_markup()


def confirm() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                button("💾 Save", NewCB(action=NewAction.SAVE)),
                button("Cancel", NewCB(action=NewAction.CANCEL)),
            ]
        ]
    )


def drain(mode: DrainMode, task: Task) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    draft = task.status == Status.DRAFT
    act = DrainAction.APPROVE if draft else DrainAction.MOVE
    for lane in Lane:
        if draft or lane != task.lane:
            label = ("✅ " if draft else "→ ") + lane.short
            kb.add(button(label, DrainCB(mode=mode, action=act, number=task.number, lane=lane)))
    for label, action in (
        ("❌ Reject", DrainAction.REJECT),
        ("⏭ Skip", DrainAction.SKIP),
        ("⏹ Stop", DrainAction.STOP),
    ):
        kb.add(button(label, DrainCB(mode=mode, action=action, number=task.number)))
    kb.adjust(2, 2, 3)
    if draft and task.duplicate_of:
        dup = DrainCB(mode=mode, action=DrainAction.DUPLICATE, number=task.number)
        kb.row(duplicate(task.duplicate_of, dup))
    for row in shaping(task, mode):
        kb.row(*row)
    return kb.as_markup()


def drain_question(mode: DrainMode, number: int, q: Question) -> InlineKeyboardMarkup:
    """An agent's question as a drain mode's card: its options, then skip and stop."""
    rows = question_options(q.id, q.options, mode)
    rows.append(
        [
            button(label, DrainCB(mode=mode, action=action, number=number))
            for label, action in (("⏭ Skip", DrainAction.SKIP), ("⏹ Stop", DrainAction.STOP))
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def digest() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                button("📥 Inbox", DigestCB(mode=DrainMode.INBOX)),
                button("🔎 Triage", DigestCB(mode=DrainMode.TRIAGE)),
                button("⚖️ Decide", DigestCB(mode=DrainMode.DECIDE)),
            ]
        ]
    )


def cross_repo(ask: int) -> InlineKeyboardMarkup:
    """[Close it] [Ignore] on a notice that another repo's commit says it closes a task."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                button("✅ Close it", CrossRepoCB(action=CrossRepoAction.CLOSE, ask=ask)),
                button("🙈 Ignore", CrossRepoCB(action=CrossRepoAction.IGNORE, ask=ask)),
            ]
        ]
    )
