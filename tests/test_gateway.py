"""The agent gateway over real HTTP: the work loop, auth, errors, limits, exactly-once."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from core.agents import Agents
from core.backlog import Backlog
from core.models import Actor, Lane
from core.spec import make_spec

OP = Actor.operator("test")


def client(url: str, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=30)


async def test_work_loop(gateway: str, backlog: Backlog, make_agent) -> None:
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="ship it", steps=["a"]), OP, lane=Lane.AUTONOMOUS)
    async with client(gateway, token) as c:
        assert (await c.get("/v1/me")).json() == {"agent": "codex"}
        r = await c.post("/v1/claim", json={})
        assert r.status_code == 200
        lease = r.json()["lease"]
        assert lease["key"] == "OB-1" and lease["epoch"] == 1 and lease["task"]["steps"] == ["a"]
        r = await c.post("/v1/tasks/OB-1/heartbeat", json={"epoch": 1})
        assert r.status_code == 200 and r.json()["epoch"] == 1
        r = await c.post("/v1/tasks/OB-1/complete", json={"epoch": 1, "commits": ["abc1234"]})
        assert r.status_code == 200 and r.json()["status"] == "done"
        r = await c.post("/v1/claim")
        assert r.json() == {"lease": None, "message": "nothing is ready for you; try again later"}


async def test_file_draft_and_handoff(gateway: str, backlog: Backlog, make_agent) -> None:
    _, token = await make_agent("codex")
    async with client(gateway, token) as c:
        r = await c.post("/v1/tasks", json={"text": "Add retries\nrepo: web\nsteps:\n- wrap calls"})
        assert r.status_code == 201
        assert (r.json()["status"], r.json()["created_by"]) == ("draft", "agent:codex")
        await backlog.approve("OB-1", OP, Lane.AUTONOMOUS)
        lease = (await c.post("/v1/claim")).json()["lease"]
        r = await c.post(
            "/v1/tasks/OB-1/handoff",
            json={
                "epoch": lease["epoch"],
                "prerequisite": {"spec": {"title": "add an index"}},
                "reason": "too slow without it",
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["task"]["blocked_by"] == ["OB-2"]
        assert r.json()["prerequisite"]["status"] == "draft"


async def test_auth_failures(
    gateway: str, backlog: Backlog, make_agent, pool: asyncpg.Pool
) -> None:
    _, token = await make_agent("codex")
    async with client(gateway) as c:
        r = await c.post("/v1/claim")
        assert r.status_code == 401 and "missing bearer token" in r.json()["message"]
        assert r.headers["www-authenticate"] == "Bearer"
    async with client(gateway, "ob_000000000000_" + "x" * 43) as c:
        r = await c.post("/v1/claim")
        assert r.status_code == 401 and "invalid token" in r.json()["message"]
    async with client(gateway, token[:-1] + ("A" if token[-1] != "A" else "B")) as c:
        assert (await c.post("/v1/claim")).status_code == 401
    async with client(gateway, "nonsense") as c:
        assert "malformed" in (await c.post("/v1/claim")).json()["message"]
    async with client(gateway, token) as c:
        assert (await c.get("/v1/me")).status_code == 200  # now cached by the gateway
        await Agents(backlog).revoke("codex", OP)
        for _ in range(50):  # the revocation NOTIFY clears the cache within moments
            r = await c.post("/v1/claim")
            if r.status_code == 401:
                break
            await asyncio.sleep(0.02)
        assert r.status_code == 401 and "revoked" in r.json()["message"]


async def test_agents_cannot_reach_operator_actions(
    gateway: str, backlog: Backlog, make_agent
) -> None:
    _, token = await make_agent("codex")
    async with client(gateway, token) as c:
        await c.post("/v1/tasks", json={"spec": {"title": "let me in"}})
        for action in ("approve", "reject", "lane", "edit"):
            r = await c.post(f"/v1/tasks/OB-1/{action}", json={"lane": "autonomous_safe"})
            assert r.status_code == 403 and "operator" in r.json()["message"]
        r = await c.post("/v1/tasks", json={"spec": {"title": "x", "status": "open"}})
        assert r.status_code == 422
    task = await backlog.get("OB-1")
    assert task.status == "draft" and task.approved_by is None


async def test_stale_epoch_is_409_naming_the_holder(
    gateway: str, backlog: Backlog, make_agent, pool
) -> None:
    _, t1 = await make_agent("codex")
    _, t2 = await make_agent("grok")
    await backlog.file(make_spec(title="x"), OP, lane=Lane.AUTONOMOUS)
    async with client(gateway, t1) as a, client(gateway, t2) as b:
        await a.post("/v1/claim")
        await pool.execute(
            "update task_leases set lease_expires_at = now() - interval '1 s' where lease_agent_id is not null"
        )
        assert (await b.post("/v1/claim")).json()["lease"]["epoch"] == 2
        r = await a.post("/v1/tasks/OB-1/complete", json={"epoch": 1})
        assert r.status_code == 409
        assert (
            r.json()["details"]["holder"] == "grok" and "grok holds it now" in r.json()["message"]
        )


async def test_bad_input_is_clear(gateway: str, backlog: Backlog, make_agent) -> None:
    _, token = await make_agent("codex")
    async with client(gateway, token) as c:
        r = await c.post("/v1/tasks", json={"text": "x", "colour": "red"})
        assert r.status_code == 422 and "colour" in r.json()["message"]
        r = await c.post("/v1/tasks", json={"text": "Title\nprority: P1"})
        assert r.status_code == 422 and r.json()["error"] == "invalid_spec"
        r = await c.post(
            "/v1/tasks", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        r = await c.post("/v1/tasks", json={"text": "x" * 300_000})
        assert r.status_code == 413 and "over 262144 bytes" in r.json()["message"]
        r = await c.post("/v1/claim", json={"repos": ["web\u0000"]})
        assert r.status_code == 422 and "repos" in r.json()["message"]
        r = await c.post("/v1/tasks/OB-99/heartbeat", json={"epoch": 1})
        assert r.status_code == 404
        r = await c.post("/v1/tasks/OB-1/complete", json={"epoch": 1, "commits": ["not-a-sha"]})
        assert r.status_code in (404, 422)
    assert await backlog.list() == []


async def test_chunked_bodies_over_the_limit_are_413(gateway: str, make_agent) -> None:
    """No Content-Length (chunked transfer): REST and MCP both answer 413, not 400 or 500."""
    _, token = await make_agent("codex")

    async def chunks():
        for _ in range(40):
            yield b"x" * 10_000

    async with client(gateway, token) as c:
        for path in ("/v1/tasks", "/mcp/"):
            r = await c.post(
                path,
                content=chunks(),
                headers={"content-type": "application/json", "accept": "application/json"},
            )
            assert r.status_code == 413, (path, r.status_code, r.text)
            assert r.json()["error"] == "too_large"


async def test_epochs_are_strict_and_leases_follow_one_rule(
    gateway: str, backlog: Backlog, make_agent
) -> None:
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="t"), OP, lane=Lane.AUTONOMOUS)
    async with client(gateway, token) as c:
        for epoch in ("1", True, 1.0, 10**23, 0):
            r = await c.post("/v1/tasks/OB-1/heartbeat", json={"epoch": epoch})
            assert r.status_code == 422 and "epoch" in r.json()["message"], epoch
        r = await c.post("/v1/claim", json={"lease_seconds": 5})
        assert r.status_code == 422 and "greater than or equal to 10" in r.json()["message"]
        r = await c.post("/v1/claim", json={"lease_seconds": 10})
        assert r.status_code == 200 and r.json()["lease"]["epoch"] == 1


async def test_health_names_states_not_internals(gateway: str, backlog: Backlog) -> None:
    await backlog.file(make_spec(title="a draft"), Actor.agent("codex", 1))
    async with client(gateway) as c:
        r = await c.get("/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["outbox"]["pending"] == 1 and body["outbox"]["dead"] == 0


async def test_openapi_schema_is_served(gateway: str) -> None:
    async with client(gateway) as c:
        schema = (await c.get("/openapi.json")).json()
    assert "/v1/claim" in schema["paths"] and "/v1/tasks/{key}/handoff" in schema["paths"]


async def test_8_http_clients_exactly_once(
    gateway: str, backlog: Backlog, make_agent, pool
) -> None:
    n = 400
    await pool.execute(
        """insert into tasks (title, status, lane, created_by, approved_by)
           select 'task ' || g, 'open', 'autonomous_safe', 'operator:test', 'operator:test'
           from generate_series(1, $1) g""",
        n,
    )
    tokens = [(await make_agent(f"agent{i}"))[1] for i in range(8)]
    seen: list[str] = []

    async def worker(token: str) -> None:
        async with client(gateway, token) as c:
            while True:
                lease = (await c.post("/v1/claim")).json()["lease"]
                if lease is None:
                    return
                seen.append(lease["key"])
                r = await c.post(
                    f"/v1/tasks/{lease['key']}/complete", json={"epoch": lease["epoch"]}
                )
                assert r.status_code == 200, r.text

    await asyncio.gather(*(worker(t) for t in tokens))
    assert len(seen) == n and len(set(seen)) == n
    assert await pool.fetchval("select count(*) from tasks where status = 'done'") == n
