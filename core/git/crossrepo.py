"""The operator's answer when one repo's commit says it closes another repo's task.

The reconciler closes nothing across repos (closing.py): it links the commit and asks, one
`cross_repo_asks` row per task and commit, with a notice carrying [Close it] and [Ignore]. Both
are operator actions, each decided once:

* close: the commit must still be on its repo's default branch, not reverted (git proves it
  now, or nothing closes); the task closes as a commit close does (`closed_by_commit`, verified,
  the commit as evidence, an agent holding it loses its lease) with the operator named as who
  confirmed it, and its evidence is in that repo from then on (a revert there costs the
  verification, as anywhere);
* ignore: a `cross_repo_ignored` event on the task; nothing else changes.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from core import events
from core.backlog import require_operator
from core.deps import announce_unblocked
from core.errors import Invalid, InvalidTransition, NotFound
from core.git.closing import close_tasks
from core.models import Actor, EventKind, format_key
from core.service import Service

_ASK = """
select a.id, a.task_id, a.repo_id, a.sha, a.agent, a.author_email, a.subject, a.decision,
       a.decided_by, a.decided_at, r.name as repo, t.number, t.title, t.repo as task_repo,
       t.status
from cross_repo_asks a join repos r on r.id = a.repo_id join tasks t on t.id = a.task_id
where a.id = $1
"""

_LIVE = "select reverted_by from git_commits where repo_id = $1 and sha = $2"

_DECIDED = """
update cross_repo_asks set decision = $2, decided_by = $3, decided_at = now() where id = $1
returning decided_at
"""


class CrossRepoAsk(BaseModel):
    id: int
    key: str
    title: str
    task_repo: str | None
    repo: str  # the repo of the commit
    sha: str
    subject: str
    decision: str | None  # None (not decided) | "closed" | "ignored"
    decided_by: str | None
    decided_at: datetime | None


class CrossRepo(Service):
    """The operator's answer to another repo's commit that says it closes a task."""

    async def decide(self, ask_id: int, close: bool, actor: Actor) -> CrossRepoAsk:
        """Close the task with the other repo's commit as evidence, or ignore the commit. Raises
        InvalidTransition when it was decided already (or the task is finished), Invalid when git
        no longer shows the commit on the branch."""
        require_operator(actor, "decide what another repo's commit closes")
        finished: list[int] = []
        async with self.backlog.transaction(wake=True) as conn:
            row = await conn.fetchrow(_ASK + " for update of a", ask_id)
            if row is None:
                raise NotFound(
                    f"no such question (#{ask_id}); it may have been removed with its repo"
                )
            key = format_key(self.prefix, row["number"])
            if row["decision"]:
                raise InvalidTransition(
                    f"{key}: already {row['decision']} by {row['decided_by']}", key=key
                )
            short = row["sha"][:10]
            if close:
                live = await conn.fetchrow(_LIVE, row["repo_id"], row["sha"])
                if live is None:
                    raise Invalid(
                        f"commit {short} is no longer on {row['repo']}'s default branch; nothing closed"
                    )
                if live["reverted_by"]:
                    raise Invalid(
                        f"commit {short} was reverted by {live['reverted_by'][:10]} in"
                        f" {row['repo']}; nothing closed"
                    )
                closed = await close_tasks(
                    conn,
                    self.prefix,
                    row["repo"],
                    [row],
                    evidence_repo=row["repo"],
                    confirmed_by=str(actor),
                )
                if not closed:
                    raise InvalidTransition(
                        f"{key} is {row['status']} already; nothing closed", key=key
                    )
                finished = [row["task_id"]]
            else:
                await events.record(
                    conn,
                    row["task_id"],
                    actor,
                    EventKind.CROSS_REPO_IGNORED,
                    {"sha": row["sha"], "repo": row["repo"], "subject": row["subject"]},
                )
            decision = "closed" if close else "ignored"
            at = await conn.fetchval(_DECIDED, ask_id, decision, str(actor))
        if finished:
            await announce_unblocked(self.pool, self.prefix, finished)
        return CrossRepoAsk(
            id=ask_id,
            key=key,
            title=row["title"],
            task_repo=row["task_repo"],
            repo=row["repo"],
            sha=row["sha"],
            subject=row["subject"],
            decision=decision,
            decided_by=str(actor),
            decided_at=at,
        )
