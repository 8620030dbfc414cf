"""The MCP endpoint over real streamable HTTP: same auth, same verbs, clear tool errors."""

from __future__ import annotations

import httpx
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from core.backlog import Backlog
from core.models import Actor, Lane
from core.spec import make_spec

OP = Actor.operator("test")


async def test_mcp_work_loop(gateway: str, backlog: Backlog, make_agent) -> None:
    _, token = await make_agent("claude-code")
    await backlog.file(make_spec(title="ship it", steps=["a"]), OP, lane=Lane.AUTONOMOUS)
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with (
        streamable_http_client(f"{gateway}/mcp/", http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert {
            "claim_next",
            "heartbeat",
            "complete_task",
            "release_task",
            "report_findings",
            "hand_off",
            "file_draft",
            "show_task",
            "list_ready",
        } <= set(tools)
        assert (
            "epoch" in tools["complete_task"].description
            or "epoch" in tools["complete_task"].input_schema["properties"]
        )
        res = await session.call_tool("claim_next", {})
        assert not res.is_error, res
        lease = res.structured_content["lease"]
        assert lease["key"] == "OB-1" and lease["epoch"] == 1
        res = await session.call_tool("complete_task", {"key": "OB-1", "epoch": 7})
        assert res.is_error
        assert "stale" in res.content[0].text or "lease_refused" in res.content[0].text
        res = await session.call_tool(
            "complete_task", {"key": "OB-1", "epoch": 1, "commits": ["abc1234"]}
        )
        assert not res.is_error and res.structured_content["status"] == "done"
        res = await session.call_tool("file_draft", {"spec": "Idea\nprority: P1"})
        assert res.is_error and "unknown field 'prority'" in res.content[0].text
    task = await backlog.get("OB-1")
    assert task.completed_by == "agent:claude-code"


async def test_mcp_refuses_requests_without_a_token(gateway: str, make_agent) -> None:
    await make_agent("x")
    async with httpx.AsyncClient() as c:
        r = await c.post(
            f"{gateway}/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        )
        assert r.status_code == 401
        r = await c.post(
            f"{gateway}/mcp/",
            headers={"Authorization": "Bearer ob_123456789012_" + "x" * 43},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
        assert r.status_code == 401


async def test_mcp_inputs_are_validated_like_rest(
    gateway: str, backlog: Backlog, make_agent
) -> None:
    """Out-of-range and wrong-typed arguments get REST's checks and a message that says what
    is wrong, never a bare 'Error executing tool'."""
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="t"), OP, lane=Lane.AUTONOMOUS)
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with (
        streamable_http_client(f"{gateway}/mcp/", http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        cases = [
            ("heartbeat", {"key": "OB-1", "epoch": 10**23}, "less than or equal"),
            ("heartbeat", {"key": "OB-1", "epoch": "1"}, "valid integer"),
            ("heartbeat", {"key": "OB-1", "epoch": True}, "valid integer"),
            ("list_ready", {"repo": "../../etc"}, "should match pattern"),
            ("claim_next", {"lease_seconds": 5}, "greater than or equal to 10"),
            ("claim_next", {"repos": ["web\u0000"]}, "should match pattern"),
        ]
        for tool, args, says in cases:
            res = await session.call_tool(tool, args)
            assert res.is_error, (tool, args)
            text = res.content[0].text
            assert says in text and text != f"Error executing tool {tool}", (tool, args, text)
        res = await session.call_tool("claim_next", {"lease_seconds": 10})
        assert not res.is_error and res.structured_content["lease"]["key"] == "OB-1"
