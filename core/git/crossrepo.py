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

The asks still waiting (not decided, their task unfinished) are listed by `ob cross-repo` and
in the digest; the terminal decides them as the bot's buttons do (`ob cross-repo close ID`).
"""

from __future__ import annotations

import re
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from core import events
from core.backlog import require_operator
from core.deps import announce_unblocked
from core.errors import Invalid, InvalidTransition, NotFound
from core.git.closing import close_tasks
from core.models import Actor, EventKind, format_key
from core.service import Service
from core.tasks import number_for_key

_COLUMNS = """
a.id, a.task_id, a.repo_id, a.sha, a.agent, a.author_email, a.subject, a.asked_at, a.decision,
a.decided_by, a.decided_at, r.name as repo, t.number, t.title, t.repo as task_repo, t.status
"""
_FROM = "cross_repo_asks a join repos r on r.id = a.repo_id join tasks t on t.id = a.task_id"
_ASK = f"select {_COLUMNS} from {_FROM} where a.id = $1"
# Waiting for the operator: not decided, about a task still unfinished (a task finished
# otherwise needs no decision), oldest first.
_WAITING = "a.decision is null and t.status in ('draft', 'open')"
_OPEN = f"""
select {_COLUMNS}, count(*) over () as total from {_FROM}
where {_WAITING} order by a.asked_at, a.id limit $1
"""
_OPEN_OF_TASK = f"select a.id from {_FROM} where t.number = $1 and {_WAITING} order by a.id"

_ID = re.compile(r"^#?(\d{1,12})$")

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
    agent: str | None  # the agent the commit is attributed to, if any
    author_email: str | None
    asked_at: datetime
    decision: str | None  # None (not decided) | "closed" | "ignored"
    decided_by: str | None
    decided_at: datetime | None

    @property
    def by(self) -> str | None:
        return self.agent or self.author_email


class OpenAsks(BaseModel):
    """The commits that say they close another repo's task, waiting for the operator."""

    total: int
    items: list[CrossRepoAsk]


def _ask_of(row: asyncpg.Record, prefix: str) -> CrossRepoAsk:
    fields = {name: row[name] for name in CrossRepoAsk.model_fields if name != "key"}
    return CrossRepoAsk(key=format_key(prefix, row["number"]), **fields)


async def open_asks(conn: asyncpg.Connection, prefix: str, limit: int) -> OpenAsks:
    """The asks waiting for the operator's decision, oldest first (at most `limit`)."""
    rows = await conn.fetch(_OPEN, limit)
    return OpenAsks(total=rows[0]["total"] if rows else 0, items=[_ask_of(r, prefix) for r in rows])


class CrossRepo(Service):
    """The operator's answer to another repo's commit that says it closes a task."""

    async def waiting(self, limit: int = 100) -> OpenAsks:
        """What waits for the operator's decision, oldest first."""
        async with self.pool.acquire() as conn:
            return await open_asks(conn, self.prefix, limit)

    async def resolve(self, ref: str) -> int:
        """An ask's id from how the operator names it: its id (`3`, `#3`), or the key of a task
        that has one ask waiting."""
        if m := _ID.match(ref.strip()):
            return int(m.group(1))
        number = number_for_key(ref, self.prefix)
        key = format_key(self.prefix, number)
        ids = [r["id"] for r in await self.pool.fetch(_OPEN_OF_TASK, number)]
        if not ids:
            raise NotFound(
                f"{key} has no commit of another repo waiting for your decision"
                " (see `ob cross-repo`)"
            )
        if len(ids) > 1:
            listed = ", ".join(f"#{i}" for i in ids)
            raise Invalid(
                f"{key} has {len(ids)} commits of other repos waiting ({listed}); give one by "
                "its id"
            )
        return ids[0]

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
                    f"no cross-repo close #{ask_id} (see `ob cross-repo`); it may have been"
                    " removed with its repo"
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
        return _ask_of(row, self.prefix).model_copy(
            update={"decision": decision, "decided_by": str(actor), "decided_at": at}
        )
