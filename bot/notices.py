"""How each outbox kind reads on the operator's phone: one render function per kind, in a
registry (a kind core emits without a renderer here is a bug a test catches)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardMarkup

from bot import keyboards, render
from bot.cards import card_kind
from bot.render import actor_label, esc
from core.botstore import CardKind
from core.models import OutboxKind, Status, Task
from core.notices import (
    ClosedByCommit,
    ClosedWhileClaimed,
    CrossRepoClose,
    DefaultBranchChanged,
    DraftFiled,
    EvidenceLost,
    FindingsReported,
    Handoff,
    LaneChanged,
    LeaseExpired,
    Payload,
    PrerequisiteRejected,
    QuestionAnswered,
    QuestionAsked,
    QuestionLeftOpen,
    TaskCompleted,
    TaskDecided,
    TaskEdited,
    TaskReopened,
    TaskUnblocked,
    TaskVerified,
    TodoImported,
    parse_payload,
)

# The kinds that edit a task's cards to show it as it is now (sent nowhere else).
CARD_UPDATES = (
    OutboxKind.TASK_DECIDED,
    OutboxKind.LANE_CHANGED,
    OutboxKind.TASK_EDITED,
    OutboxKind.TASK_REOPENED,
)


class Delivery(StrEnum):
    SEND = "send"  # a new message to every operator chat
    EDIT_CARDS = "edit_cards"  # every card of the task is edited to show it as it is now
    EDIT_QUESTION = "edit_question"  # every card of the question is edited to show the answer


@dataclass(frozen=True)
class Notice:
    text: str
    delivery: Delivery = Delivery.SEND
    markup: InlineKeyboardMarkup | None = None
    card: CardKind | None = None  # remember the sent message as a card of the task
    question: int | None = None  # remember the sent message as a card of this question
    # also show the task as it is now on its cards (a question asked, left open or answered)
    refresh_cards: bool = False


P = TypeVar("P", bound=Payload)
Renderer = Callable[[Any, Task | None, ZoneInfo], Notice]
RENDERERS: dict[OutboxKind, Renderer] = {}


def renders(*kinds: OutboxKind) -> Callable[[Callable[[P, Task, ZoneInfo], Notice]], Renderer]:
    """Register the renderer of notices about a task (the outbox row must name one)."""

    def register(fn: Callable[[P, Task, ZoneInfo], Notice]) -> Renderer:
        def render_task(p: P, task: Task | None, tz: ZoneInfo) -> Notice:
            if task is None:
                raise ValueError(f"a {kinds[0].value} notice must name a task")
            return fn(p, task, tz)

        for kind in kinds:
            RENDERERS[kind] = render_task
        return render_task

    return register


def renders_news(kind: OutboxKind) -> Callable[[Callable[[P, ZoneInfo], Notice]], Renderer]:
    """Register the renderer of a notice about no single task (a repo, an import)."""

    def register(fn: Callable[[P, ZoneInfo], Notice]) -> Renderer:
        def render_news(p: P, task: Task | None, tz: ZoneInfo) -> Notice:
            return fn(p, tz)

        RENDERERS[kind] = render_news
        return render_news

    return register


def notice_for(
    kind: OutboxKind, payload: dict[str, Any], task: Task | None, tz: ZoneInfo
) -> Notice:
    return RENDERERS[kind](parse_payload(kind, payload), task, tz)


def _head(emoji: str, task: Task, what: str) -> str:
    return f"{emoji} <b>{esc(task.key)}</b> {esc(task.title, 200)}\n{what}"


@renders(OutboxKind.DRAFT_FILED)
def draft_filed(p: DraftFiled, task: Task, tz: ZoneInfo) -> Notice:
    """An approval card; if the draft was decided before it went out, the outcome instead."""
    text = render.card(task, tz)
    if p.prerequisite_of:
        text += f"\n\n🤝 filed by a hand-off: {esc(p.prerequisite_of)} waits for it"
    if task.status != Status.DRAFT:
        return Notice(text)
    return Notice(text, markup=keyboards.task_actions(task), card=CardKind.APPROVAL)


@renders(*CARD_UPDATES)
def card_update(
    p: TaskDecided | LaneChanged | TaskEdited | TaskReopened, task: Task, tz: ZoneInfo
) -> Notice:
    """The operator decided, moved, edited or reopened the task (here, in the CLI, anywhere):
    its cards show it as it is now."""
    return Notice(render.card(task, tz), delivery=Delivery.EDIT_CARDS)


@renders(OutboxKind.TASK_COMPLETED)
def task_completed(p: TaskCompleted, task: Task, tz: ZoneInfo) -> Notice:
    if p.commits:
        shas = esc(", ".join(c[:12] for c in p.commits[:10]))
        check = (
            "verified ✔" if p.verified else "unverified until git shows it on the default branch"
        )
        evidence = f"commits <code>{shas}</code> · {check}"
    else:
        evidence = "⚠️ no commit given: nothing can verify it"
    note = f"\n<i>{esc(p.note, 1500)}</i>" if p.note else ""
    after = f" (commit <code>{esc(p.closed_by[:10])}</code> had closed it)" if p.closed_by else ""
    return Notice(
        _head("🏁", task, f"completed by {esc(actor_label(p.by))}{after}\n{evidence}{note}"),
        markup=keyboards.task_actions(task),
        card=card_kind(task),
    )


@renders(OutboxKind.HANDOFF)
def handoff(p: Handoff, task: Task, tz: ZoneInfo) -> Notice:
    status = f" ({esc(p.prerequisite_status)})" if p.prerequisite_status else ""
    reason = f"\nreason: {esc(p.reason, 500)}" if p.reason else ""
    return Notice(
        _head(
            "🤝",
            task,
            f"handed off by {esc(actor_label(p.by))}: it now waits for "
            f"<b>{esc(p.prerequisite)}</b> {esc(p.prerequisite_title, 200)}{status}{reason}",
        )
    )


@renders(OutboxKind.PREREQUISITE_REJECTED)
def prerequisite_rejected(p: PrerequisiteRejected, task: Task, tz: ZoneInfo) -> Notice:
    """A task waited on a prerequisite the operator rejected: it would wait forever."""
    reason = f" ({esc(p.reason, 300)})" if p.reason else ""
    if task.status == Status.DRAFT:
        now = "it is still a draft"
    else:
        now = "it moved to decision for you" if p.from_lane != p.to_lane else "it waits in decision"
    held = "; its lease was revoked" if p.lease_revoked else ""
    key, prereq = esc(task.key), esc(p.prerequisite)
    return Notice(
        _head(
            "⛔",
            task,
            f"its prerequisite <b>{prereq}</b> {esc(p.prerequisite_title, 200)} was rejected by "
            f"{esc(actor_label(p.by))}{reason}, so it would wait forever: {now}{held}.\n"
            f"Go on without it (<code>ob dep rm {key} {prereq}</code>), bring the prerequisite "
            f"back (<code>ob reopen {prereq}</code>) or reject {key} too.",
        ),
        markup=keyboards.task_actions(task),
        card=card_kind(task),
    )


@renders(OutboxKind.LEASE_EXPIRED)
def lease_expired(p: LeaseExpired, task: Task, tz: ZoneInfo) -> Notice:
    return Notice(
        _head(
            "⌛",
            task,
            f"the lease of {esc(actor_label(p.holder))} expired (expiry {p.expiries} of "
            f"{p.max_expiries}); any agent may claim it again",
        )
    )


@renders(OutboxKind.ATTEMPTS_EXHAUSTED)
def attempts_exhausted(p: LeaseExpired, task: Task, tz: ZoneInfo) -> Notice:
    return Notice(
        _head(
            "🛑",
            task,
            f"{p.expiries} leases expired without progress (last held by "
            f"{esc(actor_label(p.holder))}); it moved to decision for you",
        ),
        markup=keyboards.task_actions(task),
        card=card_kind(task),
    )


@renders(OutboxKind.FINDINGS_REPORTED)
def findings_reported(p: FindingsReported, task: Task, tz: ZoneInfo) -> Notice:
    return Notice(
        _head(
            "🔎",
            task,
            f"findings by {esc(actor_label(p.by))}; it waits for your decision:\n"
            f"{esc(p.text, 2500)}",
        ),
        markup=keyboards.task_actions(task),
        card=card_kind(task),
    )


@renders(OutboxKind.TASK_UNBLOCKED)
def task_unblocked(p: TaskUnblocked, task: Task, tz: ZoneInfo) -> Notice:
    return Notice(_head("🔓", task, f"is ready again: {esc(p.prerequisite)} is done"))


def _by_commit(p: ClosedByCommit | ClosedWhileClaimed) -> str:
    return f"commit <code>{esc(p.sha[:10])}</code> in {esc(p.repo)}"


@renders(OutboxKind.TASK_CLOSED_BY_COMMIT)
def closed_by_commit(p: ClosedByCommit, task: Task, tz: ZoneInfo) -> Notice:
    who = p.agent or p.author
    by = f" by {esc(who)}" if who else ""
    subject = f"\n<i>{esc(p.subject, 300)}</i>" if p.subject else ""
    confirmed = f", confirmed by {esc(actor_label(p.confirmed_by))}" if p.confirmed_by else ""
    return Notice(
        _head("🏁", task, f"closed by {_by_commit(p)}{by}{confirmed} · verified ✔{subject}"),
        markup=keyboards.task_actions(task),
        card=card_kind(task),
    )


@renders(OutboxKind.CROSS_REPO_CLOSE)
def cross_repo_close(p: CrossRepoClose, task: Task, tz: ZoneInfo) -> Notice:
    """Another repo's commit says it closes the task: nothing closed by itself; one tap."""
    who = p.agent or p.author
    by = f" by {esc(who)}" if who else ""
    subject = f"\n<i>{esc(p.subject, 300)}</i>" if p.subject else ""
    text = _head(
        "❓",
        task,
        f"commit <code>{esc(p.sha[:10])}</code> in <b>{esc(p.repo)}</b>{by} says it closes this "
        f"{esc(task.repo or '')} task{subject}\nA commit closes only its own repo's tasks: "
        "close it with that commit as evidence, or ignore it?",
    )
    if task.status not in (Status.DRAFT, Status.OPEN, Status.CLAIMED):
        return Notice(text + f"\n(it is {esc(task.status.value)} already)")
    return Notice(text, markup=keyboards.cross_repo(p.ask))


@renders(OutboxKind.CLOSED_WHILE_CLAIMED)
def closed_while_claimed(p: ClosedWhileClaimed, task: Task, tz: ZoneInfo) -> Notice:
    return Notice(
        _head(
            "⚠️",
            task,
            f"was closed by {_by_commit(p)} while {esc(actor_label(p.holder))} held it; that "
            "lease is ended, so tell the agent to stop work on it",
        )
    )


@renders(OutboxKind.TASK_VERIFIED)
def task_verified(p: TaskVerified, task: Task, tz: ZoneInfo) -> Notice:
    shas = esc(", ".join(c[:10] for c in p.commits[:10]))
    where = f" in {esc(p.repo)}" if p.repo else ""
    again = ""
    if p.replaced:
        again = f"; it replaces lost evidence {esc(', '.join(c[:10] for c in p.replaced[:5]))}"
    return Notice(
        _head(
            "✔",
            task,
            f"verified: commits <code>{shas}</code> are on the default branch{where} "
            f"(completed by {esc(actor_label(p.by))}){again}",
        )
    )


@renders(OutboxKind.EVIDENCE_LOST)
def evidence_lost(p: EvidenceLost, task: Task, tz: ZoneInfo) -> Notice:
    shas = esc(", ".join(c[:10] for c in p.commits[:5]))
    branch = esc(p.branch or "the default branch")
    if p.reason == "reverted":
        why = f"was reverted on {branch} by <code>{esc((p.reverted_by or '?')[:10])}</code>"
    else:
        why = f"left {branch} (history was rewritten)"
    return Notice(
        _head(
            "⚠️",
            task,
            f"its evidence <code>{shas}</code> in {esc(p.repo)} {why}: it stays done but is no "
            "longer verified. Reopen it if the work is undone.",
        ),
        markup=keyboards.task_actions(task),
        card=card_kind(task),
    )


@renders_news(OutboxKind.DEFAULT_BRANCH_CHANGED)
def default_branch_changed(p: DefaultBranchChanged, tz: ZoneInfo) -> Notice:
    before = f" (was {esc(p.from_branch)})" if p.from_branch else ""
    return Notice(
        f"🌿 <b>{esc(p.repo)}</b>: the default branch is now <b>{esc(p.to_branch)}</b>"
        f"{before}; ob reads and verifies against it from now on "
        f"(pin another with <code>ob repo add PATH --branch NAME</code>)"
    )


@renders_news(OutboxKind.TODO_IMPORTED)
def todo_imported(p: TodoImported, tz: ZoneInfo) -> Notice:
    return Notice(
        f"📥 <b>{p.count} drafts</b> imported from <code>{esc(p.path, 200)}</code> by "
        f"{esc(actor_label(p.by))}: <b>{esc(p.first)}</b> … <b>{esc(p.last)}</b>. /inbox walks "
        "them one by one."
    )


@renders(OutboxKind.QUESTION_ASKED)
def question_asked(p: QuestionAsked, task: Task, tz: ZoneInfo) -> Notice:
    return Notice(
        render.question(p, task.title, tz),
        markup=keyboards.question(p.id, p.options),
        question=p.id,
        refresh_cards=True,
    )


@renders(OutboxKind.QUESTION_ANSWERED)
def question_answered(p: QuestionAnswered, task: Task, tz: ZoneInfo) -> Notice:
    """Answered (here, in the CLI, anywhere): the question's cards show the answer, and the
    task's cards no longer ask it."""
    text = render.question(p, task.title, tz)
    return Notice(text, delivery=Delivery.EDIT_QUESTION, question=p.id, refresh_cards=True)


@renders(OutboxKind.QUESTION_LEFT_OPEN)
def question_left_open(p: QuestionLeftOpen, task: Task, tz: ZoneInfo) -> Notice:
    lane = p.from_lane.short if p.from_lane else "its lane"
    text = render.question(p, task.title, tz, head="⚠️") + (
        f"\n\n{esc(actor_label(p.asked_by))}'s lease ended before you answered, so the task "
        f"waits in decision. Your answer sends it back to {esc(lane)} for the next agent, "
        "with the decision in its notes."
    )
    return Notice(
        render.fit(text),
        markup=keyboards.question(p.id, p.options),
        question=p.id,
        refresh_cards=True,
    )
