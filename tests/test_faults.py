"""Faults: an agent process dies holding leases; the claim plan stays on its index."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import date
from pathlib import Path

import asyncpg
import httpx

from core.backlog import Backlog
from core.leases import (
    CLAIM_IN_REPOS_SQL,
    CLAIM_SQL,
    COMPLETE_SQL,
    FAST_CLAIM_IN_REPOS_SQL,
    FAST_CLAIM_SQL,
    HEARTBEAT_SQL,
)
from core.models import Actor, Lane
from core.spec import make_spec

OP = Actor.operator("test")
LEASE = 10


async def test_sigkilled_agent_leases_are_reclaimed_exactly_once(
    gateway: str, backlog: Backlog, make_agent, pool: asyncpg.Pool
) -> None:
    for i in range(6):
        await backlog.file(make_spec(title=f"task {i}"), OP, lane=Lane.AUTONOMOUS)
    _, doomed_token = await make_agent("doomed")
    _, rescuer_token = await make_agent("rescuer")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("agent_process.py")),
        gateway,
        doomed_token,
        "4",
        str(LEASE),
        stdout=asyncio.subprocess.PIPE,
    )
    held = []
    assert proc.stdout is not None
    while True:
        line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        if "holding" in line:
            break
        held.append(line["key"])
    assert len(held) == 4
    await asyncio.sleep(LEASE * 0.7)  # it heartbeats: its leases outlive their first TTL
    proc.send_signal(signal.SIGKILL)
    await proc.wait()

    async with httpx.AsyncClient(
        base_url=gateway, headers={"Authorization": f"Bearer {rescuer_token}"}
    ) as c:

        async def claim_all() -> list[dict]:
            got = []
            while (lease := (await c.post("/v1/claim")).json()["lease"]) is not None:
                got.append(lease)
            return got

        first = await claim_all()
        assert sorted(t["key"] for t in first) == [
            "OB-5",
            "OB-6",
        ]  # the dead agent's are still leased
        await asyncio.sleep(LEASE + 1)
        reclaimed = await claim_all()
        assert sorted(t["key"] for t in reclaimed) == sorted(held)  # each exactly once
        assert all(t["epoch"] == 2 for t in reclaimed)
        for t in reclaimed:
            r = await c.post(f"/v1/tasks/{t['key']}/complete", json={"epoch": t["epoch"]})
            assert r.status_code == 200
    expired = await pool.fetch("select details from events where kind = 'expired' order by task_id")
    assert [e["details"]["holder"] for e in expired] == ["doomed"] * 4
    assert await pool.fetchval("select count(*) from events where kind = 'claimed'") == 10


async def test_claim_plan_uses_the_ready_index_with_100k_tasks(
    backlog: Backlog, pool: asyncpg.Pool
) -> None:
    await pool.execute(
        """insert into tasks (title, status, lane, priority, created_by, approved_by, repo)
           select 'task ' || g,
                  (array['open','done','done','draft','open','rejected'])[1 + g % 6],
                  (array['autonomous_safe','requires_triage','requires_investigation',
                         'requires_decision'])[1 + g % 4],
                  g % 4, 'operator:test', 'operator:test', 'repo' || (g % 50)
           from generate_series(1, 100000) g"""
    )
    agent_id = await pool.fetchval(
        "insert into agents (name, token_id, token_hash) values ('x', 'abc', '') returning id"
    )
    await pool.execute(
        "update task_leases set lease_agent_id = $1, lease_expires_at = now() + interval '1 hour',"
        " epoch = 1 where ready and task_id % 7 = 0",
        agent_id,
    )
    for table in ("tasks", "task_leases", "task_deps"):
        await pool.execute(f"analyze {table}")
    held = await pool.fetchval(
        "select t.number from tasks t join task_leases l on l.task_id = t.id"
        " where l.lease_agent_id is not null limit 1"
    )
    claim = [agent_id, 1800, 3, "agent:x", "OB", date.today()]
    fast = [agent_id, 1800, "agent:x", "x", date.today()]
    plans = {
        "claim": (CLAIM_SQL, claim),
        "claim in repos": (CLAIM_IN_REPOS_SQL, [*claim, ["repo7"]]),
        "claim (fast)": (FAST_CLAIM_SQL, fast),
        "claim in repos (fast)": (FAST_CLAIM_IN_REPOS_SQL, [*fast, ["repo7"]]),
        "heartbeat": (HEARTBEAT_SQL, [held, agent_id, 1, 1800, "agent:x"]),
        "complete": (COMPLETE_SQL, [held, agent_id, 1, "agent:x", [], None, "OB"]),
    }
    for name, (sql, args) in plans.items():
        async with pool.acquire() as conn:
            plan = await conn.fetchval("explain (format json) " + sql, *args)
        text = json.dumps(plan)
        if name.startswith("claim"):
            assert "task_leases_ready" in text, (name, text)
        seq = [
            n
            for n in _nodes(plan[0]["Plan"])
            if n.get("Node Type") == "Seq Scan"
            and n.get("Relation Name") in ("tasks", "task_leases")
        ]
        assert seq == [], (name, text)


def _nodes(node: dict) -> list[dict]:
    out = [node]
    for child in node.get("Plans", []):
        out.extend(_nodes(child))
    return out


async def test_a_completion_retried_after_ob_serve_died_is_a_replay(
    admin_url: str, tmp_path: Path
) -> None:
    """`ob serve` dies (SIGKILL) after committing a completion, before the agent read the
    answer; the agent retries against the restarted `ob serve`: 200, the same task, replayed."""
    import os
    import socket

    from core.agents import Agents
    from core.db import create_pool
    from core.migrate import migrate
    from core.settings import load_settings
    from tests.conftest import create_database, drop_database

    url = await create_database(admin_url)
    await migrate(url)
    pool = await create_pool(url, max_size=2)
    backlog = Backlog(pool, load_settings(database_url=url, _env_file=None))
    _, token = await Agents(backlog).add("codex", OP)
    await backlog.file(make_spec(title="ship it"), OP, lane=Lane.AUTONOMOUS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(OB_DATABASE_URL=url, OB_GATEWAY_PORT=str(port), OB_DATA_DIR=str(tmp_path))
    base = f"http://127.0.0.1:{port}"

    async def start() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli.main",
            "serve",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with httpx.AsyncClient() as c:
            for _ in range(300):
                try:
                    if (await c.get(f"{base}/v1/health")).status_code == 200:
                        return proc
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise AssertionError("ob serve did not come up")

    serve = await start()
    try:
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as c:
            lease = (await c.post("/v1/claim")).json()["lease"]
            body = {"epoch": lease["epoch"], "commits": ["abc1234"], "note": "load test green"}
            first = await c.post("/v1/tasks/OB-1/complete", json=body)
            assert first.status_code == 200 and first.json()["replayed"] is False
            serve.send_signal(signal.SIGKILL)  # the answer never reached the agent
            await serve.wait()
            serve = await start()
            again = await c.post("/v1/tasks/OB-1/complete", json=body)
            assert again.status_code == 200, again.text
            assert again.json()["replayed"] is True and again.json()["status"] == "done"
            other = await c.post("/v1/tasks/OB-1/complete", json={**body, "note": "another"})
            assert other.status_code == 409  # a different payload is not a retry
        assert await pool.fetchval("select count(*) from events where kind = 'completed'") == 1
    finally:
        serve.terminate()
        await serve.wait()
        await pool.close()
        await drop_database(admin_url, url)
