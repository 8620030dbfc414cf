"""The gateway's own answer for every mistake (issue 17): bodies that are not UTF-8 or are
nested too deep, unknown routes, MCP arguments of the wrong type, refusals that say what is
wrong, and drafts that only their filer sees."""

from __future__ import annotations

import httpx
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from core.backlog import Backlog
from core.models import Actor, Lane
from core.spec import make_spec

OP = Actor.operator("test")


def client(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def problem(r: httpx.Response, status: int, error: str) -> str:
    """The API's own error shape: {error, message, details}; returns the message."""
    body = r.json()
    assert r.status_code == status, (r.status_code, body)
    assert set(body) == {"error", "message", "details"} and body["error"] == error, body
    return body["message"]


async def test_bodies_that_cannot_be_read_get_the_apis_own_error(gateway: str, make_agent) -> None:
    _, token = await make_agent("codex")
    json_type = {"Content-Type": "application/json"}
    async with client(gateway, token) as c:
        r = await c.post("/v1/tasks", content=b'{"text": "caf\xe9"}', headers=json_type)
        said = problem(r, 400, "invalid_body")
        assert "not UTF-8" in said and "0xe9" in said
        deep = b"[" * 30_000 + b"]" * 30_000
        said = problem(
            await c.post("/v1/claim", content=deep, headers=json_type), 400, "invalid_body"
        )
        assert "nested too deeply" in said
        said = problem(
            await c.post("/v1/claim", content=b"{nope", headers=json_type), 422, "invalid_request"
        )
        assert "JSON" in said
        said = problem(await c.get("/v1/nowhere"), 404, "not_found")
        assert "GET /v1/nowhere" in said
        problem(await c.delete("/v1/claim"), 405, "method_not_allowed")


async def test_mcp_arguments_of_the_wrong_type_get_rests_plain_message(
    gateway: str, backlog: Backlog, make_agent
) -> None:
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="t"), OP, lane=Lane.AUTONOMOUS)
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with (
        streamable_http_client(f"{gateway}/mcp/", http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        res = await session.call_tool("heartbeat", {"key": "OB-1", "epoch": "one"})
        assert res.is_error
        text = res.content[0].text
        assert text == "invalid_request: epoch: Input should be a valid integer", text
        res = await session.call_tool("claim_next", {"lease_seconds": 5, "repos": "web"})
        assert res.content[0].text.startswith("invalid_request: ")
        assert "pydantic" not in res.content[0].text and "https://" not in res.content[0].text
        # the holder presenting a wrong epoch is not told that another agent holds the task
        res = await session.call_tool("claim_next", {})
        assert res.structured_content["lease"]["epoch"] == 1
        res = await session.call_tool("heartbeat", {"key": "OB-1", "epoch": 2})
        text = res.content[0].text
        assert res.is_error and "not one your claims got: you hold it at epoch 1" in text, text


async def test_a_draft_is_seen_only_by_the_agent_that_filed_it(
    gateway: str, backlog: Backlog, make_agent
) -> None:
    _, codex = await make_agent("codex")
    _, grok = await make_agent("grok")
    async with client(gateway, codex) as c, client(gateway, grok) as g:
        r = await c.post("/v1/tasks", json={"spec": {"title": "my idea"}})
        key = r.json()["key"]
        assert (await c.get(f"/v1/tasks/{key}")).json()["status"] == "draft"
        said = problem(await g.get(f"/v1/tasks/{key}"), 404, "not_found")
        assert said == problem(await g.get("/v1/tasks/OB-99"), 404, "not_found").replace(
            "OB-99", key
        )
        await backlog.approve(key, OP, Lane.TRIAGE)
        assert (await g.get(f"/v1/tasks/{key}")).json()["status"] == "open"
        dropped = (await c.post("/v1/tasks", json={"spec": {"title": "dropped"}})).json()["key"]
        await backlog.reject(dropped, OP)
        problem(await g.get(f"/v1/tasks/{dropped}"), 404, "not_found")
        assert (await c.get(f"/v1/tasks/{dropped}")).json()["status"] == "rejected"
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {grok}"}, timeout=30)
    async with (
        streamable_http_client(f"{gateway}/mcp/", http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        res = await session.call_tool("show_task", {"key": dropped})
        assert res.is_error and res.content[0].text.startswith("not_found: no task")
