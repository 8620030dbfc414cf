"""Numbered SQL migrations from the sql package, applied in order under an advisory lock.

Each file runs in its own transaction and is recorded in `schema_migrations`; two processes
starting at once serialise on the lock, and the second finds nothing left to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

MIGRATION_LOCK = 0x0B_5C_E4A  # pg_advisory_lock key shared by every `ob` process
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


class MigrationError(Exception):
    pass


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("sql").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


async def up_to_date(conn: asyncpg.Connection | asyncpg.Pool) -> bool:
    """Is the schema exactly what this ob knows? (One query; anything else goes to `migrate`,
    which applies what is missing under its lock, or refuses a newer database.)"""
    if await conn.fetchval("select to_regclass('schema_migrations')") is None:
        return False
    applied = await conn.fetchval("select array_agg(version) from schema_migrations")
    return {m.version for m in available_migrations()} == set(applied or [])


async def migrate(url: str) -> list[Migration]:
    """Apply pending migrations; returns the ones this call applied."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("select pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                "create table if not exists schema_migrations ("
                " version integer primary key, name text not null,"
                " applied_at timestamptz not null default now())"
            )
            applied = {
                r["version"] for r in await conn.fetch("select version from schema_migrations")
            }
            known = available_migrations()
            newer = applied - {m.version for m in known}
            if newer:
                raise MigrationError(
                    f"the database has migrations this ob does not know ({sorted(newer)}); "
                    "upgrade ob before running it against this database"
                )
            done = []
            for mig in known:
                if mig.version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "insert into schema_migrations (version, name) values ($1, $2)",
                        mig.version,
                        mig.name,
                    )
                done.append(mig)
            return done
        finally:
            await conn.execute("select pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
