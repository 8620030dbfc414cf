"""The backlog service: filing, the approval gate, lanes, edits, views and history.

Every state change runs in one transaction with its event (and outbox row where the operator
should hear of it). Interfaces (CLI, bot, gateway) call this; none of them talks SQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC
from typing import Any

import asyncpg
from pydantic import BaseModel, computed_field

from core import events
from core.db import open_database
from core.errors import Forbidden, Invalid, InvalidTransition
from core.git.base import record_base
from core.models import Actor, Event, EventKind, Lane, OutboxKind, Status, Task, format_key
from core.notices import (
    DraftFiled,
    LaneChanged,
    PrerequisiteRejected,
    TaskDecided,
    TaskEdited,
    TaskReopened,
)
from core.settings import Settings
from core.spec import EDITABLE, WRITTEN_STATUS, Spec, SpecError, free_text, make_spec
from core.tasks import (
    REVOKE_SQL,
    STATUS_SQL,
    TaskFilter,
    count_tasks,
    fetch_task,
    list_tasks,
    no_task,
    number_for_key,
    task_id_for_key,
)
from core.todo_words import lifecycle_of

# An operator action locks the task and its lease, and sees the status as the API shows it.
_LOCKED = f"""
select t.id, t.number, {STATUS_SQL} as status, t.lane, t.created_by,
       {", ".join(f"t.{f}" for f in (*EDITABLE, *WRITTEN_STATUS))}
from tasks t join task_leases l on l.task_id = t.id where t.id = $1
for update of t, l
"""
# What an edit may change: the spec's fields and the status as written (a TODO.md import).
_EDIT_FIELDS = (*EDITABLE, *WRITTEN_STATUS)

# P0 and P1 work goes to agents unattended only when the operator names that lane.
URGENT_PRIORITY = 1

# The unfinished tasks waiting on a prerequisite, locked with their leases.
_WAITING_ON = f"""
select t.id, t.number, t.title, t.lane, {STATUS_SQL} as status, a.name as holder
from task_deps d join tasks t on t.id = d.task_id join task_leases l on l.task_id = t.id
left join agents a on a.id = l.lease_agent_id
where d.prereq_id = $1 and t.status in ('draft', 'open')
order by t.id
for update of t, l
"""

# Reopening: a done task is open again in lane $2 (else its own) with no completion (the
# `reopened` event keeps it), its expiry count starts over; one that was never approved (a draft
# closed by a commit) is a draft again. A rejected task is a draft again, undecided.
_REOPEN_DONE = """
with prev as (select * from tasks where id = $1),
lease as (update task_leases set expiries = 0 where task_id = $1)
update tasks t set
    status = case when t.approved_at is null then 'draft' else 'open' end,
    lane = coalesce($2, t.lane,
                    case when t.approved_at is not null then 'requires_triage' end),
    completed_by = null, completed_at = null,
    commits = '{}', completion_note = null, verified_at = null, evidence_lost = null,
    status_at = now(), updated_at = now()
from prev where t.id = prev.id
returning t.status, t.lane, prev.completed_by, prev.completed_at, prev.commits,
          prev.completion_note, prev.verified_at
"""
_REOPEN_REJECTED = """
with prev as (select * from tasks where id = $1)
update tasks t set status = 'draft', lane = coalesce($2, t.lane), rejected_by = null,
    rejected_reason = null, approved_by = null, approved_at = null, approved_lane = null,
    status_at = now(), updated_at = now()
from prev where t.id = prev.id
returning t.lane, prev.rejected_by, prev.rejected_reason
"""

# A draft's likely duplicate: a task of the same title (case, spaces and punctuation aside) that
# is unfinished (an earlier draft, or open), rejected, or done in the last DUPLICATE_DAYS days;
# open work first, then the earliest. Written on the draft ($1) as its number, or null.
DUPLICATE_DAYS = 30
_MARK_DUPLICATE = f"""
update tasks t set duplicate_of = (
    select d.number from (
        select d.number, d.status from tasks d
        where title_key(d.title) = title_key(t.title)
          and d.status in ('draft', 'open', 'rejected')
        union all
        select d.number, d.status from tasks d
        where d.status = 'done' and d.completed_at > now() - interval '{DUPLICATE_DAYS} days'
          and title_key(d.title) = title_key(t.title)
    ) d
    where d.number <> t.number and title_key(t.title) <> ''
      and (d.status <> 'draft' or d.number < t.number)
    order by case d.status when 'open' then 0 when 'draft' then 1 when 'rejected' then 2
             else 3 end, d.number
    limit 1)
where t.id = $1 and t.status = 'draft'
returning t.duplicate_of
"""

# A lane change gives a held task back to the queue (the holder's epoch goes stale) and starts
# its expiry count again.
_MOVE_LANE = f"""
with lease as (update task_leases set {REVOKE_SQL}, expiries = 0 where task_id = $1)
update tasks set lane = $2, status = 'open', status_at = now(), updated_at = now() where id = $1
"""


class Edited(BaseModel):
    """An edit's outcome: the task now, and each changed field as [before, after]."""

    task: Task
    changes: dict[str, list[Any]]

    def summary(self) -> str:
        """What changed, in a line: `title, priority P2 → P0, steps 1 → 3`."""
        parts = []
        for field, (before, after) in self.changes.items():
            if field == "priority":
                parts.append(f"priority P{before} → P{after}")
            elif isinstance(after, list):
                parts.append(f"{field} {len(before or [])} → {len(after)}")
            elif field in ("repo", "trigger_on", "status_word") and (before or after):
                name = "status" if field == "status_word" else field
                parts.append(f"{name} {before or '-'} → {after or '-'}")
            elif field in WRITTEN_STATUS:
                parts.append(field.replace("_", " "))
            else:
                parts.append(field)
        return ", ".join(parts) or "nothing changed"


class HandedBack(BaseModel):
    """A task that waited on a prerequisite the operator rejected: it would wait forever, so it
    went back to the operator (to requires_decision; a draft stays a draft)."""

    key: str
    title: str
    status: Status  # now: open, or a draft still
    from_lane: Lane | None
    lane: Lane | None  # now
    lease_holder: str | None  # the agent whose lease on it ended

    @computed_field  # type: ignore[prop-decorator]
    @property
    def moved(self) -> bool:
        """It changed lanes (it was not in requires_decision already, nor a draft)."""
        return self.from_lane != self.lane


class Rejected(Task):
    """A rejected task, as `reject` answers: and the tasks waiting on it, handed back."""

    handed_back: list[HandedBack] = []


def actor_name(actor: str) -> str:
    """`agent:codex` -> `codex`; `operator:cli` -> `the operator`."""
    kind, _, name = actor.partition(":")
    return "the operator" if kind == "operator" else name or kind


def require_operator(actor: Actor, what: str) -> None:
    if not actor.is_operator:
        raise Forbidden(
            f"only the operator can {what}; agents file drafts and the operator decides",
            actor=str(actor),
        )


class Backlog:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, *, url: str | None = None):
        self.pool = pool
        self.settings = settings
        # where LISTEN connections go (they live outside the pool)
        self.url = url or settings.database_url or ""
        self.prefix = settings.key_prefix
        self._waker = events.Waker(pool)

    async def wake(self) -> None:
        """Wake the notifier after a committed change that wrote outbox rows."""
        await self._waker.wake()

    @asynccontextmanager
    async def transaction(self, *, wake: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A transaction; with `wake`, the notifier is woken once it has committed."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                yield conn
            if wake:
                await self.wake()

    async def _locked(self, conn: asyncpg.Connection, key: str) -> asyncpg.Record:
        task_id = await task_id_for_key(conn, key, self.prefix)
        row = await conn.fetchrow(_LOCKED, task_id)
        assert row is not None
        return row

    def key(self, number: int) -> str:
        """The key of task number `number` (`OB-12`)."""
        return format_key(self.prefix, number)

    def _key(self, row: asyncpg.Record) -> str:
        return self.key(row["number"])

    # ------------------------------------------------------------------ filing

    @staticmethod
    def check_new(spec: Spec) -> None:
        """A spec for a new task: it has no key yet, and its lifecycle is the approval gate's
        to decide; a status word awaiting the operator (`planned — 2026-11-20`) is kept."""
        if spec.key:
            raise Invalid("a new task has no key yet; remove the `key:` line from the spec")
        if spec.status not in (None, Status.DRAFT):
            said = spec.status_word or spec.status.value
            raise Invalid(
                f"the spec says it is {said!r}, but a new task's status is decided by the"
                " approval gate (yours are open at once, agents' are drafts): remove the status"
                " line, or give a word such as `planned` or `blocked`"
            )

    async def file(self, spec: Spec, actor: Actor, *, lane: Lane | None = None) -> Task:
        """Operator-filed tasks are open in a lane at once; anything an agent files is a draft."""
        return (await self.file_many([spec], actor, lane=lane))[0]

    async def file_many(
        self, specs: list[Spec], actor: Actor, *, lane: Lane | None = None
    ) -> list[Task]:
        """File several specs in one transaction: all of them, or (a spec refused) none."""
        for spec in specs:
            self.check_new(spec)
        async with self.transaction(wake=not actor.is_operator) as conn:
            ids = [await self.insert_task(conn, spec, actor, lane=lane) for spec in specs]
            return [await fetch_task(conn, task_id, self.prefix) for task_id in ids]

    async def insert_task(
        self,
        conn: asyncpg.Connection,
        spec: Spec,
        actor: Actor,
        *,
        lane: Lane | None = None,
        approve: bool | None = None,
        prerequisite_of: str | None = None,
    ) -> int:
        """File a task inside the caller's transaction (with its event and, for a draft, the
        approval card's outbox row); returns its id. `prerequisite_of`: filed by a hand-off, for
        the task with this key, and at least as urgent as that one."""
        approved = actor.is_operator if approve is None else approve
        lane = lane or spec.lane or (Lane.TRIAGE if approved else None)
        if prerequisite_of is not None:  # as urgent as the task it unblocks
            priority = await conn.fetchval(
                "select priority from tasks where number = $1",
                number_for_key(prerequisite_of, self.prefix),
            )
            if priority is not None and priority < spec.priority:
                spec = spec.model_copy(update={"priority": priority})
        row = await conn.fetchrow(
            """
            insert into tasks (title, repo, status, lane, priority, trigger, trigger_on, steps,
                               risks, notes, findings, created_by, approved_by, approved_at,
                               approved_lane, status_word, status_date, status_reason, status_at)
            values ($1, $2, $3, $4::text, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                    case when $13::text is null then null else now() end,
                    case when $13::text is null then null else $4::text end, $14, $15, $16,
                    coalesce($17::date::timestamptz, now()))
            returning id, number
            """,
            spec.title,
            spec.repo,
            Status.OPEN if approved else Status.DRAFT,
            lane,
            spec.priority,
            spec.trigger,
            spec.trigger_on,
            spec.steps,
            spec.risks,
            spec.notes,
            spec.findings,
            str(actor),
            str(actor) if approved else None,
            *written_status(spec).values(),
            spec.status_date,
        )
        if approved and spec.repo:  # the plan is approved against the repo's HEAD (drift)
            await record_base(conn, row["id"], spec.repo)
        details: dict[str, Any] = {
            "status": "open" if approved else "draft",
            "lane": lane.value if lane else None,
            "title": spec.title,
            "repo": spec.repo,
        }
        if prerequisite_of is not None:
            details["prerequisite_of"] = prerequisite_of
        if approved:
            await events.record(conn, row["id"], actor, EventKind.FILED, details)
            return row["id"]
        duplicate = await self._mark_duplicate(conn, row["id"])
        if duplicate:
            details["duplicate_of"] = duplicate
        card = DraftFiled(key=self._key(row), by=str(actor), prerequisite_of=prerequisite_of)
        await events.record(
            conn,
            row["id"],
            actor,
            EventKind.FILED,
            details,
            notify=OutboxKind.DRAFT_FILED,
            payload=card,
        )
        return row["id"]

    # ----------------------------------------------------------- approval gate

    async def approve(self, key: str, actor: Actor, lane: Lane | None = None) -> Task:
        require_operator(actor, "approve tasks")
        async with self.transaction(wake=True) as conn:
            row = await self._locked(conn, key)
            if row["status"] != Status.DRAFT:
                raise self._not_a_draft(row, "approve")
            lane = lane or self._suggested_lane(row)
            await conn.execute(
                """update tasks set status = 'open', lane = $2, approved_lane = $2, approved_by = $3,
                   approved_at = now(), status_at = now(), updated_at = now() where id = $1""",
                row["id"],
                lane,
                str(actor),
            )
            await record_base(conn, row["id"], row["repo"])
            await events.record(
                conn,
                row["id"],
                actor,
                EventKind.APPROVED,
                {"lane": lane.value},
                notify=OutboxKind.TASK_DECIDED,
                payload=TaskDecided(
                    key=self._key(row), by=str(actor), decision="approved", lane=lane
                ),
            )
            return await fetch_task(conn, row["id"], self.prefix)

    def _suggested_lane(self, row: asyncpg.Record) -> Lane:
        """The lane a draft goes to when the operator names none: the one its filer suggested
        (else triage), except that urgent work runs unattended only when the operator says so
        (here, or in a spec of their own, such as an imported TODO.md)."""
        if row["lane"] is None:
            return Lane.TRIAGE
        lane = Lane(row["lane"])
        operators = row["created_by"].partition(":")[0] == "operator"
        if lane == Lane.AUTONOMOUS and row["priority"] <= URGENT_PRIORITY and not operators:
            key = self._key(row)
            raise Invalid(
                f"{key} is P{row['priority']} and {actor_name(row['created_by'])} suggests "
                f"{lane.value}: name the lane yourself (`ob approve {key} --lane autonomous` "
                "to let agents run it unattended, or another lane)"
            )
        return lane

    async def reject(
        self, key: str, actor: Actor, reason: str | None = None, *, drafts_only: bool = False
    ) -> Rejected:
        """Reject a draft, or an approved unfinished task (an agent holding it loses its
        lease); `drafts_only` refuses anything but a draft (a stale approval card). The answer
        names the tasks that waited on it: each went back to the operator (`handed_back`)."""
        require_operator(actor, "reject tasks")
        reason = free_text(reason, "reason", 1000)
        async with self.transaction(wake=True) as conn:
            row = await self._locked(conn, key)
            if drafts_only and row["status"] != Status.DRAFT:
                raise self._not_a_draft(row, "reject")
            if row["status"] not in (Status.DRAFT, Status.OPEN, Status.CLAIMED):
                raise self._closed(row, "reject")
            # sql/005's trigger revokes a lease on it (the epoch grows)
            await conn.execute(
                """update tasks set status = 'rejected', rejected_reason = $2, rejected_by = $3,
                   status_at = now(), updated_at = now() where id = $1""",
                row["id"],
                reason,
                str(actor),
            )
            await events.record(
                conn,
                row["id"],
                actor,
                EventKind.REJECTED,
                {"reason": reason},
                notify=OutboxKind.TASK_DECIDED,
                payload=TaskDecided(
                    key=self._key(row), by=str(actor), decision="rejected", reason=reason
                ),
            )
            handed_back = await self._hand_back_waiting(conn, row, actor, reason)
            task = await fetch_task(conn, row["id"], self.prefix)
            return Rejected(**task.model_dump(), handed_back=handed_back)

    async def _hand_back_waiting(
        self, conn: asyncpg.Connection, prereq: asyncpg.Record, actor: Actor, reason: str | None
    ) -> list[HandedBack]:
        """The tasks waiting on a prerequisite just rejected would wait forever: each goes to
        the operator's decision lane (an agent holding one loses its lease; a draft stays a
        draft), with an event and a notice naming both. Returns them, as they are now."""
        waiting = await conn.fetch(_WAITING_ON, prereq["id"])
        handed_back = []
        for w in waiting:
            moved = w["status"] != Status.DRAFT and w["lane"] != Lane.DECISION
            if moved:
                await conn.execute(_MOVE_LANE, w["id"], Lane.DECISION)
            held = w["status"] == Status.CLAIMED
            handed_back.append(
                HandedBack(
                    key=self._key(w),
                    title=w["title"],
                    status=Status.DRAFT if w["status"] == Status.DRAFT else Status.OPEN,
                    from_lane=w["lane"],
                    lane=Lane.DECISION if moved else w["lane"],
                    lease_holder=w["holder"] if held else None,
                )
            )
            details = {
                "prerequisite": self._key(prereq),
                "reason": reason,
                "from": w["lane"],
                "to": Lane.DECISION.value if moved else w["lane"],
                "lease_revoked": held,
            }
            notice = PrerequisiteRejected(
                key=self._key(w), by=str(actor), prerequisite_title=prereq["title"], **details
            )
            await events.record(
                conn,
                w["id"],
                actor,
                EventKind.PREREQUISITE_REJECTED,
                details,
                notify=OutboxKind.PREREQUISITE_REJECTED,
                payload=notice,
            )
        return handed_back

    async def _mark_duplicate(self, conn: asyncpg.Connection, task_id: int) -> str | None:
        """Mark a draft as the likely duplicate of another task (or clear the mark); returns
        that task's key."""
        number = await conn.fetchval(_MARK_DUPLICATE, task_id)
        return self.key(number) if number is not None else None

    async def reject_duplicate(self, key: str, actor: Actor) -> Rejected:
        """Reject a draft marked as a likely duplicate, naming the task it repeats."""
        async with self.pool.acquire() as conn:
            task = await fetch_task(
                conn, await task_id_for_key(conn, key, self.prefix), self.prefix
            )
        if task.status != Status.DRAFT:
            raise InvalidTransition(f"{task.key} is {task.status}: only a draft is rejected so")
        if task.duplicate_of is None:
            raise InvalidTransition(f"{task.key} is not marked as a likely duplicate")
        return await self.reject(
            task.key, actor, f"duplicate of {task.duplicate_of}", drafts_only=True
        )

    async def move_lane(self, key: str, lane: Lane, actor: Actor) -> Task:
        require_operator(actor, "change lanes")
        async with self.transaction(wake=True) as conn:
            row = await self._locked(conn, key)
            if row["status"] == Status.DRAFT:
                raise InvalidTransition(
                    f"{self._key(row)} is a draft; approve it into a lane instead "
                    f"(`ob approve {self._key(row)} --lane {lane.short}`)"
                )
            if row["status"] not in (Status.OPEN, Status.CLAIMED):
                raise self._closed(row, "move")
            if row["lane"] == lane:
                raise InvalidTransition(f"{self._key(row)} is already in {lane.value}")
            await conn.execute(_MOVE_LANE, row["id"], lane)
            details = {"from": row["lane"], "to": lane.value}
            if row["status"] == Status.CLAIMED:
                details["lease_revoked"] = True
            await events.record(
                conn,
                row["id"],
                actor,
                EventKind.LANE_CHANGED,
                details,
                notify=OutboxKind.LANE_CHANGED,
                payload=LaneChanged(key=self._key(row), by=str(actor), **details),
            )
            return await fetch_task(conn, row["id"], self.prefix)

    async def reopen(
        self, key: str, actor: Actor, reason: str | None = None, *, lane: Lane | None = None
    ) -> Task:
        """Undo a decision: a done task is open again (in its lane, or `lane`), a rejected one
        is a draft again (to be approved anew). What it was (the completion and its evidence,
        or the rejection) stays in the history, in the `reopened` event; its cards show it as
        it is now."""
        require_operator(actor, "reopen tasks")
        reason = free_text(reason, "reason", 1000)
        async with self.transaction(wake=True) as conn:
            row = await self._locked(conn, key)
            if row["status"] == Status.DONE:
                before = await conn.fetchrow(_REOPEN_DONE, row["id"], lane)
                details: dict[str, Any] = {
                    "from": Status.DONE.value,
                    "to": before["status"],
                    "lane": before["lane"],
                    "completed_by": before["completed_by"],
                    "completed_at": _jsonable(before["completed_at"]),
                    "commits": list(before["commits"]),
                    "note": before["completion_note"],
                    "verified": before["verified_at"] is not None,
                }
            elif row["status"] == Status.REJECTED:
                before = await conn.fetchrow(_REOPEN_REJECTED, row["id"], lane)
                await self._mark_duplicate(conn, row["id"])
                details = {
                    "from": Status.REJECTED.value,
                    "to": Status.DRAFT.value,
                    "lane": before["lane"],
                    "rejected_by": before["rejected_by"],
                    "rejected_reason": before["rejected_reason"],
                }
            else:
                raise InvalidTransition(
                    f"cannot reopen {self._key(row)}: it is {row['status']}; only done and "
                    "rejected tasks reopen",
                    status=row["status"],
                )
            details["reason"] = reason
            notice = TaskReopened(
                key=self._key(row),
                by=str(actor),
                from_status=details["from"],
                to_status=details["to"],
                reason=reason,
            )
            await events.record(
                conn,
                row["id"],
                actor,
                EventKind.REOPENED,
                details,
                notify=OutboxKind.TASK_REOPENED,
                payload=notice,
            )
            return await fetch_task(conn, row["id"], self.prefix)

    def _not_a_draft(self, row: asyncpg.Record, verb: str) -> InvalidTransition:
        key, status = self._key(row), row["status"]
        if status == Status.REJECTED:
            hint = "it was rejected; file it again if it is wanted after all"
        elif status in (Status.OPEN, Status.CLAIMED):
            hint = f"it is already approved into {row['lane']}; use `ob lane {key} LANE` to move it"
        else:
            hint = "it is done"
        return InvalidTransition(f"cannot {verb} {key}: {hint}", status=status)

    def _closed(self, row: asyncpg.Record, verb: str) -> InvalidTransition:
        key, status = self._key(row), row["status"]
        return InvalidTransition(
            f"cannot {verb} {key}: it is {status}; file a follow-up task instead", status=status
        )

    # ------------------------------------------------------------------ edits

    async def edit(
        self,
        key: str,
        actor: Actor,
        *,
        add_steps: list[str] | None = None,
        add_risks: list[str] | None = None,
        **changes: Any,
    ) -> Edited:
        """Change spec fields (title, repo, priority, trigger, trigger_on, steps, risks, notes,
        and the status as written), and append steps or risks; returns the task and what
        changed (field: [before, after]).
        The `edited` event's outbox row has the notifier refresh the task's cards."""
        require_operator(actor, "edit tasks")
        async with self.transaction(wake=True) as conn:
            return await self.edit_in(
                conn, key, actor, changes, add_steps=add_steps, add_risks=add_risks
            )

    async def edit_in(
        self,
        conn: asyncpg.Connection,
        key: str,
        actor: Actor,
        changes: dict[str, Any],
        details: dict[str, Any] | None = None,
        *,
        add_steps: list[str] | None = None,
        add_risks: list[str] | None = None,
    ) -> Edited:
        """An edit inside the caller's transaction; `details` go into the `edited` event (a
        TODO.md import says which file and line asked for it)."""
        require_operator(actor, "edit tasks")
        unknown = set(changes) - set(_EDIT_FIELDS)
        if unknown:
            raise Invalid(
                f"cannot edit {', '.join(sorted(unknown))}; editable fields: {', '.join(EDITABLE)}"
            )
        row = await self._locked(conn, key)
        if row["status"] not in (Status.DRAFT, Status.OPEN, Status.CLAIMED):
            raise self._closed(row, "edit")
        current = {f: row[f] for f in _EDIT_FIELDS}
        changes = dict(changes)
        for field, more in (("steps", add_steps), ("risks", add_risks)):
            if more:
                changes[field] = [*changes.get(field, current[field]), *more]
        new = make_spec(**{**current, **changes})
        after = {**{f: getattr(new, f) for f in EDITABLE}, **written_status(new)}
        diff = {
            f: [_jsonable(current[f]), _jsonable(after[f])]
            for f in _EDIT_FIELDS
            if current[f] != after[f] and not (current[f] is None and not after[f])
        }
        if diff:
            sets = ", ".join(f"{f} = ${i}" for i, f in enumerate(diff, 2))
            await conn.execute(
                f"update tasks set {sets}, updated_at = now() where id = $1",  # noqa: S608 - column names are from _EDIT_FIELDS
                row["id"],
                *(after[f] for f in diff),
            )
            if "title" in diff and row["status"] == Status.DRAFT:
                await self._mark_duplicate(conn, row["id"])
            await events.record(
                conn,
                row["id"],
                actor,
                EventKind.EDITED,
                {"changes": diff, **(details or {})},
                notify=OutboxKind.TASK_EDITED,
                payload=TaskEdited(key=self._key(row), by=str(actor), fields=list(diff)),
            )
        return Edited(task=await fetch_task(conn, row["id"], self.prefix), changes=diff)

    async def edit_from_spec(self, key: str, spec: Spec, actor: Actor) -> Edited:
        """Replace a task's spec with a text-form spec. A key line must name this task; lane and
        status lines must say what the task is (their verbs change them: the refusal says
        which); a status line other than the one `ob spec` prints is the status as written
        (`blocked 2026-11-18 — waiting for finance`, or `open` to clear it)."""
        task = await self.get(key)
        if spec.key and spec.key != task.key:
            raise Invalid(
                f"the spec is {spec.key}'s (key: {spec.key}); you are editing {task.key}: edit "
                f"{spec.key} instead, or remove the key line"
            )
        if spec.lane and spec.lane != task.lane:
            verb = (
                f"`ob approve {task.key} --lane {spec.lane.short}`"
                if task.status == Status.DRAFT
                else f"`ob lane {task.key} {spec.lane.short}`"
            )
            raise Invalid(f"an edit does not move a task: move {task.key} with {verb}")
        if spec.status and spec.status != task.status:
            raise Invalid(
                f"an edit does not change a status ({task.key} is {task.status}): "
                f"{_status_verb(task.key, spec.status)}"
            )
        changes = {f: getattr(spec, f) for f in EDITABLE}
        written = written_status(spec)
        if written != written_status(spec_of(task)):  # the status line differs from ob's own
            changes.update(written)
        return await self.edit(key, actor, **changes)

    # ------------------------------------------------------------------ views

    async def get(self, key: str) -> Task:
        async with self.pool.acquire() as conn:
            return await fetch_task(
                conn, await task_id_for_key(conn, key, self.prefix), self.prefix
            )

    async def get_for(self, key: str, actor: Actor) -> Task:
        """A task as `actor` may see it: an agent sees approved work and what it filed itself;
        another's draft (or one rejected without being approved) is no task to it."""
        task = await self.get(key)
        hidden = task.status in (Status.DRAFT, Status.REJECTED) and task.approved_at is None
        if actor.kind == "agent" and hidden and task.created_by != str(actor):
            raise no_task(key, self.prefix)
        return task

    async def get_by_id(self, task_id: int) -> Task:
        async with self.pool.acquire() as conn:
            return await fetch_task(conn, task_id, self.prefix)

    async def history(self, key: str) -> list[Event]:
        async with self.pool.acquire() as conn:
            task_id = await task_id_for_key(conn, key, self.prefix)
            return await events.history(conn, task_id, self.prefix)

    async def count(self, flt: TaskFilter) -> int:
        async with self.pool.acquire() as conn:
            return await count_tasks(conn, flt, self.prefix)

    async def list(self, flt: TaskFilter | None = None) -> list[Task]:  # last: it shadows `list`
        async with self.pool.acquire() as conn:
            return await list_tasks(conn, flt or TaskFilter(), self.prefix)


@asynccontextmanager
async def open_backlog(
    settings: Settings, *, run_migrations: bool = True, max_size: int = 10, url: str | None = None
) -> AsyncIterator[Backlog]:
    """The backlog over the configured (or embedded, or given) PostgreSQL, migrated, until the
    block ends: how the faces get at core."""
    async with open_database(
        settings, run_migrations=run_migrations, max_size=max_size, url=url
    ) as db:
        yield Backlog(db.pool, settings, url=db.url)


def _status_verb(key: str, status: Status) -> str:
    """What changes a task's status to `status`."""
    return {
        Status.DRAFT: f"a rejected task becomes a draft again with `ob reopen {key}`",
        Status.OPEN: f"approve a draft with `ob approve {key} --lane LANE`, reopen a done or "
        f"rejected one with `ob reopen {key}`",
        Status.CLAIMED: "agents claim tasks (`ob next`)",
        Status.DONE: f"agents finish tasks (`ob done`), or a commit says `Closes: {key}`",
        Status.REJECTED: f"`ob reject {key} -m WHY`",
    }[status]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def written_status(spec: Spec) -> dict[str, Any]:
    """The status as written, as a task keeps it: a word that is not a lifecycle name, with its
    date and reason; a lifecycle name only with a reason (`open — waiting for the vendor`). A
    bare lifecycle line (`status: draft 2026-11-20`, as an export writes it) is ob's own: it
    gives the task its status date only."""
    word = spec.status_word or (spec.status.value if spec.status and spec.status_reason else None)
    if word is None:
        return {"status_word": None, "status_date": None, "status_reason": None}
    return {
        "status_word": word,
        "status_date": spec.status_date,
        "status_reason": spec.status_reason,
    }


def shows_written_status(task: Task) -> bool:
    """Whether the status as written still says what the task is: a word meaning a task awaiting
    the operator on a draft or an open task, a done word on a done task, a dropped word on a
    rejected one, `claimed` on a claimed one. Otherwise the lifecycle speaks."""
    if not task.status_word:
        return False
    meant = lifecycle_of(task.status_word)
    if task.status in (Status.DRAFT, Status.OPEN):
        return meant in (None, Status.DRAFT, Status.OPEN)
    return meant == task.status


def spec_of(task: Task) -> Spec:
    """The text-form spec of a stored task (key and status included): the status as the person
    wrote it while it still says what the task is, else the lifecycle with its date."""
    if shows_written_status(task):
        status: dict[str, Any] = {
            "status_word": task.status_word,
            "status_date": task.status_date,
            "status_reason": task.status_reason,
        }
    else:
        reason = task.rejected_reason if task.status == Status.REJECTED else None
        status = {
            "status": task.status,
            "status_date": task.status_at.astimezone(UTC).date(),
            "status_reason": " ".join(reason.split())[:500] if reason else None,
        }
    try:
        return make_spec(
            title=task.title,
            repo=task.repo,
            priority=task.priority,
            lane=task.lane,
            trigger=task.trigger,
            trigger_on=task.trigger_on,
            steps=task.steps,
            risks=task.risks,
            notes=task.notes,
            findings=task.findings,
            key=task.key,
            **status,
        )
    except SpecError as err:  # stored data always passed validation once
        raise Invalid(str(err)) from err
