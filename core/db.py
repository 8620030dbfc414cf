"""Connecting to PostgreSQL: the configured server, or the embedded one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg

from core.migrate import Migration, migrate, up_to_date
from core.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "ob"


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached; the message says where we looked and what to check."""


# Failures that mean "the database is unreachable, starting up or shutting down; try again
# shortly", as opposed to a refusal of the request itself. The gateway answers them with 503.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,  # refused, reset, timed out
    DatabaseUnavailable,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down
    asyncpg.AdminShutdownError,  # 57P01
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.InternalClientError,  # "cannot switch to state ...": a connection lost mid-query
)


class Connection(asyncpg.Connection):
    """Pool connections skip asyncpg's reset query on release (one round trip per use).

    Nothing here keeps session state on pooled connections: listeners use their own
    connections and migrations their own; an open transaction is still rolled back."""

    def get_reset_query(self) -> str:
        return ""


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def where(url: str) -> str:
    """host:port/database of a URL, without credentials, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost (socket)"
    return f"{host}:{parts.port or 5432}{parts.path or ''}"


def unreachable(url: str, err: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {where(url)} ({describe_briefly(err)}); check that it "
        "runs and OB_DATABASE_URL, or unset OB_DATABASE_URL to use the embedded server"
    )


def describe_briefly(err: BaseException) -> str:
    return (str(err).strip().split("\n")[0] or type(err).__name__)[:200]


async def wait_for_postgres(url: str, stop: asyncio.Event, *, most: float = 30.0) -> bool:
    """Wait until PostgreSQL answers at `url`, one log line per attempt; False if `stop` is set
    first."""
    delay = 1.0
    while not stop.is_set():
        try:
            conn = await asyncpg.connect(url, timeout=10)
        except (*UNAVAILABLE, asyncpg.InvalidCatalogNameError) as err:
            log.warning(
                "waiting for PostgreSQL at %s (%s); next try in %.0fs",
                where(url),
                describe_briefly(err),
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, most)
            continue
        await conn.close()
        return True
    return False


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            command_timeout=60,
            connection_class=Connection,
        )
    except (*UNAVAILABLE, asyncpg.PostgresError) as err:
        raise unreachable(url, err) from err
    assert pool is not None
    return pool


async def ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'create database "{name}"')  # a constant name, never input
    finally:
        await conn.close()


async def resolve_url(settings: Settings) -> str:
    """The URL to use: OB_DATABASE_URL, or the embedded server (started if needed)."""
    if settings.database_url:
        return settings.database_url
    from core.embedded import start_embedded

    server = await asyncio.to_thread(start_embedded, settings.data_dir)
    await ensure_database(server.get_uri("postgres"), EMBEDDED_DATABASE)
    return server.get_uri(EMBEDDED_DATABASE)


async def migrate_database(settings: Settings) -> list[Migration]:
    """`ob migrate` / `ob init`: apply what is pending; returns what this call applied."""
    url = await resolve_url(settings)
    try:
        return await migrate(url)
    except UNAVAILABLE as err:
        raise unreachable(url, err) from err


@dataclass
class Database:
    url: str
    pool: asyncpg.Pool


@asynccontextmanager
async def open_database(
    settings: Settings,
    *,
    run_migrations: bool = True,
    max_size: int = 10,
    url: str | None = None,
) -> AsyncIterator[Database]:
    """A pool on the configured (or embedded, or given) server, migrated."""
    url = url or await resolve_url(settings)
    pool = await create_pool(url, max_size=max_size)
    try:
        if run_migrations and not await up_to_date(pool):
            await migrate(url)
    except UNAVAILABLE as err:
        await pool.close()
        raise unreachable(url, err) from err
    except BaseException:
        await pool.close()
        raise
    try:
        yield Database(url=url, pool=pool)
    finally:
        await pool.close()
