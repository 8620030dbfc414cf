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
        res = await session.call_tool("file_draft", {"spec": "Idea\nfoo: bar"})
        assert res.is_error and "unknown field 'foo'" in res.content[0].text
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
