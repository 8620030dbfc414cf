"""Benchmark plumbing: a fresh database on a real server, and latency statistics."""

from __future__ import annotations

import os
import secrets
import statistics
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

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
