"""Typed callback data: every button carries an Enum action (one handler per action) and packs
well under Telegram's 64-byte limit. Data that does not unpack (forged, or from an old version)
matches no handler and gets the fallback's answer."""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData

from core.models import Lane
from core.shaping import Later


class CardAction(StrEnum):
    APPROVE = "ok"  # a draft into `lane`
    MOVE = "mv"  # an approved task to `lane`
    REJECT = "rj"  # a draft (on an approval card)
    REJECT_WITH_REASON = "rr"  # a draft, asking why
    DROP = "dp"  # an approved, unfinished task (on a task card)
    EDIT = "ed"
    REOPEN = "ro"  # a done task (open again) or a rejected one (a draft again)
    DUPLICATE = "du"  # reject a draft as a duplicate of the task it likely repeats


class CardCB(CallbackData, prefix="c"):
    """A button on a task card."""

    action: CardAction
    number: int
    lane: Lane | None = None


class CaptureAction(StrEnum):
    SAVE = "sv"  # into `lane` (every idea of the preview)
    EDIT = "ed"
    DISCARD = "dc"
    REVIEW = "rv"  # several ideas: one preview each, decided one by one


class CaptureCB(CallbackData, prefix="p"):
    """A button on a capture's preview (one idea, or several)."""

    action: CaptureAction
    capture: int
    lane: Lane | None = None


class NewAction(StrEnum):
    REPO = "repo"  # the repo offered at `index` (-1: no repo)
    SKIP = "skip"
    DONE = "done"
    LANE = "lane"
    SAVE = "save"
    CANCEL = "cancel"


class NewCB(CallbackData, prefix="n"):
    """A button of the /new conversation."""

    action: NewAction
    index: int = 0
    lane: Lane | None = None


class DrainMode(StrEnum):
    INBOX = "inbox"
    TRIAGE = "triage"
    DECIDE = "decide"


class DrainAction(StrEnum):
    APPROVE = "ok"
    MOVE = "mv"
    REJECT = "rj"
    DUPLICATE = "du"  # reject the draft as a duplicate of the task it likely repeats
    SKIP = "skip"
    STOP = "stop"


class DrainCB(CallbackData, prefix="d"):
    """A button on the current card of a drain mode."""

    mode: DrainMode
    action: DrainAction
    number: int
    lane: Lane | None = None


class Shape(StrEnum):
    """One-tap shaping of an open task in the operator's lanes: a priority, or a snooze."""

    P0 = "p0"
    P1 = "p1"
    P2 = "p2"
    P3 = "p3"
    TOMORROW = "tm"
    NEXT_WEEK = "nw"


PRIORITIES = {Shape.P0: 0, Shape.P1: 1, Shape.P2: 2, Shape.P3: 3}
SNOOZES = {Shape.TOMORROW: Later.TOMORROW, Shape.NEXT_WEEK: Later.NEXT_WEEK}


class ShapeCB(CallbackData, prefix="s"):
    """A shaping button on a task card or (with `mode`) on a drain mode's current card."""

    shape: Shape
    number: int
    mode: DrainMode | None = None


class RepoCB(CallbackData, prefix="r"):
    """The repo for a document's specs: the one offered at `index` (-1: no repo)."""

    capture: int
    index: int


class DigestCB(CallbackData, prefix="g"):
    """A digest button that starts a drain mode."""

    mode: DrainMode


class CrossRepoAction(StrEnum):
    CLOSE = "cl"
    IGNORE = "ig"


class CrossRepoCB(CallbackData, prefix="x"):
    """An answer to "another repo's commit says it closes this task" (the question's id)."""

    action: CrossRepoAction
    ask: int


class QuestionCB(CallbackData, prefix="q"):
    """An option of an agent's question (`option`: its number, from 1), on the question's card
    or (with `mode`) on a drain mode's current card."""

    question: int
    option: int
    mode: DrainMode | None = None
