"""What core tells the operator: one payload model per outbox kind.

The statements that change state write these payloads (as JSON) into the outbox in the same
transaction; the bot reads them back through `parse_payload` and renders each kind with its
own function. A payload says what happened at the time; the task itself may have moved on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.models import Lane, OutboxKind


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class TaskPayload(Payload):
    """A notice about one task (the outbox row names it too)."""

    key: str
    title: str | None = None


class DraftFiled(TaskPayload):
    by: str
    repo: str | None = None
    lane: Lane | None = None  # the lane the agent suggests
    prerequisite_of: str | None = None  # filed by a hand-off
    imported_from: str | None = None  # filed by a TODO.md import


class TaskDecided(TaskPayload):
    decision: str  # "approved" | "rejected"
    by: str
    lane: Lane | None = None
    reason: str | None = None


class LaneChanged(TaskPayload):
    by: str
    from_lane: Lane | None = Field(None, alias="from")
    to_lane: Lane = Field(alias="to")
    lease_revoked: bool = False


class TaskEdited(TaskPayload):
    by: str
    fields: list[str] = []  # the spec fields that changed


class TaskReopened(TaskPayload):
    by: str
    from_status: str = Field(alias="from")  # "done" | "rejected"
    to_status: str = Field(alias="to")  # "open" | "draft"
    reason: str | None = None


class TaskCompleted(TaskPayload):
    by: str
    repo: str | None = None
    commits: list[str] = []
    note: str | None = None
    verified: bool = False
    closed_by: str | None = None  # the holder's report after this commit had closed the task


class Handoff(TaskPayload):
    by: str
    prerequisite: str
    prerequisite_title: str | None = None
    prerequisite_status: str | None = None
    reason: str | None = None


class PrerequisiteRejected(TaskPayload):
    by: str
    prerequisite: str
    prerequisite_title: str | None = None
    reason: str | None = None
    from_lane: Lane | None = Field(None, alias="from")
    to_lane: Lane | None = Field(None, alias="to")
    lease_revoked: bool = False


class LeaseExpired(TaskPayload):
    holder: str | None = None
    expiries: int
    max_expiries: int


class FindingsReported(TaskPayload):
    by: str
    text: str


class TaskUnblocked(TaskPayload):
    prerequisite: str


class ClosedByCommit(TaskPayload):
    sha: str
    repo: str
    agent: str | None = None
    author: str | None = None
    subject: str | None = None
    held_by: str | None = None
    confirmed_by: str | None = None  # another repo's commit: the operator confirmed it closes


class ClosedWhileClaimed(TaskPayload):
    holder: str | None = None
    sha: str
    repo: str


class CrossRepoClose(TaskPayload):
    """A commit of one repo says it closes a task of another: the operator decides."""

    task_repo: str | None = None
    repo: str  # the commit's repo
    sha: str
    agent: str | None = None
    author: str | None = None
    subject: str | None = None
    ask: int  # the question's id, for the [Close it] / [Ignore] buttons


class TaskVerified(TaskPayload):
    repo: str | None = None
    commits: list[str] = []
    by: str | None = None
    replaced: list[str] | None = None  # evidence that had been lost, replaced by a new commit


class EvidenceLost(TaskPayload):
    repo: str
    branch: str | None = None
    reason: str  # "reverted" | "left_default_branch"
    commits: list[str] = []
    reverted_by: str | None = None


class DefaultBranchChanged(Payload):
    repo: str
    from_branch: str | None = Field(None, alias="from")
    to_branch: str = Field(alias="to")
    path: str | None = None


class TodoImported(Payload):
    path: str
    count: int
    by: str
    first: str
    last: str


class QuestionAsked(TaskPayload):
    id: int
    text: str
    options: list[str] = []
    asked_by: str


class QuestionAnswered(QuestionAsked):
    answer: str
    answered_by: str
    answered_at: datetime


class QuestionLeftOpen(QuestionAsked):
    """The lease ended with the question open: the task waits in requires_decision."""

    from_lane: Lane | None = Field(None, alias="from")


PAYLOADS: dict[OutboxKind, type[Payload]] = {
    OutboxKind.DRAFT_FILED: DraftFiled,
    OutboxKind.TASK_DECIDED: TaskDecided,
    OutboxKind.LANE_CHANGED: LaneChanged,
    OutboxKind.TASK_COMPLETED: TaskCompleted,
    OutboxKind.HANDOFF: Handoff,
    OutboxKind.LEASE_EXPIRED: LeaseExpired,
    OutboxKind.ATTEMPTS_EXHAUSTED: LeaseExpired,
    OutboxKind.FINDINGS_REPORTED: FindingsReported,
    OutboxKind.TASK_UNBLOCKED: TaskUnblocked,
    OutboxKind.TASK_CLOSED_BY_COMMIT: ClosedByCommit,
    OutboxKind.CLOSED_WHILE_CLAIMED: ClosedWhileClaimed,
    OutboxKind.TASK_VERIFIED: TaskVerified,
    OutboxKind.EVIDENCE_LOST: EvidenceLost,
    OutboxKind.DEFAULT_BRANCH_CHANGED: DefaultBranchChanged,
    OutboxKind.TODO_IMPORTED: TodoImported,
    OutboxKind.TASK_EDITED: TaskEdited,
    OutboxKind.CROSS_REPO_CLOSE: CrossRepoClose,
    OutboxKind.PREREQUISITE_REJECTED: PrerequisiteRejected,
    OutboxKind.TASK_REOPENED: TaskReopened,
    OutboxKind.QUESTION_ASKED: QuestionAsked,
    OutboxKind.QUESTION_ANSWERED: QuestionAnswered,
    OutboxKind.QUESTION_LEFT_OPEN: QuestionLeftOpen,
}


def parse_payload(kind: OutboxKind, payload: dict[str, Any]) -> Payload:
    return PAYLOADS[kind].model_validate(payload)
