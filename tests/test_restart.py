"""PostgreSQL going away under `ob`, on a server the test owns (never the shared one): the
gateway answers 503 with Retry-After (never 500) while it is down or starting, and serves again
once it is back; `ob serve` started while it is down waits for it; other verbs say so in one
line."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest

from core.agents import Agents
from core.backlog import Backlog
from core.db import create_pool, ensure_database
from core.embedded import start_embedded
from core.migrate import migrate
from core.models import Actor, Lane
from core.settings import load_settings
from core.spec import make_spec
from gateway.app import create_app
from gateway.server import serving

OP = Actor.operator("test")


@dataclass
class OwnServer:
    """An embedded PostgreSQL the test may stop and start at will."""

    path: Path
    url: str
    server: object

    async def stop(self) -> None:
        await asyncio.to_thread(self.server.cleanup)  # type: ignore[attr-defined]

    async def start(self) -> None:
        self.server = await asyncio.to_thread(start_embedded, self.path)


@pytest.fixture
async def own(tmp_path: Path) -> AsyncIterator[OwnServer]:
    server = await asyncio.to_thread(start_embedded, tmp_path)
    await ensure_database(server.get_uri("postgres"), "ob")
    url = server.get_uri("ob")
    await migrate(url)
    own = OwnServer(tmp_path, url, server)
    yield own
    await own.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_gateway_answers_503_through_a_restart(own: OwnServer) -> None:
    pool = await create_pool(own.url, max_size=4)
    backlog = Backlog(pool, load_settings(database_url=own.url, _env_file=None))
    _, token = await Agents(backlog).add("codex", OP)
    _, fresh = await Agents(backlog).add("grok", OP)  # never used: not in the token cache
    for i in range(3):
        await backlog.file(make_spec(title=f"t{i}"), OP, lane=Lane.AUTONOMOUS)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            serving(partial(create_app, backlog), "127.0.0.1", 0) as gateway,
            httpx.AsyncClient(base_url=gateway.url, headers=auth, timeout=30) as c,
        ):
            lease = (await c.post("/v1/claim")).json()["lease"]
            assert lease["key"] == "OB-1"
            statuses: Counter[int] = Counter()
            bodies: list[str] = []
            done = asyncio.Event()

            async def hammer() -> None:
                """Agents keep calling while the server stops, is down, and starts again."""
                mcp = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
                mcp_headers = {"Authorization": f"Bearer {fresh}", "accept": "application/json"}
                while not done.is_set():
                    for r in await asyncio.gather(
                        c.post("/v1/tasks/OB-1/heartbeat", json={"epoch": lease["epoch"]}),
                        c.get("/v1/tasks"),
                        c.get("/v1/tasks/OB-2"),
                        c.post("/v1/tasks", json={"text": "an idea"}),
                        c.post("/mcp/", json=mcp, headers=mcp_headers),
                        c.get("/v1/health"),
                    ):
                        statuses[r.status_code] += 1
                        if r.status_code >= 500:
                            bodies.append(r.text)
                            assert r.headers.get("retry-after"), r.text
                    await asyncio.sleep(0.02)

            hammering = asyncio.create_task(hammer())
            await asyncio.sleep(0.3)
            await own.stop()  # PostgreSQL shuts down ...
            await asyncio.sleep(1.0)
            r = await c.post("/v1/claim")
            assert r.status_code == 503 and r.headers["retry-after"] == "2"
            assert r.json()["error"] == "database_unavailable" and "retry" in r.json()["message"]
            health = await c.get("/v1/health")
            assert health.status_code == 503 and health.json()["database"] == "unavailable"
            await own.start()  # ... and comes back
            for _ in range(100):
                r = await c.post("/v1/claim")
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.2)
            done.set()
            await hammering
            assert r.status_code == 200 and r.json()["lease"]["key"] == "OB-2"
            assert statuses[503] > 0 and set(statuses) <= {200, 201, 503}, statuses
            # nothing about the failure's internals reaches the caller
            assert not any("Error" in b or "asyncpg" in b for b in bodies), bodies[:3]
    finally:
        await pool.close()


def ob(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_serve_waits_for_postgres_and_verbs_say_it_is_down(
    own: OwnServer, tmp_path: Path
) -> None:
    await own.stop()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(
        OB_DATABASE_URL=own.url, OB_GATEWAY_PORT=str(port), OB_DATA_DIR=str(tmp_path / "data")
    )
    r = await asyncio.to_thread(ob, "list", env=env)
    assert r.returncode == 3 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()  # one clear line, no traceback
    assert line.startswith("error: cannot connect to PostgreSQL at") and "OB_DATABASE_URL" in line

    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - lives with the process
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "serve", env=env, stdout=log, stderr=log
    )
    try:
        for _ in range(200):
            if "waiting for PostgreSQL at" in (tmp_path / "serve.log").read_text():
                break
            await asyncio.sleep(0.05)
        assert serve.returncode is None
        await asyncio.sleep(2.5)  # it keeps waiting, one line per attempt
        waiting = (tmp_path / "serve.log").read_text()
        assert waiting.count("waiting for PostgreSQL at") >= 2 and "Traceback" not in waiting
        await own.start()
        async with httpx.AsyncClient(timeout=5) as c:
            for _ in range(200):
                try:
                    if (await c.get(f"http://127.0.0.1:{port}/v1/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError((tmp_path / "serve.log").read_text()[-3000:])
    finally:
        serve.terminate()
        await asyncio.wait_for(serve.wait(), 20)
        log.close()
    assert serve.returncode == 0
