"""A PostgreSQL restart under a running gateway: a clear 503 while it is down, then service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from core.backlog import Backlog
from core.db import create_pool, ensure_database
from core.embedded import start_embedded
from core.migrate import migrate
from core.models import Actor, Lane
from core.settings import load_settings
from core.spec import make_spec
from gateway.app import create_app
from gateway.server import serving


async def test_gateway_survives_a_postgres_restart(tmp_path: Path) -> None:
    from core.agents import add_agent

    server = await asyncio.to_thread(start_embedded, tmp_path)
    await ensure_database(server.get_uri("postgres"), "ob")
    url = server.get_uri("ob")
    await migrate(url)
    pool = await create_pool(url, max_size=4)
    backlog = Backlog(pool, load_settings(database_url=url, _env_file=None))
    _, token = await add_agent(backlog, "codex", Actor.operator("test"))
    for i in range(2):
        await backlog.file(make_spec(title=f"t{i}"), Actor.operator("test"), lane=Lane.AUTONOMOUS)
    try:
        async with (
            serving(create_app(backlog), "127.0.0.1", 0) as base,
            httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as c,
        ):
            assert (await c.post("/v1/claim")).json()["lease"]["key"] == "OB-1"
            await asyncio.to_thread(server.cleanup)  # PostgreSQL stops
            r = await c.post("/v1/claim")
            assert r.status_code == 503
            assert r.json()["error"] == "database_unavailable" and "retry" in r.json()["message"]
            server = await asyncio.to_thread(start_embedded, tmp_path)  # and comes back
            for _ in range(50):
                r = await c.post("/v1/claim")
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.2)
            assert r.status_code == 200 and r.json()["lease"]["key"] == "OB-2"
    finally:
        await pool.close()
        server.cleanup()
