"""The plan base: the repo HEAD a task's plan was approved against (no backlog imports here,
so the backlog service can call it)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from core.git.refs import branch_ref, read_refs, resolve_branch

log = logging.getLogger(__name__)


async def current_head(conn: asyncpg.Connection, repo: str) -> str | None:
    """The repo's default-branch tip now (from its ref files), else the last scan's."""
    row = await conn.fetchrow(
        "select path, default_branch, branch_pinned, cursor_sha from repos where name = $1", repo
    )
    if row is None:
        return None
    try:
        tip = await asyncio.to_thread(
            _tip, row["path"], row["default_branch"], row["branch_pinned"]
        )
        if tip:
            return tip
    except Exception as err:  # a moved repo must not stop an approval
        log.warning("cannot read HEAD of %s: %s", repo, err)
    return row["cursor_sha"]


def _tip(path: str, branch: str | None, pinned: bool) -> str | None:
    """The tip of the branch the reconciler scans (the pinned one, else the repo's own)."""
    refs = read_refs(path)
    ref = branch_ref(refs, resolve_branch(path, refs, branch, pinned))
    return refs[ref] if ref else None


async def record_base(conn: asyncpg.Connection, task_id: int, repo: str | None) -> str | None:
    """Record the repo's HEAD as the task's plan base (called where a task is approved)."""
    if not repo:
        return None
    head = await current_head(conn, repo)
    if head:
        await conn.execute("update tasks set base_sha = $2 where id = $1", task_id, head)
    return head
