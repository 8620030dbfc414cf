"""Inline keyboards. Every button's callback data is a typed factory, packed under 64 bytes."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import CODE_OF, CaptureCB, CardCB, DigestCB, DrainCB, NewCB
from core.models import Lane, Status, Task

LANE_LABEL = {
    Lane.TRIAGE: "triage",
    Lane.DECISION: "decision",
    Lane.INVESTIGATION: "investigate",
    Lane.AUTONOMOUS: "autonomous",
}


def _b(text: str, data: str) -> InlineKeyboardButton:
    assert len(data.encode()) <= 64, data
    return InlineKeyboardButton(text=text, callback_data=data)


def approval(number: int) -> InlineKeyboardMarkup:
    rows = [
        [
            _b(f"✅ {LANE_LABEL[lane]}", CardCB(a="ok", n=number, l=CODE_OF[lane]).pack())
            for lane in pair
        ]
        for pair in ((Lane.AUTONOMOUS, Lane.INVESTIGATION), (Lane.TRIAGE, Lane.DECISION))
    ]
    rows.append(
        [
            _b("✏️ Edit", CardCB(a="ed", n=number).pack()),
            _b("❌ Reject", CardCB(a="rj", n=number).pack()),
            _b("❌ + reason", CardCB(a="rr", n=number).pack()),
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def task_actions(task: Task) -> InlineKeyboardMarkup | None:
    if task.status == Status.DRAFT:
        return approval(task.number)
    if task.status not in (Status.OPEN, Status.CLAIMED):
        return None
    kb = InlineKeyboardBuilder()
    for lane in Lane:
        if lane != task.lane:
            kb.add(
                _b(f"→ {LANE_LABEL[lane]}", CardCB(a="mv", n=task.number, l=CODE_OF[lane]).pack())
            )
    kb.add(_b("✏️ Edit", CardCB(a="ed", n=task.number).pack()))
    kb.add(_b("❌ Reject", CardCB(a="rj", n=task.number).pack()))
    kb.adjust(3, 2)
    return kb.as_markup()


def capture(capture_id: int, default: Lane | None) -> InlineKeyboardMarkup:
    rows = []
    for pair in ((Lane.TRIAGE, Lane.DECISION), (Lane.INVESTIGATION, Lane.AUTONOMOUS)):
        rows.append(
            [
                _b(
                    ("💾 Save → " if lane == (default or Lane.TRIAGE) else "→ ") + LANE_LABEL[lane],
                    CaptureCB(a="sv", id=capture_id, l=CODE_OF[lane]).pack(),
                )
                for lane in pair
            ]
        )
    rows.append(
        [
            _b("✏️ Edit", CaptureCB(a="ed", id=capture_id).pack()),
            _b("🗑 Discard", CaptureCB(a="dc", id=capture_id).pack()),
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def repos(names: list[str]) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for i, name in enumerate(names[:24]):
        kb.add(_b(name[:40], NewCB(a="repo", i=i).pack()))
    kb.add(_b("no repo", NewCB(a="repo", i=-1).pack()))
    kb.adjust(2)
    return kb.as_markup()


def skip() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[_b("Skip", NewCB(a="skip").pack())]])


def done() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[_b("Done ✔", NewCB(a="done").pack())]])


def new_lanes() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for lane in Lane:
        kb.add(_b(LANE_LABEL[lane], NewCB(a="lane", l=CODE_OF[lane]).pack()))
    kb.adjust(2)
    return kb.as_markup()


def confirm() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [_b("💾 Save", NewCB(a="save").pack()), _b("Cancel", NewCB(a="cancel").pack())]
        ]
    )


def drain(mode: str, task: Task) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    act = "ok" if task.status == Status.DRAFT else "mv"
    for lane in Lane:
        if lane != task.lane or act == "ok":
            label = ("✅ " if act == "ok" else "→ ") + LANE_LABEL[lane]
            kb.add(_b(label, DrainCB(m=mode, a=act, n=task.number, l=CODE_OF[lane]).pack()))
    kb.add(_b("❌ Reject", DrainCB(m=mode, a="rj", n=task.number).pack()))
    kb.add(_b("⏭ Skip", DrainCB(m=mode, a="skip", n=task.number).pack()))
    kb.add(_b("⏹ Stop", DrainCB(m=mode, a="stop", n=task.number).pack()))
    kb.adjust(2, 2, 3)
    return kb.as_markup()


def digest() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                _b("📥 Inbox", DigestCB(m="inbox").pack()),
                _b("🔎 Triage", DigestCB(m="triage").pack()),
                _b("⚖️ Decide", DigestCB(m="decide").pack()),
            ]
        ]
    )
