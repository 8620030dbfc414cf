"""Filing tasks from a test as the operator, and reading back what happened to them."""

from __future__ import annotations

from core.backlog import Backlog
from core.models import Actor, Lane
from core.spec import make_spec

OP = Actor.operator("test")


async def file(backlog: Backlog, title: str, lane: Lane = Lane.AUTONOMOUS, **kw) -> str:
    """File an approved task into `lane` (spec fields as keywords); its key."""
    return (await backlog.file(make_spec(title=title, **kw), OP, lane=lane)).key


async def kinds(backlog: Backlog, key: str) -> list[str]:
    """The kinds of the task's events, oldest first."""
    return [e.kind for e in await backlog.history(key)]
