"""Typed callback data: every button carries an Enum action (one handler per action) and packs
well under Telegram's 64-byte limit. Data that does not unpack (forged, or from an old version)
matches no handler and gets the fallback's answer."""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData

from core.models import Lane


class CardAction(StrEnum):
    APPROVE = "ok"  # a draft into `lane`
    MOVE = "mv"  # an approved task to `lane`
    REJECT = "rj"  # a draft (on an approval card)
    REJECT_WITH_REASON = "rr"  # a draft, asking why
    DROP = "dp"  # an approved, unfinished task (on a task card)
    EDIT = "ed"


class CardCB(CallbackData, prefix="c"):
    """A button on a task card."""

    action: CardAction
    number: int
    lane: Lane | None = None


class CaptureAction(StrEnum):
    SAVE = "sv"  # into `lane`
    EDIT = "ed"
    DISCARD = "dc"


class CaptureCB(CallbackData, prefix="p"):
    """A button on a captured text's draft preview."""

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
    SKIP = "skip"
    STOP = "stop"


class DrainCB(CallbackData, prefix="d"):
    """A button on the current card of a drain mode."""

    mode: DrainMode
    action: DrainAction
    number: int
    lane: Lane | None = None


class DigestCB(CallbackData, prefix="g"):
    """A digest button that starts a drain mode."""

    mode: DrainMode
