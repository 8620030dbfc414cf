"""Agents and their bearer tokens.

A token is `ob_<id>_<secret>`: the id finds the agent row, the secret is checked against its
SHA-256 hash in constant time. Tokens carry 32 random bytes, so a fast hash is the right one;
the plain token is shown once, at `ob agent add`, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from core import events
from core.errors import BacklogError, Invalid, NotFound
from core.models import Actor
from core.tasks import REVOKE_SQL

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
TOKEN_RE = re.compile(r"^ob_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
AGENTS_CHANNEL = "ob_agents"  # NOTIFY on revocation: gateways drop their cached tokens


class Unauthorized(BacklogError):
    code = "unauthorized"


class HeldTask(BaseModel):
    key: str
    title: str
    epoch: int
    lease_expires_at: datetime


class AgentInfo(BaseModel):
    name: str
    created_at: datetime
    revoked_at: datetime | None
    git_emails: list[str]
    holding: list[HeldTask] = []


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_token() -> tuple[str, str, bytes]:
    """(token, token id, hash of its secret)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"ob_{token_id}_{secret}", token_id, _hash(secret)


async def add_agent(
    pool: asyncpg.Pool, name: str, actor: Actor, git_emails: list[str] | None = None
) -> tuple[AgentInfo, str]:
    name = name.strip().lower()
    if not NAME_RE.match(name):
        raise Invalid(
            f"agent name {name[:50]!r} is not valid: use 1-40 lowercase letters, digits, . _ -"
        )
    emails = sorted({e.strip().lower() for e in git_emails or [] if e.strip()})
    token, token_id, digest = new_token()
    async with pool.acquire() as conn, conn.transaction():
        try:
            row = await conn.fetchrow(
                "insert into agents (name, token_id, token_hash, git_emails) values ($1, $2, $3, $4)"
                " returning name, created_at, revoked_at, git_emails",
                name,
                token_id,
                digest,
                emails,
            )
        except asyncpg.UniqueViolationError:
            raise Invalid(
                f"an agent named {name!r} exists; revoke it first or choose another name"
            ) from None
        await events.record(conn, None, actor, "agent_added", {"agent": name, "git_emails": emails})
    return AgentInfo(**dict(row)), token


async def list_agents(pool: asyncpg.Pool, prefix: str) -> list[AgentInfo]:
    rows = await pool.fetch(
        """
        select a.name, a.created_at, a.revoked_at, a.git_emails,
               coalesce(json_agg(json_build_object('number', t.number, 'title', t.title,
                                                   'epoch', l.epoch,
                                                   'lease_expires_at', l.lease_expires_at)
                                 order by l.lease_expires_at)
                        filter (where t.id is not null), '[]') as holding
        from agents a
        left join (task_leases l join tasks t on t.id = l.task_id)
            on l.ready and l.lease_agent_id = a.id
        group by a.id order by a.revoked_at nulls first, a.name
        """
    )
    out = []
    for r in rows:
        holding = [
            HeldTask(
                key=f"{prefix}-{h['number']}",
                title=h["title"],
                epoch=h["epoch"],
                lease_expires_at=h["lease_expires_at"],
            )
            for h in r["holding"]
        ]
        out.append(
            AgentInfo(
                name=r["name"],
                created_at=r["created_at"],
                revoked_at=r["revoked_at"],
                git_emails=r["git_emails"],
                holding=holding,
            )
        )
    return out


async def revoke_agent(pool: asyncpg.Pool, name: str, actor: Actor) -> int:
    """Revoke an agent's token and hand its leases back to the queue; returns leases revoked."""
    async with pool.acquire() as conn, conn.transaction():
        agent_id = await conn.fetchval(
            "update agents set revoked_at = now() where name = $1 and revoked_at is null returning id",
            name.strip().lower(),
        )
        if agent_id is None:
            raise NotFound(f"no active agent named {name!r} (see `ob agent list`)")
        released = await conn.fetch(
            f"update task_leases set {REVOKE_SQL} where ready and lease_agent_id = $1"
            " returning task_id",
            agent_id,
        )
        for r in released:
            await events.record(conn, r["task_id"], actor, "lease_revoked", {"agent": name})
        await events.record(conn, None, actor, "agent_revoked", {"agent": name})
        await conn.execute("select pg_notify($1, $2)", AGENTS_CHANNEL, name)
        return len(released)


async def authenticate(pool: asyncpg.Pool, token: str | None) -> Actor:
    """The agent a bearer token belongs to; Unauthorized for a missing, bad or revoked token."""
    if not token:
        raise Unauthorized("missing bearer token; send 'Authorization: Bearer <token>'")
    m = TOKEN_RE.match(token.strip())
    if not m:
        raise Unauthorized("malformed token; tokens look like ob_<12 hex>_<43 chars>")
    row = await pool.fetchrow(
        "select id, name, token_hash, revoked_at from agents where token_id = $1", m.group(1)
    )
    # Compare even when no row matched so that timing does not reveal which ids exist.
    expected = row["token_hash"] if row else b"\0" * 32
    if not hmac.compare_digest(expected, _hash(m.group(2))) or row is None:
        raise Unauthorized("invalid token; ask the operator for a new one (`ob agent add`)")
    if row["revoked_at"] is not None:
        raise Unauthorized(f"the token of agent {row['name']!r} was revoked")
    return Actor.agent(row["name"], row["id"])
