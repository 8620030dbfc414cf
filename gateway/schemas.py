"""Request and response bodies of the agent gateway."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.leases import Lease
from core.models import MAX_EPOCH, MAX_LEASE_SECONDS, MIN_LEASE_SECONDS
from core.questions import MAX_OPTION, MAX_OPTIONS, MAX_QUESTION
from core.spec import MAX_SPEC_BYTES, REPO_RE, Spec, make_spec, parse
from core.waiting import MAX_WAIT

# Inputs shared by the REST API and the MCP tools, so both validate alike.
RepoName = Annotated[
    str, Field(pattern=REPO_RE.pattern, max_length=100, description="A repository name")
]
KEY_PATTERN = r"^[A-Za-z0-9-]+$"
Key = Annotated[str, Field(max_length=40, pattern=KEY_PATTERN, description="Task key, e.g. OB-12")]
Epoch = Annotated[
    int, Field(strict=True, ge=1, le=MAX_EPOCH, description="The epoch your claim returned")
]
LeaseSeconds = Annotated[
    int,
    Field(
        strict=True,
        ge=MIN_LEASE_SECONDS,
        le=MAX_LEASE_SECONDS,
        description="Lease length in seconds (default OB_LEASE_TTL)",
    ),
]
Reason = Annotated[str, Field(max_length=1000, description="Why, in a sentence")]
Note = Annotated[str, Field(max_length=4000)]
FindingsText = Annotated[str, Field(min_length=1, max_length=20_000)]
Commits = Annotated[list[str], Field(max_length=50, description="Commit SHAs")]
WaitSeconds = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=MAX_WAIT,
        description=f"Seconds to wait (at most {MAX_WAIT}; then ask again)",
    ),
]
QuestionText = Annotated[
    str, Field(min_length=1, max_length=MAX_QUESTION, description="The question, in a sentence")
]
Options = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=MAX_OPTION)]],
    Field(
        max_length=MAX_OPTIONS,
        description="The answers you expect, one button each (the operator may also reply "
        "in free text)",
    ),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpecInput(Body):
    """A spec, either in the text form (`text`) or as fields (`spec`)."""

    text: str | None = Field(None, max_length=MAX_SPEC_BYTES, description="The spec text form.")
    spec: dict[str, Any] | None = Field(None, description="Spec fields (title, repo, steps, ...).")

    @model_validator(mode="after")
    def _one(self) -> SpecInput:
        if (self.text is None) == (self.spec is None):
            raise ValueError("give exactly one of `text` (the spec text form) or `spec` (fields)")
        return self

    def to_spec(self) -> Spec:
        return parse(self.text) if self.text is not None else make_spec(**(self.spec or {}))


class ClaimRequest(Body):
    repos: list[RepoName] | None = Field(
        None, max_length=200, description="Only take tasks in these repositories."
    )
    lease_seconds: LeaseSeconds | None = None
    wait_seconds: WaitSeconds = Field(
        0,
        description="With nothing ready, hold the request up to this many seconds and answer "
        "as soon as a task becomes ready for you (0: answer at once).",
    )


class ClaimResponse(BaseModel):
    lease: Lease | None
    message: str


class Fenced(Body):
    epoch: Epoch


class HeartbeatRequest(Fenced):
    lease_seconds: LeaseSeconds | None = None


class ReleaseRequest(Fenced):
    reason: Reason | None = None


class CompleteRequest(Fenced):
    commits: Commits = []
    note: Note | None = None


class FindingsRequest(Fenced):
    text: FindingsText


class AskRequest(Fenced):
    text: QuestionText
    options: Options = []


class HandoffRequest(Fenced):
    prerequisite: SpecInput
    reason: Reason | None = None


class Problem(BaseModel):
    error: str
    message: str
    details: dict[str, Any] = {}
