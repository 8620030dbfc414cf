"""Request and response bodies of the agent gateway."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.leases import Lease
from core.spec import MAX_SPEC_BYTES, REPO_RE, Spec, make_spec, parse

RepoName = Annotated[str, Field(pattern=REPO_RE.pattern, max_length=100)]


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
    lease_seconds: int | None = Field(None, ge=5, le=86_400, description="Lease length in seconds.")


class ClaimResponse(BaseModel):
    lease: Lease | None
    message: str


class Fenced(Body):
    epoch: int = Field(..., ge=1, le=2**62, description="The epoch your claim returned.")


class HeartbeatRequest(Fenced):
    lease_seconds: int | None = Field(None, ge=5, le=86_400)


class ReleaseRequest(Fenced):
    reason: str | None = Field(None, max_length=1000)


class CompleteRequest(Fenced):
    commits: list[str] = Field(default_factory=list, max_length=50, description="Commit SHAs.")
    note: str | None = Field(None, max_length=4000)


class FindingsRequest(Fenced):
    text: str = Field(..., min_length=1, max_length=20_000)


class HandoffRequest(Fenced):
    prerequisite: SpecInput
    reason: str | None = Field(None, max_length=1000)


class Problem(BaseModel):
    error: str
    message: str
    details: dict[str, Any] = {}
