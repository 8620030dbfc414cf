"""Test fixtures: a real PostgreSQL (OB_TEST_DATABASE_URL, else an embedded server), one fresh
migrated database per session, emptied between tests."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from core.backlog import Backlog
from core.db import create_pool
from core.migrate import migrate
from core.settings import Settings, load_settings


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser URL: the system server from OB_TEST_DATABASE_URL, or an embedded one."""
    url = os.environ.get("OB_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from core.embedded import start_embedded

    server = start_embedded(tmp_path_factory.mktemp("embedded"))
    yield server.get_uri("postgres")
    server.cleanup()


async def create_database(admin_url: str) -> str:
    """A fresh empty database on the test server; returns its URL."""
    name = "ob_test_" + secrets.token_hex(4)
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"create database {name}")
    finally:
        await conn.close()
    return database_url(admin_url, name)


def database_url(admin_url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path="/" + name))


async def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"drop database if exists {name} with (force)")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def db_url(admin_url: str) -> AsyncIterator[str]:
    url = await create_database(admin_url)
    await migrate(url)
    yield url
    await drop_database(admin_url, url)


@pytest.fixture(scope="session")
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url, max_size=40)
    yield pool
    await pool.close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(database_url=db_url, data_dir=tmp_path, _env_file=None)


@pytest.fixture
async def clean(pool: asyncpg.Pool) -> AsyncIterator[None]:
    async with pool.acquire() as conn:
        tables = await conn.fetchval(
            "select string_agg(quote_ident(tablename), ', ') from pg_tables"
            " where schemaname = 'public' and tablename <> 'schema_migrations'"
        )
        await conn.execute(f"truncate {tables} restart identity cascade")
        await conn.execute("alter sequence task_number_seq restart")
    yield
    async with pool.acquire() as conn:
        out_of_step = await conn.fetch(LEASES_OUT_OF_STEP)
    assert not out_of_step, f"lease rows out of step with their tasks: {out_of_step}"


# Every lease row agrees with its task (the ready queue's copy, sql/005 and 015): checked after
# every test, so a statement that changes a task's lifecycle and forgets its lease fails here.
LEASES_OUT_OF_STEP = """
select t.number, t.status, t.lane, l.ready, l.lease_agent_id
from tasks t join task_leases l on l.task_id = t.id
where l.ready <> (t.status = 'open' and t.lane in ('autonomous_safe', 'requires_investigation'))
   or (l.priority, l.repo, l.trigger_on) is distinct from (t.priority, t.repo, t.trigger_on)
   or (l.lease_agent_id is not null and not l.ready)
limit 5
"""


@pytest.fixture
async def backlog(pool: asyncpg.Pool, settings: Settings, clean: None) -> Backlog:
    return Backlog(pool, settings)


@pytest.fixture
def leases(backlog: Backlog):
    from core.leases import Leases

    return Leases(backlog)


@pytest.fixture
def make_agent(backlog: Backlog):
    """Register an agent; returns (actor, token)."""
    from core.agents import Agents
    from core.models import Actor

    async def make(name: str, **kw):
        _, token = await Agents(backlog).add(name, Actor.operator("test"), **kw)
        return await Agents(backlog).authenticate(token), token

    return make


@pytest.fixture
async def gateway(backlog: Backlog):
    """The agent gateway over a real socket; yields its base URL."""
    from gateway.app import create_app
    from gateway.server import serving

    async with serving(partial(create_app, backlog), "127.0.0.1", 0) as gw:
        yield gw.url


@pytest.fixture
async def cli_env(admin_url: str) -> AsyncIterator[dict[str, str]]:
    """The environment of an `ob` process over a fresh database of its own."""
    url = await create_database(admin_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(OB_DATABASE_URL=url, COLUMNS="200")
    yield env
    await drop_database(admin_url, url)


@pytest.fixture
async def waiting_gateway(backlog: Backlog):
    """The agent gateway over a real socket; yields its base URL and its waiting hub
    (core.waiting.Waits), to see who waits and what woke them."""
    from gateway.app import create_app
    from gateway.server import serving

    apps = []

    def make():
        apps.append(create_app(backlog))
        return apps[-1]

    async with serving(make, "127.0.0.1", 0) as gw:
        yield gw.url, apps[-1].state.waits


@pytest.fixture
def make_repo(tmp_path: Path):
    """make_repo("web") -> a real git repository (tests/test_git_helpers.GitRepo) under
    tmp_path/repos."""
    from tests.test_git_helpers import repo_factory

    return repo_factory(tmp_path)


@pytest.fixture
def make_forge(tmp_path: Path):
    """make_forge("web") -> a bare origin with clones (tests/test_git_helpers.Forge) under
    tmp_path/forges/web."""
    from tests.test_git_helpers import Forge

    def make(name: str, branch: str = "main") -> Forge:
        return Forge(tmp_path / "forges" / name, branch=branch)

    return make
