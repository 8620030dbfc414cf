"""Property-based fuzz of the gateway's OpenAPI schema (schemathesis): no input gives a 5xx."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from core.agents import Agents
from core.backlog import Backlog
from core.db import create_pool
from core.models import Actor, Lane
from core.settings import load_settings
from core.spec import make_spec
from tests.conftest import create_database, drop_database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_openapi_fuzz_never_5xx(admin_url: str) -> None:
    from core.migrate import migrate

    url = await create_database(admin_url)
    await migrate(url)
    pool = await create_pool(url)
    backlog = Backlog(pool, load_settings(database_url=url, _env_file=None))
    _, token = await Agents(backlog).add("fuzzer", Actor.operator("test"))
    for i in range(3):
        await backlog.file(
            make_spec(title=f"task {i}"), Actor.operator("test"), lane=Lane.AUTONOMOUS
        )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(OB_DATABASE_URL=url, OB_GATEWAY_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
        await asyncio.to_thread(_fuzz, base, token)
    finally:
        proc.terminate()
        proc.wait(20)
        await pool.close()
        await drop_database(admin_url, url)


def _fuzz(base: str, token: str) -> None:
    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    failures: list[str] = []
    statuses: list[int] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategy = schema.as_strategy(mode, headers={"Authorization": f"Bearer {token}"})

        @settings(
            max_examples=150,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def check(case: schemathesis.Case) -> None:
            _no_long_waits(case)
            response = case.call(base_url=base, timeout=30)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:200]} body={case.body!r} query={case.query!r}"
                )
            assert response.status_code < 500, failures[-1]

        check()
    assert failures == []
    # the fuzz reached the handlers, not just the validation layer
    assert len(statuses) > 200 and {200, 422} <= set(statuses), sorted(set(statuses))


def _no_long_waits(case: schemathesis.Case) -> None:
    """A waiting claim or answer may be held up to a minute by design (nothing ready, nobody
    answering): fuzzed waits are cut to a second so that the fuzz tests answers, not patience."""
    if isinstance(case.body, dict) and isinstance(case.body.get("wait_seconds"), int | float):
        case.body["wait_seconds"] = min(case.body["wait_seconds"], 1)
    if isinstance(case.query, dict) and isinstance(case.query.get("wait"), int | float):
        case.query["wait"] = min(case.query["wait"], 1)
