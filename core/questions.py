"""Questions from an agent's work to the operator and back.

An agent holding a lease asks (a fenced write, like every write after the claim): the question
is an event on the task and an outbox notice, a card on the operator's phone with one button per
option. The operator answers by a tap, a reply or `ob answer`; the answer is recorded in the
task's history and appended to its notes ("Decision: postgres — answered by …"), so a later
agent sees it, and NOTIFY wakes the agent waiting for it (core.waiting).

The lease rule: a question does not stop the lease's clock. Waiting for the answer heartbeats
the lease (`touch`: a wait extends it to the wait plus OB_LEASE_TTL when less than half of that
is left); an agent that goes on working heartbeats as usual. A lease that ends with its question open (the agent died
and it expired, or it was released, handed off or revoked) moves the task to requires_decision
carrying the question, and the operator is told (sql/013 enforces it on every path); answering
it then sends the task back to the lane it was asked in, decision in its notes, for the next
agent.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel, computed_field

from core import events
from core.backlog import Backlog, require_operator
from core.errors import Invalid, InvalidTransition, NotFound
from core.leases import _FENCE, Leases, _require_agent
from core.models import Actor, EventKind, Lane, OutboxKind, Status, format_key
from core.notices import QuestionAnswered, QuestionAsked
from core.service import Service
from core.spec import MAX_TEXT, free_text
from core.tasks import STATUS_SQL, number_for_key

QUESTIONS_CHANNEL = "ob_questions"  # NOTIFY with the question's id when it is answered
MAX_OPTIONS = 6
MAX_OPTION = 100
MAX_QUESTION = 2000
MAX_ANSWER = 1000
MAX_OPEN_PER_TASK = 5

QUESTION_COLUMNS = f"""
    q.id, q.task_id, q.task_key as key, t.number, t.title, {STATUS_SQL} as task_status, q.text, q.options,
    q.asked_by, q.asked_at, q.epoch, q.lane, q.answer, q.answered_by, q.answered_at,
    q.left_open_at,
    (l.lease_agent_id is not distinct from q.agent_id and l.epoch = q.epoch) as lease_held
"""
QUESTION_FROM = (
    "questions q join tasks t on t.id = q.task_id join task_leases l on l.task_id = t.id"
    " left join agents a on a.id = l.lease_agent_id"
)
_ONE = f"select {QUESTION_COLUMNS} from {QUESTION_FROM} where q.id = $1"

# The caller's lease, share-locked so that it cannot end (and miss the question) before the
# question is in: $1 number, $2 agent, $3 epoch.
_LEASE = f"""
select l.task_id, t.lane from tasks t, task_leases l
where {_FENCE}
for share of l
"""
# The same question asked again under the same lease (a retry whose answer was lost, or an
# agent asking again to wait for the answer): that question, answered or not.
_SAME = """
select id from questions
where task_id = $1 and epoch = $2 and text = $3 and options = $4::text[]
order by id limit 1
"""
_ASK = """
insert into questions (task_id, task_key, agent_id, asked_by, epoch, lane, text, options)
values ($1, $2, $3, $4, $5, $6, $7, $8)
returning id
"""
# A wait for the answer by the agent that asked, still holding the lease it asked under: the
# lease is kept at least $3 seconds from now; recorded as a heartbeat when it had less than half
# of that left. $1 question, $2 agent, $3 seconds, $4 actor.
_TOUCH = """
with lease as (
    update task_leases l set lease_expires_at = now() + make_interval(secs => $3::int)
    from questions q
    where q.id = $1 and q.agent_id = $2 and q.answered_at is null
      and l.task_id = q.task_id and l.lease_agent_id = q.agent_id and l.epoch = q.epoch
      and l.lease_expires_at > now()
      and l.lease_expires_at < now() + make_interval(secs => $3::int / 2)
    returning l.task_id, l.epoch, l.lease_expires_at
)
insert into events (task_id, actor, kind, details)
select task_id, $4::text, 'heartbeat',
       jsonb_build_object('epoch', epoch, 'expires_at', lease_expires_at, 'question', $1::bigint)
from lease
"""
_OPEN_OF_TASK = f"""
select {QUESTION_COLUMNS} from {QUESTION_FROM}
where t.number = $1 and q.answered_at is null order by q.id
"""
_ANSWER = """
update questions set answer = $2, answered_by = $3, answered_at = now()
where id = $1 and answered_at is null
returning answered_at
"""


class Question(BaseModel):
    """A question as agents, the CLI and the bot see it."""

    id: int
    key: str
    number: int
    title: str
    task_status: Status
    text: str
    options: list[str]
    asked_by: str
    asked_at: datetime
    epoch: int
    lane: Lane
    answer: str | None
    answered_by: str | None
    answered_at: datetime | None
    left_open_at: datetime | None
    lease_held: bool  # the agent that asked still holds the lease it asked under
    replayed: bool = False  # the answer to an ask that had been asked already

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> Literal["pending", "answered"]:
        """`answered`, or `pending` while it waits for the operator."""
        return "answered" if self.answered_at is not None else "pending"

    @property
    def moot(self) -> bool:
        """Unanswered, and its task is finished: nobody needs the answer any more."""
        return self.answered_at is None and self.task_status in (Status.DONE, Status.REJECTED)

    @property
    def ref(self) -> str:
        """How the operator names it: `Q7`."""
        return f"Q{self.id}"

    @property
    def answer_command(self) -> str:
        """How the operator answers it from a terminal."""
        return f"ob answer {self.ref} TEXT"


def check_options(options: list[str] | None) -> list[str]:
    out: list[str] = []
    for i, option in enumerate(options or [], 1):
        text = free_text(option, f"option {i}", MAX_OPTION)
        if not text or "\n" in text:
            raise Invalid(f"option {i} must be one line of text")
        if text.lower() in (o.lower() for o in out):
            raise Invalid(f"option {i} ({text!r}) is given twice")
        out.append(text)
    if len(out) > MAX_OPTIONS:
        raise Invalid(
            f"{len(out)} options; at most {MAX_OPTIONS} (a free-text reply is always possible)"
        )
    return out


def chosen(options: list[str], text: str) -> str:
    """The answer as recorded: an option named by its number (`2`) or its text in any case
    becomes that option; anything else is a free-text answer."""
    t = text.strip()
    if t.isdigit() and 1 <= int(t) <= len(options):
        return options[int(t) - 1]
    for option in options:
        if option.lower() == t.lower():
            return option
    return t


QUESTION_REF = re.compile(r"^(?:q|#)?(\d{1,12})$", re.I)


def question_id(ref: str) -> int | None:
    """`Q7`, `#7` or `7` -> 7; None when it is not a question's id (a task key, say)."""
    m = QUESTION_REF.match(ref.strip())
    return int(m.group(1)) if m else None


def _by(actor: Actor) -> str:
    if actor.name == "cli":
        return "the operator (CLI)"
    if actor.name.startswith("tg:"):
        return "the operator (Telegram)"
    return "the operator"


class Questions(Service):
    def __init__(self, backlog: Backlog):
        super().__init__(backlog)
        self.leases = Leases(backlog)  # a refused ask is explained as a refused lease write

    # ------------------------------------------------------------------ agents

    async def ask(
        self, key: str, actor: Actor, epoch: int, text: str, options: list[str] | None = None
    ) -> Question:
        """Ask the operator about the task whose lease (`epoch`) you hold. Asking the same
        question again under the same lease gives the same question (`replayed`)."""
        agent_id = _require_agent(actor)
        number = number_for_key(key, self.prefix)
        body = free_text(text, "question", MAX_QUESTION)
        if not body:
            raise Invalid("the question is empty; say what you need decided")
        opts = check_options(options)
        try:
            question = await self._ask(number, actor, agent_id, epoch, body, opts)
        except _Refused:
            raise await self.leases._refusal(number, actor, epoch, "ask about") from None
        if not question.replayed:
            await self.backlog.wake()
        return question

    async def _ask(
        self, number: int, actor: Actor, agent_id: int, epoch: int, body: str, opts: list[str]
    ) -> Question:
        async with self.backlog.transaction() as conn:
            lease = await conn.fetchrow(_LEASE, number, agent_id, epoch)
            if lease is None:
                raise _Refused
            same = await conn.fetchval(_SAME, lease["task_id"], epoch, body, opts)
            if same is not None:
                question = await self._get(conn, same)
                return question.model_copy(update={"replayed": True})
            open_now = await conn.fetchval(
                "select count(*) from questions where task_id = $1 and answered_at is null",
                lease["task_id"],
            )
            if open_now >= MAX_OPEN_PER_TASK:
                raise Invalid(
                    f"{format_key(self.prefix, number)} has {open_now} open questions already; "
                    "wait for their answers"
                )
            task_key = format_key(self.prefix, number)
            qid = await conn.fetchval(
                _ASK,
                lease["task_id"],
                task_key,
                agent_id,
                str(actor),
                epoch,
                lease["lane"],
                body,
                opts,
            )
            details = {"question": qid, "text": body, "options": opts, "epoch": epoch}
            await events.record(
                conn,
                lease["task_id"],
                actor,
                EventKind.QUESTION_ASKED,
                details,
                notify=OutboxKind.QUESTION_ASKED,
                payload=QuestionAsked(
                    key=task_key, id=qid, text=body, options=opts, asked_by=str(actor)
                ),
            )
            return await self._get(conn, qid)

    async def get(self, qid: int) -> Question:
        async with self.pool.acquire() as conn:
            return await self._get(conn, qid)

    async def open_of(self, key: str) -> list[Question]:
        """The task's questions that wait for the operator's answer, oldest first (none once
        the task is finished: those need no answer)."""
        return [q for q in await self._unanswered(number_for_key(key, self.prefix)) if not q.moot]

    async def _unanswered(self, number: int) -> list[Question]:
        return [Question(**dict(r)) for r in await self.pool.fetch(_OPEN_OF_TASK, number)]

    async def touch(self, qid: int, actor: Actor, wait_seconds: int) -> Question:
        """The question now; when the agent that asked it waits for the answer under the lease
        it asked with, that lease is kept for the wait and OB_LEASE_TTL beyond it."""
        async with self.pool.acquire() as conn:
            if actor.agent_id is not None:
                keep = wait_seconds + self.backlog.settings.lease_ttl
                await conn.execute(_TOUCH, qid, actor.agent_id, keep, str(actor))
            return await self._get(conn, qid)

    async def _get(self, conn: asyncpg.Connection, qid: int) -> Question:
        row = await conn.fetchrow(_ONE, qid)
        if row is None:
            raise NotFound(f"no question Q{qid} (see `ob questions`)")
        return Question(**dict(row))

    # ---------------------------------------------------------------- operator

    async def answer(self, ref: str, actor: Actor, text: str) -> Question:
        """Answer a question: `Q7` (or `7`), or a task key when the task has one open question.
        The answer goes into the task's history and notes and wakes the waiting agent; a
        question left open by its lease sends the task back to the lane it was asked in."""
        require_operator(actor, "answer questions")
        reply = free_text(text, "answer", MAX_ANSWER)
        if not reply:
            raise Invalid("the answer is empty")
        qid = await self._resolve(ref)
        async with self.backlog.transaction(wake=True) as conn:
            row = await conn.fetchrow(_ONE + " for update of q", qid)
            if row is None:
                raise NotFound(f"no question Q{qid} (see `ob questions`)")
            q = Question(**dict(row))
            if q.answered_at is not None:
                raise InvalidTransition(
                    f"{q.ref} was already answered: {q.answer!r} by {q.answered_by} at "
                    f"{q.answered_at:%Y-%m-%d %H:%M} UTC",
                    answered_by=q.answered_by,
                )
            if q.moot:
                raise InvalidTransition(
                    f"{q.key} is {q.task_status.value}; its question {q.ref} needs no answer"
                )
            answer = chosen(q.options, reply)
            at = await conn.fetchval(_ANSWER, qid, answer, str(actor))
            when = at.astimezone(self.backlog.settings.tz).strftime("%Y-%m-%d %H:%M %Z")
            asked = " ".join(q.text.split())[:300]
            line = f"Decision: {answer} — answered by {_by(actor)} at {when} ({q.ref}: {asked})"
            noted = await conn.fetchval(
                """update tasks set notes = ltrim(notes || E'\\n' || $2, E'\\n'), updated_at = now()
                   where id = $1 and length(notes) + length($2) < $3 returning true""",
                row["task_id"],
                line,
                MAX_TEXT,
            )
            details = {"question": qid, "answer": answer, "in_notes": bool(noted)}
            await events.record(
                conn,
                row["task_id"],
                actor,
                EventKind.QUESTION_ANSWERED,
                details,
                notify=OutboxKind.QUESTION_ANSWERED,
                payload=QuestionAnswered(
                    key=q.key,
                    id=qid,
                    text=q.text,
                    options=q.options,
                    asked_by=q.asked_by,
                    answer=answer,
                    answered_by=str(actor),
                    answered_at=at,
                ),
            )
            await conn.execute("select pg_notify($1, $2)", QUESTIONS_CHANNEL, str(qid))
            answered = await self._get(conn, qid)
        if q.left_open_at is not None and q.lane != Lane.DECISION:
            await self._send_back(q, actor)
        return answered

    async def _send_back(self, q: Question, actor: Actor) -> None:
        """A question the lease left open took the task to requires_decision: answered, the
        task goes back to its lane (unless it moved or was decided meanwhile)."""
        task = await self.backlog.get(q.key)
        if task.status == Status.OPEN and task.lane == Lane.DECISION:
            opened = await self.pool.fetchval(
                "select exists (select 1 from questions q join tasks t on t.id = q.task_id"
                " where t.number = $1 and q.answered_at is null)",
                q.number,
            )
            if not opened:  # another question still waits: it stays with the operator
                with contextlib.suppress(InvalidTransition):  # it moved meanwhile
                    await self.backlog.move_lane(q.key, q.lane, actor)

    async def _resolve(self, ref: str) -> int:
        qid = question_id(ref)
        if qid is not None:
            return qid
        number = number_for_key(ref, self.prefix)
        ids = [q.id for q in await self._unanswered(number)]
        key = format_key(self.prefix, number)
        if not ids:
            raise NotFound(f"{key} has no open question (see `ob questions`)")
        if len(ids) > 1:
            refs = ", ".join(f"Q{i}" for i in ids)
            raise Invalid(
                f"{key} has {len(ids)} open questions ({refs}); answer one by its id: "
                f"`ob answer Q{ids[0]} TEXT`"
            )
        return ids[0]


class _Refused(Exception):
    """The asker does not hold the lease (raised inside the transaction, which is rolled back
    and gives its connection back before the refusal is read)."""
