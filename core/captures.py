"""Captures: what the operator's chat proposes, waiting behind the preview → save gate.

A capture is one preview in the chat. Plain messages sent in a row join the open capture
(within a window the bot sets), a `/plan` session collects messages into one, and a TODO.md
document is one. What a capture would file (its `Draft`) is read from its text every time:
several ideas in a text (core.ideas) or the items of a document (read by core.todo_format and
matched with the backlog as `ob import-todo` matches them) give several specs, saved in one
transaction, or split into one capture per idea to be reviewed one by one.
A forwarded message's origin goes into the notes of every spec, a document's repo is the default
repo of its specs, and photos go onto every task filed.

Core knows nothing of Telegram: chats, users and messages are integers; photos are opaque ids.
Every change is one transaction on the capture's locked row.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
from pydantic import BaseModel

from core.backlog import Backlog
from core.errors import Invalid, InvalidTransition, NotFound
from core.git.todo import plan_items
from core.ideas import read_ideas, with_context
from core.models import Actor, Lane, Task
from core.service import Service
from core.shaping import Amendment, amend_spec
from core.spec import Spec, SpecError, parse, render, status_warning
from core.tasks import fetch_task
from core.todo_format import read_document

MAX_CAPTURE_BYTES = 1024 * 1024  # a planning session or a document, all of it
TODO_NAME = "TODO.md"  # how a document is read (a todo.txt is read line by line)


class CaptureKind(StrEnum):
    TEXT = "text"  # messages: read as one idea or several (core.ideas)
    DOCUMENT = "document"  # a TODO.md: its specs, minus those the backlog has already
    IDEA = "idea"  # exactly one spec: an idea split out of a capture


class CaptureOutcome(StrEnum):
    SAVED = "saved"
    DISCARDED = "discarded"
    SPLIT = "split"  # its ideas became captures of their own, decided one by one


class Capture(BaseModel):
    """A preview waiting for [Save] / [Edit] / [Discard] (or decided already)."""

    id: int
    chat_id: int
    user_id: int
    text: str
    created_at: datetime
    outcome: CaptureOutcome | None
    task_key: str | None
    kind: CaptureKind
    message_id: int | None
    parts: int
    updated_at: datetime
    parent_id: int | None
    position: int | None
    origin: str
    photos: list[str]
    repo: str | None
    idea_keys: list[str] = []  # the tasks its ideas were saved as

    @property
    def keys(self) -> list[str]:
        return [self.task_key] if self.task_key else self.idea_keys


class CaptureDecided(InvalidTransition):
    """The preview was saved, discarded or split already (a double tap, an old button)."""

    def __init__(self, capture: Capture):
        if capture.outcome == CaptureOutcome.SAVED:
            what = f"saved as {', '.join(capture.keys)}" if capture.keys else "saved"
        elif capture.outcome == CaptureOutcome.SPLIT:
            what = "split into its ideas; decide each one"
        else:
            what = "discarded"
        super().__init__(f"Already {what}.", outcome=capture.outcome, task_key=capture.task_key)
        self.capture = capture


class DraftUpdate(BaseModel):
    """A task a document's keyed spec changes (saved with the rest)."""

    key: str
    line: int
    changes: dict[str, Any]


class Draft(BaseModel):
    """What saving a capture would file, and what it leaves out."""

    specs: list[Spec]
    existing: list[str] = []  # keys of tasks the backlog has already (a document re-sent)
    skipped: list[str] = []  # a document's items marked done, dropped or checked: "line 4: x (why)"
    updates: list[DraftUpdate] = []  # a document's keyed specs that change their task
    unreadable: list[str] = []  # a document's items that do not read: "line 15: why"
    warnings: list[str] = []  # "line 3: status 'x' is not a word ob knows…"


class Captured(BaseModel):
    capture: Capture
    draft: Draft
    joined: bool = False  # the message joined the open preview


_COLUMNS = (
    "id, chat_id, user_id, text, created_at, outcome, task_key, kind, message_id, parts,"
    " updated_at, parent_id, position, origin, photos, repo"
)
_SELECT = (
    f"select {_COLUMNS}, array(select i.task_key from bot_captures i where i.parent_id = b.id"
    " and i.task_key is not null order by i.position) as idea_keys from bot_captures b"
)
_INSERT = (
    "insert into bot_captures (chat_id, user_id, text, kind, origin, photos, repo, parent_id,"
    " position, outcome, task_key, parts)"
    f" values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) returning {_COLUMNS}"
)
# The chat's latest preview, if it is still open to more messages.
_OPEN = (
    f"{_SELECT} where id = (select id from bot_captures where chat_id = $1 and user_id = $2"
    " and parent_id is null order by id desc limit 1) and outcome is null and kind = 'text'"
    " and message_id is not null and updated_at > now() - make_interval(secs => $3)"
    " for update"
)


def _joined(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def _origins(old: str, new: str) -> str:
    """The origin lines of a capture, each once."""
    return "\n".join(dict.fromkeys(line for line in (*old.split("\n"), new) if line))


def _check_size(text: str) -> None:
    if "\x00" in text:
        raise Invalid(
            "that text contains a NUL character (U+0000), which cannot be stored; remove it"
            " and send it again"
        )
    size = len(text.encode())
    if size > MAX_CAPTURE_BYTES:
        raise Invalid(f"that is {size:,} bytes of text; a capture holds at most 1 MiB")


class Captures(Service):
    # ---------------------------------------------------------------- reading

    async def _draft(self, conn: asyncpg.Connection, c: Capture) -> Draft:
        """What the capture would file (SpecError / Invalid when its text does not read)."""
        if not c.text.strip():
            raise Invalid("there is nothing to capture yet")
        if c.kind == CaptureKind.DOCUMENT:
            return await self._document(conn, c)
        specs = [parse(c.text)] if c.kind == CaptureKind.IDEA else read_ideas(c.text)
        specs = [with_context(s, origin=c.origin, repo=c.repo) for s in specs]
        for s in specs:
            Backlog.check_new(s)
        warnings = [w for s in specs if (w := status_warning(s))]
        return Draft(specs=specs, warnings=warnings)

    async def _document(self, conn: asyncpg.Connection, c: Capture) -> Draft:
        """A TODO.md read and matched as `ob import-todo` reads and matches it: new specs to
        file, keyed specs that change their task, and what is left out and why."""
        doc = read_document(c.text, TODO_NAME)
        if not doc.items:
            raise SpecError(
                ["no specs in that document (a title line, `## Title` headings, or a checklist)"]
            )
        planned, new, matches = await plan_items(conn, self.backlog, doc, c.repo, None)
        draft = Draft(specs=[with_context(spec, origin=c.origin, repo=c.repo) for _, spec in new])
        for m in matches:
            if m.apply:
                key = m.task.key
                draft.updates.append(DraftUpdate(key=key, line=m.item.line, changes=m.apply))
            else:
                draft.existing.append(m.task.key)
        for p in planned:
            if p.action in ("skip", "duplicate"):
                draft.skipped.append(f"line {p.line}: {p.title} ({p.why})")
            elif p.action == "unreadable":
                draft.unreadable.append(f"line {p.line}: {p.why}")
            draft.warnings += [f"line {p.line}: {w}" for w in p.warnings]
        if not draft.specs and not draft.updates:
            known = ", ".join(draft.existing[:20])
            why = f" ({len(draft.unreadable)} item(s) do not read)" if draft.unreadable else ""
            raise Invalid(
                f"nothing new in that document: the backlog has every spec ({known or '-'}){why}"
            )
        return draft

    async def get(self, capture_id: int, user_id: int) -> Capture | None:
        """The user's capture (None for another user's, or one that does not exist)."""
        async with self.backlog.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"{_SELECT} where id = $1 and user_id = $2", capture_id, user_id
            )
        return Capture(**dict(row)) if row else None

    async def at_message(self, chat_id: int, message_id: int) -> Capture | None:
        """The capture a preview message shows (what a reply to it points at)."""
        async with self.backlog.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"{_SELECT} where chat_id = $1 and message_id = $2 order by id desc limit 1",
                chat_id,
                message_id,
            )
        return Capture(**dict(row)) if row else None

    async def ideas(self, parent_id: int) -> list[Capture]:
        """The ideas split out of a capture, in order."""
        async with self.backlog.pool.acquire() as conn:
            rows = await conn.fetch(f"{_SELECT} where parent_id = $1 order by position", parent_id)
        return [Capture(**dict(r)) for r in rows]

    async def draft(self, capture: Capture) -> Draft:
        async with self.backlog.pool.acquire() as conn:
            return await self._draft(conn, capture)

    async def task_photos(self, task_number: int) -> list[str]:
        async with self.backlog.pool.acquire() as conn:
            return list(
                await conn.fetchval(
                    "select coalesce(array_agg(p.file_id order by p.added_at), '{}')"
                    " from bot_task_photos p join tasks t on t.id = p.task_id where t.number = $1",
                    task_number,
                )
            )

    # ---------------------------------------------------------------- writing

    async def _insert(
        self,
        conn: asyncpg.Connection,
        chat_id: int,
        user_id: int,
        text: str,
        *,
        kind: CaptureKind = CaptureKind.TEXT,
        origin: str = "",
        photos: list[str] | tuple[str, ...] = (),
        repo: str | None = None,
        parent_id: int | None = None,
        position: int | None = None,
        outcome: CaptureOutcome | None = None,
        task_key: str | None = None,
        parts: int = 1,
    ) -> Capture:
        row = await conn.fetchrow(
            _INSERT,
            chat_id,
            user_id,
            text,
            kind,
            origin,
            list(photos),
            repo,
            parent_id,
            position,
            outcome,
            task_key,
            parts,
        )
        return Capture(**dict(row))  # a new capture: no ideas saved from it yet

    async def _locked(self, conn: asyncpg.Connection, capture_id: int, user_id: int) -> Capture:
        """The user's capture, locked, still waiting for a decision."""
        row = await conn.fetchrow(
            f"{_SELECT} where id = $1 and user_id = $2 for update", capture_id, user_id
        )
        if row is None:
            raise NotFound("That preview no longer exists.")
        capture = Capture(**dict(row))
        if capture.outcome is not None:
            raise CaptureDecided(capture)
        return capture

    async def _rewrite(
        self, conn: asyncpg.Connection, c: Capture, *, joined: bool = False, **fields: object
    ) -> Captured:
        """New text (and origin, photos, repo, part count) for an open capture, if it reads."""
        fresh = c.model_copy(update=fields)
        _check_size(fresh.text)
        draft = await self._draft(conn, fresh)
        await conn.execute(
            "update bot_captures set text = $2, origin = $3, photos = $4, repo = $5,"
            " parts = $6, updated_at = now() where id = $1",
            c.id,
            fresh.text,
            fresh.origin,
            fresh.photos,
            fresh.repo,
            fresh.parts,
        )
        return Captured(capture=fresh, draft=draft, joined=joined)

    async def add_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        *,
        window: float,
        origin: str = "",
        photos: tuple[str, ...] = (),
    ) -> Captured:
        """A message: it joins the chat's open preview when that was written to within
        `window` seconds and the joined text still reads; otherwise it starts a new capture."""
        async with self.backlog.transaction() as conn:
            row = await conn.fetchrow(_OPEN, chat_id, user_id, window) if window > 0 else None
            if row is not None:
                c = Capture(**dict(row))
                try:
                    async with conn.transaction():  # a savepoint: a text that does not read
                        return await self._rewrite(
                            conn,
                            c,
                            text=_joined(c.text, text),
                            origin=_origins(c.origin, origin),
                            photos=[*c.photos, *photos],
                            parts=c.parts + 1,
                            joined=True,
                        )
                except (SpecError, Invalid):
                    pass  # joined it would not read (say, a second `priority:`): a new preview
            if not text.strip():
                raise Invalid(
                    "a photo joins the preview you are writing; send it with a caption to "
                    "capture it on its own"
                )
            _check_size(text)
            c = await self._insert(conn, chat_id, user_id, text, origin=origin, photos=photos)
            return Captured(capture=c, draft=await self._draft(conn, c))

    async def add_document(
        self, chat_id: int, user_id: int, text: str, *, repo: str | None, origin: str = ""
    ) -> Captured:
        """A TODO.md: a capture of its specs (it never joins another)."""
        _check_size(text)
        async with self.backlog.transaction() as conn:
            c = await self._insert(
                conn, chat_id, user_id, text, kind=CaptureKind.DOCUMENT, origin=origin, repo=repo
            )
            return Captured(capture=c, draft=await self._draft(conn, c))

    async def start_session(self, chat_id: int, user_id: int) -> int:
        """An empty capture that a planning session fills message by message."""
        async with self.backlog.transaction() as conn:
            return (await self._insert(conn, chat_id, user_id, "", parts=0)).id

    async def collect(
        self,
        capture_id: int,
        user_id: int,
        text: str,
        *,
        origin: str = "",
        photos: tuple[str, ...] = (),
    ) -> int:
        """One more message of a planning session (read when the session ends); returns how
        many the session holds."""
        async with self.backlog.transaction() as conn:
            c = await self._locked(conn, capture_id, user_id)
            joined = _joined(c.text, text)
            _check_size(joined)
            return int(
                await conn.fetchval(
                    "update bot_captures set text = $2, origin = $3, photos = $4,"
                    " parts = parts + 1, updated_at = now() where id = $1 returning parts",
                    c.id,
                    joined,
                    _origins(c.origin, origin),
                    [*c.photos, *photos],
                )
            )

    async def read(self, capture_id: int, user_id: int) -> Captured:
        """An open capture and what it would file (a planning session that ends)."""
        async with self.backlog.transaction() as conn:
            c = await self._locked(conn, capture_id, user_id)
            return Captured(capture=c, draft=await self._draft(conn, c))

    async def replace_text(self, capture_id: int, user_id: int, text: str) -> Captured:
        """Corrected text for an open capture (its [Edit])."""
        async with self.backlog.transaction() as conn:
            return await self._rewrite(
                conn, await self._locked(conn, capture_id, user_id), text=text
            )

    async def set_repo(self, capture_id: int, user_id: int, repo: str | None) -> Captured:
        """The repo a document's specs go to when they name none."""
        async with self.backlog.transaction() as conn:
            c = await self._locked(conn, capture_id, user_id)
            return await self._rewrite(conn, c, repo=repo)

    async def amend(self, capture_id: int, user_id: int, amendment: Amendment) -> Captured:
        """A reply to a one-idea preview: its spec amended, in the text form."""
        async with self.backlog.transaction() as conn:
            c = await self._locked(conn, capture_id, user_id)
            specs = [parse(c.text)] if c.kind == CaptureKind.IDEA else read_ideas(c.text)
            if c.kind == CaptureKind.DOCUMENT or len(specs) != 1:
                raise Invalid(
                    "that preview holds several ideas; tap Review one by one and reply to one"
                )
            return await self._rewrite(conn, c, text=render(amend_spec(specs[0], amendment)))

    async def set_message(self, capture_id: int, message_id: int) -> None:
        """The message that shows the capture now (edited in place, replied to)."""
        async with self.backlog.pool.acquire() as conn:
            await conn.execute(
                "update bot_captures set message_id = $2 where id = $1", capture_id, message_id
            )

    async def save(self, capture_id: int, user_id: int, lane: Lane, actor: Actor) -> list[Task]:
        """File every spec of the capture into `lane` and mark it saved, in one transaction: a
        double tap or a crash can neither file it twice nor leave it 'saved' with no task.
        Each spec of several keeps a row of its own (an idea) with its task's key."""
        async with self.backlog.transaction() as conn:
            c = await self._locked(conn, capture_id, user_id)
            draft = await self._draft(conn, c)
            tasks = []
            for position, spec in enumerate(draft.specs, 1):
                task_id = await self.backlog.insert_task(conn, spec, actor, lane=lane)
                task = await fetch_task(conn, task_id, self.backlog.prefix)
                tasks.append(task)
                await conn.execute(
                    "insert into bot_task_photos (task_id, file_id) select $1, unnest($2::text[])"
                    " on conflict do nothing",
                    task_id,
                    c.photos,
                )
                if len(draft.specs) > 1:
                    await self._insert(
                        conn,
                        c.chat_id,
                        c.user_id,
                        render(spec),
                        kind=CaptureKind.IDEA,
                        parent_id=c.id,
                        position=position,
                        outcome=CaptureOutcome.SAVED,
                        task_key=task.key,
                    )
            for update in draft.updates:
                details = {"todo": c.origin or "a document sent to the bot", "line": update.line}
                edited = await self.backlog.edit_in(
                    conn, update.key, actor, update.changes, details
                )
                tasks.append(edited.task)
            await conn.execute(
                "update bot_captures set outcome = 'saved', task_key = $2, decided_at = now()"
                " where id = $1",
                c.id,
                tasks[0].key if len(tasks) == 1 else None,
            )
            return tasks

    async def split(self, capture_id: int, user_id: int) -> list[Capture]:
        """One capture per idea, to be decided one by one; the capture itself is done."""
        async with self.backlog.transaction() as conn:
            c = await self._locked(conn, capture_id, user_id)
            draft = await self._draft(conn, c)
            if draft.updates:
                keys = ", ".join(u.key for u in draft.updates[:10])
                raise Invalid(
                    f"that document also changes {keys}; save it whole, or send it again without"
                    " those specs to review the new ones one by one"
                )
            if len(draft.specs) < 2:
                raise Invalid("that preview holds one idea; save, edit or discard it")
            ideas = [
                await self._insert(
                    conn,
                    c.chat_id,
                    c.user_id,
                    render(spec),
                    kind=CaptureKind.IDEA,
                    photos=c.photos,
                    parent_id=c.id,
                    position=position,
                )
                for position, spec in enumerate(draft.specs, 1)
            ]
            await conn.execute(
                "update bot_captures set outcome = 'split', decided_at = now() where id = $1", c.id
            )
            return ideas

    async def discard(self, capture_id: int, user_id: int) -> Capture:
        async with self.backlog.transaction() as conn:
            c = await self._locked(conn, capture_id, user_id)
            await conn.execute(
                "update bot_captures set outcome = 'discarded', decided_at = now() where id = $1",
                c.id,
            )
            return c.model_copy(update={"outcome": CaptureOutcome.DISCARDED})
