"""The plan base: the repo HEAD a task's plan was approved against (no backlog imports here,
so the backlog service can call it)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from core.git.remotes import read_default_branch

log = logging.getLogger(__name__)


async def current_head(conn: asyncpg.Connection, repo: str) -> str | None:
    """The repo's default-branch tip now (from its ref files: the remote-tracking branch as
    the last fetch left it, see remotes.py), else the last scan's."""
    row = await conn.fetchrow(
        "select path, default_branch, branch_pinned, cursor_sha from repos where name = $1", repo
    )
    if row is None:
        return None
    try:
        now = await asyncio.to_thread(
            read_default_branch, row["path"], row["default_branch"], row["branch_pinned"]
        )
        if now.tip is not None:
            return now.tip
    except Exception as err:  # a moved repo must not stop an approval
        log.warning("cannot read HEAD of %s: %s", repo, err)
    return row["cursor_sha"]


async def record_base(conn: asyncpg.Connection, task_id: int, repo: str | None) -> str | None:
    """Record the repo's HEAD as the task's plan base (called where a task is approved)."""
    if not repo:
        return None
    head = await current_head(conn, repo)
    if head:
        await conn.execute("update tasks set base_sha = $2 where id = $1", task_id, head)
    return head
