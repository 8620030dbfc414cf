"""Typed callback data (each packs well under Telegram's 64-byte limit)."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData

from core.models import Lane

# One-letter lane codes keep callback data short; anything else is refused as forged.
LANE_CODES = {"t": Lane.TRIAGE, "d": Lane.DECISION, "i": Lane.INVESTIGATION, "a": Lane.AUTONOMOUS}
CODE_OF = {lane: code for code, lane in LANE_CODES.items()}


def lane_of(code: str) -> Lane | None:
    return LANE_CODES.get(code)


class CardCB(CallbackData, prefix="c"):
    """A task card: ok (approve into lane l), mv (move to lane l), rj (reject), rr (reject with
    a reason), ed (edit the spec)."""

    a: str
    n: int
    l: str = "-"  # noqa: E741 - one letter on purpose (64-byte limit)


class CaptureCB(CallbackData, prefix="p"):
    """A captured text preview: sv (save into lane l), ed (edit), dc (discard)."""

    a: str
    id: int
    l: str = "-"  # noqa: E741


class NewCB(CallbackData, prefix="n"):
    """The /new conversation: repo (pick repo i, -1 = none), skip, done, lane, save, cancel."""

    a: str
    i: int = 0
    l: str = "-"  # noqa: E741


class DrainCB(CallbackData, prefix="d"):
    """Drain modes: m = inbox/triage/decide; a = ok/mv/rj/skip/stop for task n."""

    m: str
    a: str
    n: int = 0
    l: str = "-"  # noqa: E741


class DigestCB(CallbackData, prefix="g"):
    """Digest buttons into the drain modes."""

    m: str


ALL = (CardCB, CaptureCB, NewCB, DrainCB, DigestCB)
