"""`ob serve` as the operator runs it, with OB_FORGE_SECRET set: a forge's signed push webhook
makes it fetch the repo and close the task at once (the "forge hooks" part, supervised and shown
in `ob status`), long before the next scheduled round."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx

from core.backlog import Backlog
from core.db import create_pool
from core.migrate import migrate
from core.models import Status
from core.settings import load_settings
from tests.conftest import create_database, drop_database
from tests.filing import file
from tests.test_forge_hooks import github_headers, github_push, web_on_a_forge
from tests.test_restart import free_port

SECRET = "a-forge-secret"


async def test_ob_serve_closes_a_task_from_a_push_webhook(
    admin_url: str, tmp_path: Path, make_forge
) -> None:
    url = await create_database(admin_url)
    await migrate(url)
    pool = await create_pool(url, max_size=4)
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - lives with the process
    serve = None
    try:
        backlog = Backlog(pool, load_settings(database_url=url, _env_file=None))
        forge, agent = await web_on_a_forge(backlog, make_forge)
        key = await file(backlog, "ship it", repo="web")

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
        env.update(
            OB_DATABASE_URL=url,
            OB_GATEWAY_PORT=str(port),
            OB_DATA_DIR=str(tmp_path / "data"),
            OB_FORGE_SECRET=SECRET,
            OB_RECONCILE_EVERY="3600",  # the round at start-up, then none during the test
        )
        serve = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", "serve", env=env, stdout=log, stderr=log
        )
        for _ in range(600):  # until the start-up round has read the repo
            if await pool.fetchval("select last_scan_at is not null from repos"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError((tmp_path / "serve.log").read_text()[-3000:])

        sha = agent.commit(f"Ship it\n\nCloses: {key}\n")
        agent.git("push", "-q", "origin", "main")
        body = json.dumps(github_push(forge)).encode()
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.post(
                f"http://127.0.0.1:{port}/v1/hooks/github",
                content=body,
                headers=github_headers(body, secret=SECRET),
            )
        assert r.status_code == 202, r.text
        for _ in range(600):
            if (await backlog.get(key)).status is Status.DONE:
                break
            await asyncio.sleep(0.05)
        task = await backlog.get(key)
        assert task.status is Status.DONE and task.commits == [sha], (
            tmp_path / "serve.log"
        ).read_text()[-3000:]
        async with httpx.AsyncClient(timeout=30) as c:
            health = (await c.get(f"http://127.0.0.1:{port}/v1/health")).json()
        assert health["parts"]["forge hooks"] == "running"
    finally:
        if serve is not None:
            serve.terminate()
            await asyncio.wait_for(serve.wait(), 20)
        log.close()
        await pool.close()
        await drop_database(admin_url, url)
    assert serve.returncode == 0
