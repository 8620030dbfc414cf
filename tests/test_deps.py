"""Prerequisite links: readiness follows them, cycles are refused."""

from __future__ import annotations

import pytest

from core.backlog import Backlog
from core.deps import add_prerequisite, remove_prerequisite
from core.errors import Forbidden, Invalid, InvalidTransition
from core.leases import Leases
from core.models import Actor, Lane
from core.spec import make_spec

OP = Actor.operator("test")


async def test_links_block_and_cycles_are_refused(
    backlog: Backlog, leases: Leases, make_agent
) -> None:
    codex, _ = await make_agent("codex")
    for t in ("a", "b", "c"):
        await backlog.file(make_spec(title=t), OP, lane=Lane.AUTONOMOUS)
    await add_prerequisite(backlog, "OB-1", "OB-2", OP)
    task = await add_prerequisite(backlog, "OB-2", "OB-3", OP)
    assert task.blocked_by == ["OB-3"] and task.display_status == "blocked"
    with pytest.raises(InvalidTransition, match="cycle"):
        await add_prerequisite(backlog, "OB-3", "OB-1", OP)
    with pytest.raises(Invalid, match="own prerequisite"):
        await add_prerequisite(backlog, "OB-1", "ob-1", OP)
    with pytest.raises(Forbidden):
        await add_prerequisite(backlog, "OB-3", "OB-1", codex)
    # only the end of the chain is ready
    lease = await leases.claim(codex)
    assert lease.key == "OB-3"
    assert await leases.claim(codex) is None
    await remove_prerequisite(backlog, "OB-1", "OB-2", OP)
    assert (await leases.claim(codex)).key == "OB-1"
    with pytest.raises(Invalid, match="does not wait on"):
        await remove_prerequisite(backlog, "OB-1", "OB-2", OP)
    kinds = [e.kind for e in await backlog.history("OB-1")]
    assert kinds == ["filed", "dep_added", "dep_removed", "claimed"]
