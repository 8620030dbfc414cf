"""Migrations: numbered, each in its own transaction, serialised by an advisory lock."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from core.agents import Agents
from core.backlog import Backlog
from core.db import create_pool
from core.leases import Leases
from core.migrate import available_migrations, migrate
from core.models import Actor, Status
from core.settings import load_settings
from core.tasks import TaskFilter
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


async def migrate_before(conn: asyncpg.Connection, version: int) -> None:
    """Apply the migrations before `version`, as an older ob did (a database to upgrade)."""
    await conn.execute(
        "create table schema_migrations (version integer primary key, name text not null,"
        " applied_at timestamptz not null default now())"
    )
    for mig in available_migrations():
        if mig.version < version:
            await conn.execute(mig.sql)
            await conn.execute(
                "insert into schema_migrations (version, name) values ($1, $2)",
                mig.version,
                mig.name,
            )


# numbers reserved for branches being worked on at the same time
RESERVED: set[int] = set()


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    numbers = sorted(set(versions) | RESERVED)
    assert len(set(versions)) == len(versions)
    assert numbers == list(range(1, len(numbers) + 1))


async def test_the_database_checks_the_same_kinds_as_core(pool) -> None:
    """EventKind and OutboxKind are closed sets, and the database refuses any other kind."""
    from core.models import EventKind, OutboxKind

    for table, enum in (("events", EventKind), ("outbox", OutboxKind)):
        column_type = await pool.fetchval(
            "select atttypid::regtype::text from pg_attribute"
            " where attrelid = $1::regclass and attname = 'kind'",
            table,
        )
        labels = await pool.fetchval(
            "select array_agg(enumlabel::text) from pg_enum where enumtypid = $1::regtype",
            column_type,
        )
        assert set(labels) == {k.value for k in enum}, column_type
        with pytest.raises(asyncpg.InvalidTextRepresentationError):
            await pool.execute(f"select 'no_such_kind'::{column_type}")


async def test_claim_path_upgrade_moves_leases_off_the_task_row(
    admin_url: str, tmp_path: Path
) -> None:
    """005 on a database with data: leases, epochs and expiry counts move to task_leases."""
    url = await create_database(admin_url)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate_before(conn, 5)
            codex = await conn.fetchval(
                "insert into agents (name, token_id, token_hash) values ('codex', 'abc', '')"
                " returning id"
            )
            await conn.execute(
                """insert into tasks (title, status, lane, priority, created_by, repo,
                                      lease_agent_id, lease_expires_at, epoch, expiries)
                   values ('held', 'claimed', 'autonomous_safe', 1, 'operator:x', 'web',
                           $1, now() - interval '1 minute', 3, 1),
                          ('waiting', 'open', 'requires_investigation', 2, 'operator:x', null,
                           null, null, 2, 1),
                          ('triage', 'open', 'requires_triage', 0, 'operator:x', null,
                           null, null, 0, 0),
                          ('idea', 'draft', null, 0, 'agent:codex', null, null, null, 0, 0),
                          ('shipped', 'done', 'autonomous_safe', 0, 'operator:x', null,
                           null, null, 4, 0)""",
                codex,
            )
        finally:
            await conn.close()
        assert [m.version for m in await migrate(url)][0] == 5

        pool = await create_pool(url)
        try:
            settings = load_settings(database_url=url, data_dir=tmp_path, _env_file=None)
            backlog = Backlog(pool, settings)
            tasks = {t.title: t for t in await backlog.list(TaskFilter(include_closed=True))}
            held = tasks["held"]
            assert (held.status, held.lease_holder, held.epoch, held.expiries) == (
                Status.CLAIMED,
                "codex",
                3,
                1,
            )
            assert [
                (t.status, t.epoch, t.expiries) for t in map(tasks.get, ("waiting", "shipped"))
            ] == [
                (Status.OPEN, 2, 1),
                (Status.DONE, 4, 0),
            ]
            assert await pool.fetchval("select count(*) from tasks where status = 'claimed'") == 0
            ready = await pool.fetch(
                "select t.title from task_leases l join tasks t on t.id = l.task_id"
                " where l.ready order by l.priority"
            )
            assert [r["title"] for r in ready] == ["held", "waiting"]
            # the expired lease is reclaimable inside the claim, its epoch grows on
            _, token = await Agents(backlog).add("grok", Actor.operator("test"))
            grok = await Agents(backlog).authenticate(token)
            lease = await Leases(backlog).claim(grok)
            assert (lease.key, lease.epoch, lease.task.expiries) == (held.key, 4, 2)
        finally:
            await pool.close()
    finally:
        await drop_database(admin_url, url)


# Notices as core wrote them before 014 (payloads repeated the task's title and repo, and
# carried prose nothing read).
LEGACY_NOTICES = {
    "draft_filed": {
        "key": "OB-1",
        "by": "agent:codex",
        "status": "draft",
        "lane": "autonomous_safe",
        "title": "idea",
        "repo": "web",
        "imported_from": "/src/TODO.md",
        "duplicate_of": "OB-0",
    },
    "task_closed_by_commit": {
        "key": "OB-1",
        "title": "idea",
        "sha": "deadbeef",
        "repo": "web",
        "agent": "codex",
        "author": "codex@example.com",
        "subject": "Fix it",
        "held_by": None,
        "confirmed_by": None,
        "text": "closed by commit deadbee in web, by codex",
    },
    "evidence_lost": {
        "key": "OB-1",
        "title": "idea",
        "repo": "web",
        "branch": "main",
        "reason": "reverted",
        "commits": ["deadbeef"],
        "reverted_by": "cafebabe",
        "status": "done",
        "verified": False,
        "text": "OB-1's commit deadbee was reverted on main by cafebab",
    },
    "task_reopened": {
        "key": "OB-1",
        "by": "operator:cli",
        "from": "done",
        "to": "open",
        "lane": "autonomous_safe",
        "completed_by": "agent:codex",
        "completed_at": "2025-01-01T00:00:00+00:00",
        "commits": [],
        "note": None,
        "verified": False,
        "reason": "typo",
    },
    "handoff": {
        "key": "OB-1",
        "by": "agent:codex",
        "epoch": 2,
        "prerequisite": "OB-2",
        "reason": None,
        "prerequisite_status": "draft",
        "prerequisite_title": "first this",
    },
}


async def test_notices_waiting_at_the_upgrade_read_under_the_models(admin_url: str) -> None:
    """014: undelivered notices keep only the fields their model names (the models refuse any
    other); delivered ones are history and stay as they were."""
    from core.models import OutboxKind
    from core.notices import parse_payload

    url = await create_database(admin_url)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate_before(conn, 14)
            task = await conn.fetchval(
                "insert into tasks (title, status, lane, priority, created_by)"
                " values ('idea', 'open', 'requires_triage', 2, 'operator:x') returning id"
            )
            for kind, payload in LEGACY_NOTICES.items():
                await conn.execute(
                    "insert into outbox (kind, task_id, payload) values ($1, $2, $3::jsonb)",
                    kind,
                    task,
                    json.dumps(payload),
                )
            await conn.execute(
                "insert into outbox (kind, task_id, payload) values ('default_branch_changed',"
                " null, $1::jsonb)",
                json.dumps({"repo": "web", "from": "main", "to": "trunk", "path": "/src/web"}),
            )
            delivered = await conn.fetchval(
                "insert into outbox (kind, task_id, payload, delivered_at)"
                " values ('draft_filed', $1, $2::jsonb, now()) returning id",
                task,
                json.dumps(LEGACY_NOTICES["draft_filed"]),
            )
        finally:
            await conn.close()
        assert [m.version for m in await migrate(url)][0] == 14

        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("select id, kind, payload::text from outbox order by id")
        finally:
            await conn.close()
        for r in rows:
            payload = json.loads(r["payload"])
            if r["id"] == delivered:
                assert payload == LEGACY_NOTICES["draft_filed"]
                continue
            parse_payload(OutboxKind(r["kind"]), payload)  # raises on a field it does not name
        reopened = next(json.loads(r["payload"]) for r in rows if r["kind"] == "task_reopened")
        assert reopened == {
            "key": "OB-1",
            "by": "operator:cli",
            "from": "done",
            "to": "open",
            "reason": "typo",
        }
    finally:
        await drop_database(admin_url, url)


async def test_the_claim_path_upgrade_keeps_every_row_and_still_refuses_bad_ones(
    admin_url: str,
) -> None:
    """015 on a database with data: kinds become enum types and the task's single-column rules
    domains; every row reads as before, and a bad kind or status is still refused."""
    url = await create_database(admin_url)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate_before(conn, 15)
            task = await conn.fetchval(
                "insert into tasks (title, repo, status, lane, priority, created_by, status_word)"
                " values ('keep me', 'web', 'open', 'autonomous_safe', 1, 'operator:x',"
                " 'planned') returning id"
            )
            await conn.execute(
                "insert into events (task_id, actor, kind, details) values"
                " ($1, 'operator:x', 'filed', '{}'), ($1, 'operator:x', 'question_asked', '{}')",
                task,
            )
            await conn.execute(
                "insert into outbox (kind, task_id, payload) values ('task_edited', $1,"
                ' \'{"key": "OB-1", "by": "operator:x", "fields": ["title"]}\')',
                task,
            )
        finally:
            await conn.close()
        assert [m.version for m in await migrate(url)][0] == 15

        conn = await asyncpg.connect(url)
        try:
            kinds = await conn.fetch("select kind::text from events order by id")
            assert [k[0] for k in kinds] == ["filed", "question_asked"]
            assert await conn.fetchval("select kind::text from outbox") == "task_edited"
            row = await conn.fetchrow("select title, repo, status, lane, priority from tasks")
            assert tuple(row) == ("keep me", "web", "open", "autonomous_safe", 1)
            with pytest.raises(asyncpg.InvalidTextRepresentationError):
                await conn.execute(
                    "insert into events (task_id, actor, kind) values ($1, 'x', 'no_such')", task
                )
            for bad in ("status = 'claimed'", "lane = 'elsewhere'", "priority = 7", "title = ''"):
                with pytest.raises(asyncpg.CheckViolationError):
                    await conn.execute(f"update tasks set {bad} where id = $1", task)
        finally:
            await conn.close()
    finally:
        await drop_database(admin_url, url)
