"""What core tells the operator: one payload model per outbox kind.

The statements that change state write these payloads (as JSON) into the outbox in the same
transaction; the bot reads them back through `parse_payload` and renders each kind with its
own function. A payload says what happened at the time; the task itself may have moved on.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.models import Lane, OutboxKind


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    key: str
    title: str | None = None


class DraftFiled(Payload):
    by: str
    repo: str | None = None
    lane: Lane | None = None  # the lane the agent suggests
    prerequisite_of: str | None = None  # filed by a hand-off
    imported_from: str | None = None  # filed by a TODO.md import


class TaskDecided(Payload):
    decision: str  # "approved" | "rejected"
    by: str
    lane: Lane | None = None
    reason: str | None = None


class LaneChanged(Payload):
    by: str
    from_lane: Lane | None = Field(None, alias="from")
    to_lane: Lane = Field(alias="to")
    lease_revoked: bool = False


class TaskEdited(Payload):
    by: str
    fields: list[str] = []  # the spec fields that changed


class TaskCompleted(Payload):
    by: str
    repo: str | None = None
    commits: list[str] = []
    note: str | None = None
    verified: bool = False


class Handoff(Payload):
    by: str
    prerequisite: str
    prerequisite_title: str | None = None
    prerequisite_status: str | None = None
    reason: str | None = None


class LeaseExpired(Payload):
    holder: str | None = None
    expiries: int
    max_expiries: int


class FindingsReported(Payload):
    by: str
    text: str


class TaskUnblocked(Payload):
    prerequisite: str


class ClosedByCommit(Payload):
    sha: str
    repo: str
    agent: str | None = None
    author: str | None = None
    subject: str | None = None
    held_by: str | None = None


class ClosedWhileClaimed(Payload):
    holder: str | None = None
    sha: str
    repo: str


class TaskVerified(Payload):
    repo: str | None = None
    commits: list[str] = []
    by: str | None = None


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
    OutboxKind.TASK_EDITED: TaskEdited,
}


def parse_payload(kind: OutboxKind, payload: dict[str, Any]) -> Payload:
    return PAYLOADS[kind].model_validate(payload)
