"""Migrations: numbered, each in its own transaction, serialised by an advisory lock."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from core.migrate import available_migrations
from tests.conftest import create_database, drop_database


async def test_two_processes_migrating_at_once(admin_url: str) -> None:
    url = await create_database(admin_url)
    try:
        env = {**os.environ, "OB_DATABASE_URL": url}
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cli.main",
                "migrate",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        results = [await p.communicate() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], results
        outputs = [out.decode().strip() for out, _ in results]
        # exactly one process applied the migrations; the other found nothing left to do
        assert sum(o.endswith("up to date") for o in outputs) == 1, outputs
        assert sum(o.endswith("migration(s) applied") for o in outputs) == 1, outputs
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("select version from schema_migrations order by version")
        finally:
            await conn.close()
        assert [r["version"] for r in rows] == [m.version for m in available_migrations()]
    finally:
        await drop_database(admin_url, url)


# Numbers handed out to migrations of branches not merged here yet (issue 11 ships 008).
RESERVED = {5, 6, 7}


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == [v for v in range(1, max(versions) + 1) if v not in RESERVED - {*versions}]


async def test_the_database_checks_the_same_kinds_as_core(pool) -> None:
    """EventKind and OutboxKind are closed sets, and the database refuses any other kind."""
    import re

    from core.models import EventKind, OutboxKind

    for table, enum in (("events", EventKind), ("outbox", OutboxKind)):
        definition = await pool.fetchval(
            "select pg_get_constraintdef(oid) from pg_constraint where conname = $1",
            f"{table}_kind_known",
        )
        assert set(re.findall(r"'([a-z_]+)'::text", definition)) == {k.value for k in enum}
