"""Agents and their bearer tokens (see core.tokens): the plain token is shown once, at
`ob agent add`, and never stored."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel

from core import events
from core.backlog import require_operator
from core.errors import BacklogError, Invalid, NotFound
from core.models import Actor, EventKind, format_key
from core.service import Service
from core.tasks import REVOKE_SQL
from core.tokens import new_token, secret_matches, token_id

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
AGENTS_CHANNEL = "ob_agents"  # NOTIFY on revocation, rotation: gateways drop cached tokens


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


# A new agent, or a revoked one registered again under its name (the same identity, so its
# history stays one); an active agent of that name is left alone (no row returned).
_ADD = """
insert into agents as a (name, token_id, token_hash, git_emails) values ($1, $2, $3, $4)
on conflict (name) do update
    set token_id = excluded.token_id, token_hash = excluded.token_hash,
        git_emails = excluded.git_emails, revoked_at = null
    where a.revoked_at is not null
returning name, created_at, revoked_at, git_emails, (xmax = 0) as fresh
"""


class Agents(Service):
    """The agents the operator registers, and the tokens that name them."""

    async def add(
        self, name: str, actor: Actor, git_emails: list[str] | None = None
    ) -> tuple[AgentInfo, str]:
        """Register an agent; returns it and its token (shown once, stored only as a hash)."""
        require_operator(actor, "register agents")
        name = name.strip().lower()
        if not NAME_RE.match(name):
            raise Invalid(
                f"agent name {name[:50]!r} is not valid: use 1-40 lowercase letters, digits, . _ -"
            )
        emails = sorted({e.strip().lower() for e in git_emails or [] if e.strip()})
        token, token_id, digest = new_token()
        async with self.backlog.transaction() as conn:
            row = await conn.fetchrow(_ADD, name, token_id, digest, emails)
            if row is None:
                raise Invalid(
                    f"an agent named {name!r} is active; `ob agent rotate {name}` gives it a new "
                    "token, or choose another name"
                )
            details = {"agent": name, "git_emails": emails, "again": not row["fresh"]}
            await events.record(conn, None, actor, EventKind.AGENT_ADDED, details)
        return AgentInfo(**{k: row[k] for k in AgentInfo.model_fields if k in row}), token

    async def rotate(self, name: str, actor: Actor) -> tuple[AgentInfo, str]:
        """Give an active agent a new token: the old one stops working at once (gateways drop
        their cached tokens), the leases it holds are kept. Returns the agent and its new token."""
        require_operator(actor, "rotate agent tokens")
        name = name.strip().lower()
        token, token_id, digest = new_token()
        async with self.backlog.transaction() as conn:
            row = await conn.fetchrow(
                "update agents set token_id = $2, token_hash = $3"
                " where name = $1 and revoked_at is null"
                " returning name, created_at, revoked_at, git_emails",
                name,
                token_id,
                digest,
            )
            if row is None:
                raise NotFound(
                    f"no active agent named {name[:50]!r}; `ob agent add {name[:50]}` registers it"
                    " (again)"
                )
            await events.record(conn, None, actor, EventKind.AGENT_ROTATED, {"agent": name})
            await conn.execute("select pg_notify($1, $2)", AGENTS_CHANNEL, name)
        return AgentInfo(**dict(row)), token

    async def all(self) -> list[AgentInfo]:
        """Every agent, active first, with the tasks it holds."""
        prefix = self.prefix
        rows = await self.pool.fetch(
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
                    key=format_key(prefix, h["number"]),
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

    async def revoke(self, name: str, actor: Actor) -> int:
        """Revoke an agent's token and hand its leases back to the queue; returns leases revoked."""
        require_operator(actor, "revoke agents")
        async with self.backlog.transaction() as conn:
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
                await events.record(
                    conn, r["task_id"], actor, EventKind.LEASE_REVOKED, {"agent": name}
                )
            await events.record(conn, None, actor, EventKind.AGENT_REVOKED, {"agent": name})
            await conn.execute("select pg_notify($1, $2)", AGENTS_CHANNEL, name)
            return len(released)

    async def authenticate(self, token: str | None) -> Actor:
        """The agent a bearer token belongs to; Unauthorized for a missing, bad or revoked token."""
        if not token:
            raise Unauthorized("missing bearer token; send 'Authorization: Bearer <token>'")
        tid = token_id(token)
        if tid is None:
            raise Unauthorized("malformed token; tokens look like ob_<12 hex>_<43 chars>")
        row = await self.pool.fetchrow(
            "select id, name, token_hash, revoked_at from agents where token_id = $1", tid
        )
        if not secret_matches(row["token_hash"] if row else None, token) or row is None:
            raise Unauthorized(
                "invalid token (a rotated token is dead at once); ask the operator for the "
                "current one (`ob agent rotate NAME`)"
            )
        if row["revoked_at"] is not None:
            raise Unauthorized(f"the token of agent {row['name']!r} was revoked")
        return Actor.agent(row["name"], row["id"])
