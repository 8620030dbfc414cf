"""Domain vocabulary: lanes, statuses, priorities, actors, tasks and events."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict


class Lane(StrEnum):
    TRIAGE = "requires_triage"
    DECISION = "requires_decision"
    INVESTIGATION = "requires_investigation"
    AUTONOMOUS = "autonomous_safe"

    @property
    def short(self) -> str:
        """The lane's one-word name, used in every text, button and table."""
        return LANE_LABELS[self]


AGENT_LANES = (Lane.AUTONOMOUS, Lane.INVESTIGATION)
# The one map of lane names shown to people (CLI tables, bot texts and buttons).
LANE_LABELS = {
    Lane.TRIAGE: "triage",
    Lane.DECISION: "decision",
    Lane.INVESTIGATION: "investigation",
    Lane.AUTONOMOUS: "autonomous",
}
_LANE_ALIASES = {
    **{label: lane for lane, label in LANE_LABELS.items()},
    "decide": Lane.DECISION,
    "investigate": Lane.INVESTIGATION,
    "auto": Lane.AUTONOMOUS,
    "safe": Lane.AUTONOMOUS,
}


E = TypeVar("E", bound=StrEnum)


def _named(value: str, enum: type[E], aliases: Mapping[str, E]) -> E | None:
    """`value` as a member of `enum`: its value or an alias, in any case, with spaces or dashes
    for underscores."""
    v = re.sub(r"[\s-]+", "_", value.strip().lower())
    try:
        return enum(v)
    except ValueError:
        return aliases.get(v)


def parse_lane(value: str | Lane) -> Lane:
    if isinstance(value, Lane):
        return value
    lane = _named(value, Lane, _LANE_ALIASES)
    if lane is None:
        known = ", ".join(f"{m.value} ({m.short})" for m in Lane)
        raise ValueError(f"unknown lane {value!r}; lanes are: {known}")
    return lane


class Status(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLAIMED = "claimed"
    DONE = "done"
    REJECTED = "rejected"


_STATUS_ALIASES = {
    "todo": Status.OPEN,
    "approved": Status.OPEN,
    "in_progress": Status.CLAIMED,
    "doing": Status.CLAIMED,
    "closed": Status.DONE,
    "complete": Status.DONE,
    "completed": Status.DONE,
}


def parse_status(value: str | Status) -> Status:
    if isinstance(value, Status):
        return value
    status = _named(value, Status, _STATUS_ALIASES)
    if status is None:
        known = ", ".join(s.value for s in Status)
        raise ValueError(f"unknown status {value!r}; statuses are: {known}")
    return status


_PRIORITY_WORDS = {"critical": 0, "urgent": 0, "high": 1, "medium": 2, "normal": 2, "low": 3}


def parse_priority(value: str | int) -> int:
    if isinstance(value, bool):
        raise ValueError("priority must be P0, P1, P2 or P3")
    if isinstance(value, int):
        n = value
    else:
        v = value.strip().lower()
        if v in _PRIORITY_WORDS:
            return _PRIORITY_WORDS[v]
        m = re.fullmatch(r"p?([0-9]+)", v)
        if not m:
            raise ValueError(f"priority must be P0, P1, P2 or P3 (got {value!r})")
        n = int(m.group(1))
    if not 0 <= n <= 3:
        raise ValueError(f"priority must be P0, P1, P2 or P3 (got {value!r})")
    return n


# The one lease rule: OB_LEASE_TTL and every lease an agent asks for lie in this range.
MIN_LEASE_SECONDS = 10
MAX_LEASE_SECONDS = 86_400
MAX_EPOCH = 2**62
# The one bound on a request that waits: a claim for work, a question for its answer (seconds).
MAX_WAIT_SECONDS = 60

ActorKind = Literal["operator", "agent", "system", "git"]


class Actor(BaseModel):
    """Who made a change. Operators act from the CLI or the bot; agents through the gateway."""

    model_config = ConfigDict(frozen=True)

    kind: ActorKind
    name: str = ""
    agent_id: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"

    @classmethod
    def operator(cls, name: str = "") -> Actor:
        return cls(kind="operator", name=name)

    @classmethod
    def agent(cls, name: str, agent_id: int) -> Actor:
        return cls(kind="agent", name=name, agent_id=agent_id)


SYSTEM = Actor(kind="system")


class EventKind(StrEnum):
    """Every kind of entry in the append-only event log (checked by the database, 004)."""

    FILED = "filed"
    APPROVED = "approved"
    REJECTED = "rejected"
    LANE_CHANGED = "lane_changed"
    EDITED = "edited"
    DEP_ADDED = "dep_added"
    DEP_REMOVED = "dep_removed"
    CLAIMED = "claimed"
    HEARTBEAT = "heartbeat"
    RELEASED = "released"
    EXPIRED = "expired"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    COMPLETED = "completed"
    FINDINGS = "findings"
    HANDED_OFF = "handed_off"
    UNBLOCKED = "unblocked"
    LEASE_REVOKED = "lease_revoked"
    AGENT_ADDED = "agent_added"
    AGENT_REVOKED = "agent_revoked"
    REPO_ADDED = "repo_added"
    REPO_MOVED = "repo_moved"
    COMMIT_LINKED = "commit_linked"
    CLOSED_BY_COMMIT = "closed_by_commit"
    CLOSED_WHILE_CLAIMED = "closed_while_claimed"
    VERIFIED = "verified"
    HISTORY_REWRITTEN = "history_rewritten"
    REPLANNED = "replanned"
    EVIDENCE_LOST = "evidence_lost"
    PLAN_BASE_LOST = "plan_base_lost"
    DEFAULT_BRANCH_CHANGED = "default_branch_changed"
    REPO_BRANCH_SET = "repo_branch_set"
    REPO_SKIPPED = "repo_skipped"
    REPO_FETCH_SET = "repo_fetch_set"  # fetching a repo's remote turned on or off
    CROSS_REPO_IGNORED = (
        "cross_repo_ignored"  # the operator: another repo's commit does not close it
    )
    REOPENED = "reopened"
    PREREQUISITE_REJECTED = "prerequisite_rejected"
    AGENT_ROTATED = "agent_rotated"
    REPO_REMOVED = "repo_removed"
    QUESTION_ASKED = "question_asked"
    QUESTION_ANSWERED = "question_answered"
    QUESTION_LEFT_OPEN = "question_left_open"  # the lease ended with it open: to the operator


class OutboxKind(StrEnum):
    """Every kind of notice core asks the operator's chat to show (checked by the database)."""

    DRAFT_FILED = "draft_filed"  # an agent's draft: an approval card
    TASK_DECIDED = "task_decided"  # approved or rejected: the task's cards show the outcome
    LANE_CHANGED = "lane_changed"  # moved between lanes: the task's cards show the move
    TASK_COMPLETED = "task_completed"
    HANDOFF = "handoff"
    LEASE_EXPIRED = "lease_expired"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    FINDINGS_REPORTED = "findings_reported"
    TASK_UNBLOCKED = "task_unblocked"
    TASK_CLOSED_BY_COMMIT = "task_closed_by_commit"
    CLOSED_WHILE_CLAIMED = "closed_while_claimed"
    TASK_VERIFIED = "task_verified"
    EVIDENCE_LOST = "evidence_lost"  # a done task's evidence was reverted or left the branch
    DEFAULT_BRANCH_CHANGED = "default_branch_changed"  # about a repo, not a task
    TODO_IMPORTED = "todo_imported"  # many drafts at once: one notice instead of many cards
    TASK_EDITED = "task_edited"  # spec fields changed: the task's cards show it as it is now
    CROSS_REPO_CLOSE = "cross_repo_close"  # another repo's commit says it closes: [Close it]?
    TASK_REOPENED = "task_reopened"  # done -> open or rejected -> draft: its cards show it again
    PREREQUISITE_REJECTED = "prerequisite_rejected"  # a waiting task goes back to the operator
    QUESTION_ASKED = "question_asked"  # a card with one button per option; a reply answers
    QUESTION_ANSWERED = "question_answered"  # the question's cards show the answer
    QUESTION_LEFT_OPEN = "question_left_open"  # its lease ended: the task waits in decision


def format_key(prefix: str, number: int) -> str:
    """The one way to write a task key: `OB-12`."""
    return f"{prefix}-{number}"


KEY_RE = re.compile(r"^(?:([A-Za-z][A-Za-z0-9]{0,9})-)?(\d{1,12})$")


def parse_key(key: str, prefix: str) -> int | None:
    """`OB-12`, `ob-12` or `12` -> 12; None when it is not a key with this prefix."""
    m = KEY_RE.match(key.strip())
    if not m:
        return None
    if m.group(1) and m.group(1).upper() != prefix:
        return None
    return int(m.group(2))


class Task(BaseModel):
    key: str
    number: int
    title: str
    repo: str | None
    status: Status
    status_at: datetime
    # the status as the person wrote it (a TODO.md or a spec's status line), kept and shown
    status_word: str | None = None
    status_date: date | None = None
    status_reason: str | None = None
    lane: Lane | None
    priority: int
    trigger: str | None
    trigger_on: date | None
    steps: list[str]
    risks: list[str]
    notes: str
    findings: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    approved_lane: Lane | None
    rejected_by: str | None
    rejected_reason: str | None
    lease_holder: str | None
    lease_expires_at: datetime | None
    epoch: int
    expiries: int
    blocked_by: list[str]
    completed_by: str | None
    completed_at: datetime | None
    commits: list[str]
    completion_note: str | None
    verified_at: datetime | None
    base_sha: str | None
    # a draft's likely duplicate: an unfinished, recently done or rejected task of the same title
    duplicate_of: str | None = None
    # True on the answer to a retried write (complete, findings, release, hand-off) that had
    # already happened: the same agent, epoch and payload, whose first answer was lost.
    replayed: bool = False
    # On the answer to the holder's completion after a commit closed the task under its lease:
    # that commit (the note and commits were recorded; the lease had ended).
    already_closed_by: str | None = None

    @property
    def blocked(self) -> bool:
        return bool(self.blocked_by) and self.status in (Status.OPEN, Status.DRAFT)

    @property
    def display_status(self) -> str:
        return "blocked" if self.blocked else self.status.value

    def snoozed(self, today: date) -> bool:
        """Unfinished, with a trigger date after `today`: out of the drains and agents' claims
        until that day."""
        return (
            self.trigger_on is not None
            and self.trigger_on > today
            and self.status in (Status.DRAFT, Status.OPEN)
        )


class Event(BaseModel):
    id: int
    task_key: str | None
    at: datetime
    actor: str
    kind: EventKind
    details: dict[str, Any]
