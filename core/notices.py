"""What core tells the operator: one payload model per outbox kind, the one source of each
payload's shape.

The statements that change state write these payloads (as JSON) into the outbox in the same
transaction; the bot reads them back through `parse_payload` and renders each kind with its
own function, which also gets the task as it is now (its title, repo, lane, status). So a
payload names its task (`key`, which `ob outbox` lists) and otherwise holds only the facts of
the event: who, the decision, the lanes moved between, commits, the note, a reason, the other
task's key. A payload says what happened at the time; the task itself may have moved on.

Core builds a payload from its model wherever Python knows the facts (`events.record` takes the
model). A few set-based statements build theirs in SQL (`jsonb_build_object`: lease expiries,
completions, closes by commit, verification, unblocking, the questions a lease leaves open);
tests/test_notices.py drives every path that writes outbox rows and validates every row against
its model. Models refuse fields they do not name, so a renamed field fails loudly instead of
reading as None.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models import Lane, OutboxKind, Status


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        """The payload as the outbox stores it (JSON; `from` and `to` as written)."""
        return self.model_dump(mode="json", by_alias=True)


class TaskPayload(Payload):
    """A notice about one task (the outbox row names it too)."""

    key: str


class DraftFiled(TaskPayload):
    by: str
    prerequisite_of: str | None = None  # filed by a hand-off: the task that waits for it


class TaskDecided(TaskPayload):
    by: str
    decision: Literal["approved", "rejected"]
    lane: Lane | None = None  # approved into
    reason: str | None = None  # rejected because


class LaneChanged(TaskPayload):
    by: str
    from_lane: Lane | None = Field(None, alias="from")
    to_lane: Lane = Field(alias="to")
    lease_revoked: bool = False


class TaskEdited(TaskPayload):
    by: str
    fields: list[str]  # the spec fields that changed


class TaskReopened(TaskPayload):
    by: str
    from_status: Status = Field(alias="from")  # done | rejected
    to_status: Status = Field(alias="to")  # open | draft
    reason: str | None = None


class TaskCompleted(TaskPayload):
    by: str
    commits: list[str]
    note: str | None = None
    verified: bool
    closed_by: str | None = None  # the holder's report after this commit had closed the task


class Handoff(TaskPayload):
    by: str
    epoch: int  # the lease it gave back
    prerequisite: str
    prerequisite_title: str
    prerequisite_status: Status
    reason: str | None = None


class PrerequisiteRejected(TaskPayload):
    by: str
    prerequisite: str
    prerequisite_title: str
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
    confirmed_by: str | None = None  # another repo's commit: the operator confirmed it closes


class ClosedWhileClaimed(TaskPayload):
    holder: str | None = None
    sha: str
    repo: str


class CrossRepoClose(TaskPayload):
    """A commit of one repo says it closes a task of another: the operator decides."""

    repo: str  # the commit's repo
    sha: str
    agent: str | None = None
    author: str | None = None
    subject: str | None = None
    ask: int  # the question's id, for the [Close it] / [Ignore] buttons


class TaskVerified(TaskPayload):
    repo: str | None = None
    commits: list[str]
    by: str | None = None
    replaced: list[str] | None = None  # evidence that had been lost, replaced by a new commit


class EvidenceLost(TaskPayload):
    repo: str
    branch: str
    reason: Literal["reverted", "left_default_branch"]
    commits: list[str]
    reverted_by: str | None = None


class DefaultBranchChanged(Payload):
    repo: str
    from_branch: str | None = Field(None, alias="from")
    to_branch: str = Field(alias="to")


class TodoImported(Payload):
    path: str
    count: int
    by: str
    first: str
    last: str


class QuestionAsked(TaskPayload):
    id: int
    text: str
    options: list[str]
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
