"""Waiting over the real gateway: claims that wait for work and are woken by LISTEN/NOTIFY (not
by polling), no stampede, no database connection held while waiting, and questions whose
waiting agent gets the operator's answer.

"Woken rather than polled" is shown without timing thresholds: the safety-net recheck is set
to an hour, so a waiting request that returns a task (or an answer) within its generous wait
was woken by a notification (or by the clock, for an expiring lease), as the hub's counters
say."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from core import waiting
from core.agents import Agents
from core.backlog import Backlog
from core.deps import Prerequisites
from core.leases import Leases
from core.models import Actor, Lane, Status
from core.spec import make_spec
from core.waiting import Waits
from tests.test_agent_cli import ob

OP = Actor.operator("test")


@pytest.fixture
def gw(waiting_gateway: tuple[str, Waits], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Waits]:
    """The gateway and its waiting hub, the safety-net recheck an hour."""
    monkeypatch.setattr(waiting, "RECHECK_EVERY", 3600.0)
    return waiting_gateway


def client(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def wait_claim(c: httpx.AsyncClient, **body: object) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(c.post("/v1/claim", json={"wait_seconds": 60, **body}))


async def _make_ready(how: str, backlog: Backlog, leases: Leases, make_agent) -> str:
    """Make one task ready the way `how` says; returns its key."""
    if how == "approve":
        author, _ = await make_agent("filer")
        draft = await backlog.file(make_spec(title="an agent's idea"), author)
        await backlog.approve(draft.key, OP, Lane.AUTONOMOUS)
        return draft.key
    if how == "add":
        return (await backlog.file(make_spec(title="new work"), OP, lane=Lane.AUTONOMOUS)).key
    if how == "lane":
        await backlog.move_lane("OB-1", Lane.INVESTIGATION, OP)
        return "OB-1"
    if how == "release":
        holder = Actor.agent("holder", 1)
        await leases.release("OB-2", holder, 1, "cannot go on")
        return "OB-2"
    if how == "revoke":
        await Agents(backlog).revoke("holder", OP)
        return "OB-2"
    assert how == "unblock"
    holder = Actor.agent("holder", 1)
    await leases.complete("OB-2", holder, 1, commits=["abc1234"])
    return "OB-3"


@pytest.mark.parametrize("how", ["approve", "add", "lane", "release", "revoke", "unblock"])
async def test_a_waiting_claim_is_woken_by_what_makes_work_ready(
    how: str, gw, backlog: Backlog, leases: Leases, make_agent
) -> None:
    url, waits = gw
    holder, _ = await make_agent("holder")  # agent 1: holds OB-2, on which OB-3 waits
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="shape me first"), OP, lane=Lane.TRIAGE)  # OB-1
    await backlog.file(make_spec(title="held"), OP, lane=Lane.AUTONOMOUS)  # OB-2
    assert (await leases.claim(holder)).key == "OB-2"
    await backlog.file(make_spec(title="after OB-2"), OP, lane=Lane.AUTONOMOUS)  # OB-3
    await Prerequisites(backlog).add("OB-3", "OB-2", OP)
    async with client(url, token) as c:
        claim = wait_claim(c)
        await until(lambda: waits.waiting == 1, "the claim waits")
        key = await _make_ready(how, backlog, leases, make_agent)
        r = await asyncio.wait_for(claim, 90)
    assert r.status_code == 200, r.text
    assert r.json()["lease"]["key"] == key
    assert waits.stats.rounds_on_notice >= 1 and waits.stats.rounds_on_clock == 0
    assert (await backlog.get(key)).lease_holder == "codex"


async def test_sixteen_waiting_agents_and_four_new_tasks_claim_exactly_four(
    gw, backlog: Backlog, make_agent
) -> None:
    url, waits = gw
    tokens = [(await make_agent(f"agent{i}"))[1] for i in range(16)]
    clients = [client(url, t) for t in tokens]
    claims = [wait_claim(c) for c in clients]
    await until(lambda: waits.waiting == 16, "all sixteen wait")
    for i in range(4):
        await backlog.file(make_spec(title=f"work {i}"), OP, lane=Lane.AUTONOMOUS)
    done: set[asyncio.Task[httpx.Response]] = set()
    while len(done) < 4:
        finished, _ = await asyncio.wait(
            set(claims) - done, timeout=90, return_when=asyncio.FIRST_COMPLETED
        )
        assert finished, "the new tasks were never claimed"
        done |= finished
    await asyncio.sleep(0.3)  # a fifth answer, if any, would come now
    keys = sorted(t.result().json()["lease"]["key"] for t in claims if t.done())
    assert keys == ["OB-1", "OB-2", "OB-3", "OB-4"]  # each once; nobody answered "nothing"
    assert waits.waiting == 12
    assert waits.stats.turns == 4 and waits.stats.taken == 4  # only four tried: no stampede
    # the other twelve hang up: they leave the queue and take nothing filed afterwards
    for c in clients:
        await c.aclose()
    await until(lambda: waits.waiting == 0, "the twelve left")
    late = await backlog.file(make_spec(title="after they left"), OP, lane=Lane.AUTONOMOUS)
    await asyncio.sleep(0.3)
    assert (await backlog.get(late.key)).status == Status.OPEN
    for t in claims:
        t.cancel()


async def test_a_hundred_waiting_claims_hold_no_database_connection(
    gw, backlog: Backlog, make_agent, pool: asyncpg.Pool
) -> None:
    url, waits = gw
    tokens = [(await make_agent(f"a{i}"))[1] for i in range(10)]
    count = "select count(*) from pg_stat_activity where datname = current_database()"
    before = await pool.fetchval(count)
    clients = [client(url, t) for t in tokens]
    claims = [wait_claim(clients[i % 10]) for i in range(100)]
    await until(lambda: waits.waiting == 100, "a hundred claims wait")
    during = await pool.fetchval(count)
    busy = await pool.fetchval(count + " and state <> 'idle' and pid <> pg_backend_pid()")
    # the pool's idle connections (at most its size) and the listeners, not one per request;
    # none of them is in use while the hundred wait
    assert during <= pool.get_max_size() + before and during < 100, (before, during)
    assert busy == 0 and pool.get_idle_size() == pool.get_size()
    assert all(not c.done() for c in claims)
    await backlog.file(make_spec(title="one task"), OP, lane=Lane.AUTONOMOUS)
    await until(lambda: sum(c.done() for c in claims) == 1, "one claim answers")
    assert waits.waiting == 99
    for c in clients:
        await c.aclose()
    for t in claims:
        t.cancel()


async def test_an_expiring_lease_wakes_a_waiting_claim_by_the_clock(
    gw, backlog: Backlog, leases: Leases, make_agent, pool: asyncpg.Pool
) -> None:
    url, waits = gw
    first, _ = await make_agent("first")
    _, token = await make_agent("second")
    await backlog.file(make_spec(title="will be dropped"), OP, lane=Lane.AUTONOMOUS)
    await leases.claim(first)
    await pool.execute("update task_leases set lease_expires_at = now() + interval '1 s'")
    async with client(url, token) as c:
        r = await asyncio.wait_for(wait_claim(c), 90)
    lease = r.json()["lease"]
    assert lease["key"] == "OB-1" and lease["epoch"] == 2
    assert waits.stats.rounds_on_clock >= 1


async def test_ask_and_the_operator_answers_from_the_cli(
    gw, backlog: Backlog, make_agent, settings, tmp_path: Path
) -> None:
    url, waits = gw
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="a cache"), OP, lane=Lane.AUTONOMOUS)
    async with client(url, token) as c:
        lease = (await c.post("/v1/claim", json={})).json()["lease"]
        r = await c.post(
            "/v1/tasks/OB-1/questions",
            json={
                "epoch": lease["epoch"],
                "text": "Redis or Postgres?",
                "options": ["redis", "postgres"],
            },
        )
        assert r.status_code == 201, r.text
        qid = r.json()["id"]
        assert r.json()["status"] == "pending"
        answer = asyncio.create_task(c.get(f"/v1/questions/{qid}", params={"wait": 60}))
        await until(lambda: waits.awaiting_answers == 1, "the agent waits for the answer")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
        env.update(OB_DATABASE_URL=settings.database_url, OB_DATA_DIR=str(tmp_path))
        code, out, err = await ob(env, "answer", "OB-1", "2")
        assert code == 0, err
        assert f"answered Q{qid} (OB-1): postgres" in out
        got = (await asyncio.wait_for(answer, 90)).json()
        assert (got["status"], got["answer"], got["answered_by"]) == (
            "answered",
            "postgres",
            "operator:cli",
        )
        # the answer is in the task for the next agent too
        task = (await c.get("/v1/tasks/OB-1")).json()
        assert "Decision: postgres" in task["notes"]
        # fenced: a stale epoch cannot ask
        r = await c.post(
            "/v1/tasks/OB-1/questions", json={"epoch": lease["epoch"] + 1, "text": "again?"}
        )
        assert r.status_code == 409 and r.json()["error"] == "lease_refused"
        r = await c.post(
            "/v1/tasks/OB-1/questions",
            json={"epoch": lease["epoch"], "text": "x", "options": ["a"] * 7},
        )
        assert r.status_code == 422


async def test_waiting_for_the_answer_keeps_the_lease(
    gw, backlog: Backlog, make_agent, pool: asyncpg.Pool
) -> None:
    url, _ = gw
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="a cache"), OP, lane=Lane.AUTONOMOUS)
    async with client(url, token) as c:
        lease = (await c.post("/v1/claim", json={"lease_seconds": 60})).json()["lease"]
        qid = (
            await c.post("/v1/tasks/OB-1/questions", json={"epoch": lease["epoch"], "text": "ok?"})
        ).json()["id"]
        r = await c.get(f"/v1/questions/{qid}", params={"wait": 1})
        assert r.json()["status"] == "pending" and r.json()["lease_held"]
    left = await pool.fetchval(
        "select extract(epoch from lease_expires_at - now()) from task_leases"
    )
    assert left > 1700  # kept for OB_LEASE_TTL (1800 s) past the wait, not the 60 s it had
    kinds = [e.kind for e in await backlog.history("OB-1")]
    assert kinds[-1] == "heartbeat"


async def test_a_question_outliving_its_lease_goes_to_the_operator(
    gw, backlog: Backlog, make_agent
) -> None:
    url, _ = gw
    _, token = await make_agent("codex")
    await backlog.file(make_spec(title="drop a column"), OP, lane=Lane.AUTONOMOUS)
    async with client(url, token) as c:
        epoch = (await c.post("/v1/claim", json={})).json()["lease"]["epoch"]
        await c.post("/v1/tasks/OB-1/questions", json={"epoch": epoch, "text": "may I?"})
        r = await c.post("/v1/tasks/OB-1/release", json={"epoch": epoch})
        assert r.status_code == 200
        assert r.json()["lane"] == "requires_decision" and r.json()["status"] == "open"
        assert (await c.post("/v1/claim", json={})).json()["lease"] is None


async def test_mcp_ask_operator_and_claim_next_wait(gw, backlog: Backlog, make_agent) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from core.questions import Questions

    url, waits = gw
    _, token = await make_agent("claude-code")
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    async with (
        streamable_http_client(f"{url}/mcp/", http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {t.name for t in (await session.list_tools()).tools}
        assert {"ask_operator", "get_answer", "claim_next"} <= tools
        claim = asyncio.create_task(session.call_tool("claim_next", {"wait_seconds": 60}))
        await until(lambda: waits.waiting == 1, "claim_next waits")
        await backlog.file(make_spec(title="a cache"), OP, lane=Lane.AUTONOMOUS)
        res = await asyncio.wait_for(claim, 90)
        assert not res.is_error, res
        epoch = res.structured_content["lease"]["epoch"]
        res = await session.call_tool(
            "ask_operator",
            {"key": "OB-1", "epoch": epoch, "question": "Redis?", "wait_seconds": 0},
        )
        pending = res.structured_content
        assert pending["status"] == "pending" and "get_answer" in pending["message"]
        answer = asyncio.create_task(
            session.call_tool("get_answer", {"question_id": pending["id"], "wait_seconds": 60})
        )
        await until(lambda: waits.awaiting_answers == 1, "get_answer waits")
        await Questions(backlog).answer("OB-1", Actor.operator("cli"), "yes, redis")
        res = await asyncio.wait_for(answer, 90)
        assert res.structured_content["answer"] == "yes, redis"
        res = await session.call_tool("claim_next", {"wait_seconds": 61})
        assert res.is_error


async def test_the_cli_waits_asks_and_answers(
    gw, backlog: Backlog, make_agent, settings, tmp_path: Path
) -> None:
    url, waits = gw
    _, token = await make_agent("codex")
    base = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    agent = {**base, "OB_URL": url, "OB_AGENT_TOKEN": token, "OB_DATA_DIR": str(tmp_path)}
    operator = {**base, "OB_DATABASE_URL": settings.database_url, "OB_DATA_DIR": str(tmp_path)}
    operator["COLUMNS"] = "200"

    claim = asyncio.create_task(ob(agent, "next", "--wait", "60", "--json"))
    await until(lambda: waits.waiting == 1, "ob next --wait waits")
    code, out, err = await ob(operator, "add", "Pick a cache", "-l", "autonomous")
    assert code == 0, err
    code, out, err = await claim
    assert code == 0, err
    assert json.loads(out)["lease"]["key"] == "OB-1"

    code, out, err = await ob(agent, "ask", "OB-1", "Redis or Postgres?", "-o", "redis", "-o", "pg")
    assert code == 0, err
    assert "asked Q1 about OB-1" in out and "ob wait-answer 1" in out
    code, out, _ = await ob(operator, "questions")
    assert "Q1" in out and "Redis or Postgres?" in out and "1. redis / 2. pg" in out
    assert "agent waiting" in out  # codex holds the task it asked about
    waiting = asyncio.create_task(ob(agent, "wait-answer", "1", "--wait", "60"))
    await until(lambda: waits.awaiting_answers == 1, "ob wait-answer waits")
    code, out, err = await ob(operator, "answer", "Q1", "pg")
    assert code == 0, err
    code, out, err = await waiting
    assert code == 0, err
    assert "Q1 (OB-1) answered by operator:cli: pg" in out
    code, out, _ = await ob(operator, "questions")
    assert "no open questions" in out
    code, _, err = await ob(operator, "answer", "Q1", "redis")
    assert code == 1 and "already answered" in err


async def test_a_snoozed_task_sets_the_clock_for_its_day(
    gw, backlog: Backlog, make_agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task snoozed until tomorrow wakes waiting claims at the operator's midnight: in a time
    zone where it is 23:xx now, the hub's next round is due within the hour."""
    from datetime import UTC, datetime, timedelta

    from core.shaping import local_today

    _, waits = gw
    offset = (23 - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 14 else offset
    zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"
    settings = backlog.settings.model_copy(update={"timezone": zone})
    monkeypatch.setattr(waits.backlog, "settings", settings)
    tomorrow = local_today(settings.tz) + timedelta(days=1)
    await backlog.file(make_spec(title="tomorrow", trigger_on=tomorrow), OP, lane=Lane.AUTONOMOUS)
    midnight = datetime.combine(tomorrow, datetime.min.time(), tzinfo=settings.tz)
    due = await waits._until_clock()
    assert abs(due - (midnight - datetime.now(UTC)).total_seconds()) < 5
    assert 0 < due <= 3600
