"""Benchmark plumbing: a fresh database on a real server, and latency statistics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from core.migrate import migrate


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new migrated database on OB_BENCH_DATABASE_URL / OB_TEST_DATABASE_URL, else on an
    embedded server; dropped afterwards."""
    admin = os.environ.get("OB_BENCH_DATABASE_URL") or os.environ.get("OB_TEST_DATABASE_URL")
    server = None
    if not admin:
        from core.embedded import start_embedded

        server = start_embedded(Path(tempfile.mkdtemp(prefix="ob-bench-")))
        admin = server.get_uri("postgres")
    name = "ob_bench_" + secrets.token_hex(4)
    conn = await asyncpg.connect(admin)
    await conn.execute(f"create database {name}")
    await conn.close()
    url = urlunsplit(urlsplit(admin)._replace(path="/" + name))
    await migrate(url)
    try:
        yield url
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f"drop database if exists {name} with (force)")
        await conn.close()
        if server is not None:
            server.cleanup()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def summary_ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"p50 {percentile(ms, 50):6.2f} ms  p99 {percentile(ms, 99):6.2f} ms  mean {statistics.fmean(ms):6.2f} ms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`ob serve` in its own process (no bot) against `url`, on a free port."""

    def __init__(self, url: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OB_DATABASE_URL": url, "OB_GATEWAY_PORT": str(self.port)}
        env.pop("OB_BOT_TOKEN", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        """Returns once its gateway answers (or after 30 s)."""
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/v1/health").status_code == 200:
                    return
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 10)
