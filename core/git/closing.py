"""Links and closes: what the task keys a scan found in commit messages do to the tasks.

Every commit that names a task is linked (`task_commits`, a `commit_linked` event), on any
branch, in any repo; `task_commits`' primary key makes linking idempotent. A closing reference
(`Closes|Fixes|Resolves OB-12`, or the trailer) on the default branch closes the task
(`closed_by_commit` + outbox `task_closed_by_commit`; an agent holding the task loses its
lease: `closed_while_claimed`); a done task without confirmed evidence is verified by such a
commit (`verified`). A revert never closes: it links to the tasks it names, as a revert.

A commit closes only tasks of its own repo, and tasks of no repo. A closing reference to
another repo's unfinished task closes nothing: it is linked, and the operator gets a notice
(`cross_repo_close`, one `cross_repo_asks` row per task and commit) to close it with one tap or
ignore it (crossrepo.py); the closing commit is then the task's evidence, in that repo
(`tasks.evidence_repo`), and loses its verification like any other if it is reverted there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.git.scan import ScanState
from core.tasks import LEASE_JOIN, STATUS_SQL

_KNOWN = "select number from tasks where number = any($1::bigint[])"

_LINK = """
with m as (
    select * from unnest($2::bigint[], $3::text[], $4::bool[], $5::bool[], $6::text[],
                         $7::text[], $8::text[], $9::timestamptz[], $10::text[])
        as m(number, sha, closes, on_default, agent, author_email, subject, committed_at, reverts)
)
insert into task_commits as tc (task_id, repo_id, sha, closes, on_default, agent, author_email,
                                subject, committed_at, reverts)
select t.id, $1, m.sha, m.closes, m.on_default, m.agent, m.author_email, m.subject,
       m.committed_at, string_to_array(m.reverts, ',')
from m join tasks t on t.number = m.number
on conflict (task_id, repo_id, sha) do update
    set on_default = true, closes = excluded.closes
    where not tc.on_default and excluded.on_default
returning tc.task_id, tc.sha, tc.closes, tc.on_default, tc.agent, tc.author_email, tc.subject,
          tc.reverts, (xmax = 0) as fresh
"""

# $1 task ids, $2 shas, $3 agents, $4 author emails, $5 subjects, $6 repo, $7 key prefix,
# $8 the evidence's repo when it is not the task's own (a cross-repo close the operator
# confirmed, $9: who), else null
_CLOSE = f"""
with c as (
    select * from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
        as c(task_id, sha, agent, author_email, subject)
),
prev as (
    select t.id, {STATUS_SQL} as status, l.epoch, a.name as holder
    from tasks t join c on c.task_id = t.id {LEASE_JOIN}
    where t.status in ('draft', 'open')
    order by t.id
    for no key update of t, l
),
-- the task leaves the ready queue and a holder loses its lease (the epoch grows) as it closes
lease as (
    update task_leases l set lease_agent_id = null, lease_expires_at = null, ready = false,
        epoch = l.epoch + (l.lease_agent_id is not null)::int,
        changed_at = case when l.lease_agent_id is null then l.changed_at else now() end
    from prev p where l.task_id = p.id
),
upd as (
    update tasks t set
        status = 'done',
        completed_by = 'git:' || coalesce(c.agent, c.author_email),
        completed_at = now(),
        commits = case when c.sha = any(t.commits) then t.commits else t.commits || c.sha end,
        verified_at = now(),
        evidence_lost = null,
        evidence_repo = $8::text,
        status_at = now(),
        updated_at = now()
    from c join prev p on p.id = c.task_id
    where t.id = c.task_id
    returning t.id, t.number, p.status as prev_status, p.holder, p.epoch as prev_epoch,
              c.sha, c.agent, c.author_email, c.subject
),
ev as (
    insert into events (task_id, actor, kind, details)
    select u.id, coalesce($9::text, case when u.agent is null then 'git' else 'git:' || u.agent end),
           v.kind, v.details
    from upd u cross join lateral (values
        (1, 'closed_by_commit',
         jsonb_build_object('sha', u.sha, 'repo', $6::text, 'agent', u.agent,
                            'author', u.author_email, 'subject', u.subject,
                            'previous_status', u.prev_status, 'verified', true)
         || case when $9::text is null then '{{}}'::jsonb
                 else jsonb_build_object('cross_repo', true, 'confirmed_by', $9::text) end),
        (2, case when u.prev_status = 'claimed' then 'closed_while_claimed' end,
         jsonb_build_object('holder', u.holder, 'epoch', u.prev_epoch, 'sha', u.sha,
                            'repo', $6::text))
    ) as v(ord, kind, details)
    where v.kind is not null
),
ob as (
    insert into outbox (kind, task_id, payload)
    select 'task_closed_by_commit', u.id,
           jsonb_build_object('key', task_key($7, u.number), 'sha', u.sha, 'repo', $6::text,
                              'agent', u.agent, 'author', u.author_email,
                              'subject', u.subject, 'confirmed_by', $9::text)
    from upd u
    union all
    select 'closed_while_claimed', u.id,
           jsonb_build_object('key', task_key($7, u.number), 'holder', u.holder,
                              'sha', u.sha, 'repo', $6::text)
    from upd u where u.prev_status = 'claimed'
)
select id, prev_status from upd
"""

# A done task git has not confirmed (an agent's commits not on the branch, no commits, or
# evidence lost): a closing commit on the default branch becomes its evidence.
# $1 task ids, $2 shas, $3 agents, $4 subjects, $5 repo, $6 key prefix
_REVERIFY = """
with c as (
    select * from unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
        as c(task_id, sha, agent, subject)
),
prev as (
    select t.id, t.commits from tasks t join c on c.task_id = t.id
    where t.status = 'done' and t.verified_at is null
    order by t.id
    for no key update of t
),
upd as (
    update tasks t set commits = array[c.sha], verified_at = now(), evidence_lost = null,
                       evidence_repo = null, updated_at = now()
    from c join prev p on p.id = c.task_id
    where t.id = c.task_id
    returning t.id, t.number, t.completed_by, p.commits as before, c.sha,
              c.agent, c.subject
),
ev as (
    insert into events (task_id, actor, kind, details)
    select id, case when agent is null then 'git' else 'git:' || agent end, 'verified',
           jsonb_build_object('commits', array[sha], 'repo', $5::text, 'closing_commit', sha,
                              'subject', subject, 'replaced', before)
    from upd
),
ob as (
    insert into outbox (kind, task_id, payload)
    select 'task_verified', id,
           jsonb_build_object('key', task_key($6, number), 'repo', $5::text,
                              'commits', array[sha], 'by', completed_by, 'replaced', before)
    from upd
)
select id from upd
"""

# Whose tasks closing references name: a commit closes tasks of its own repo (or of none).
_OWNERS = "select id, repo from tasks where id = any($1::bigint[])"

# Another repo's unfinished tasks that a closing reference names: ask the operator, once per
# task and commit. $1 task ids, $2 shas, $3 agents, $4 author emails, $5 subjects, $6 repo id,
# $7 repo name, $8 key prefix
_ASK = """
with c as (
    select * from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
        as c(task_id, sha, agent, author_email, subject)
),
a as (
    insert into cross_repo_asks (task_id, repo_id, sha, agent, author_email, subject)
    select c.task_id, $6, c.sha, c.agent, c.author_email, c.subject
    from c join tasks t on t.id = c.task_id
    where t.status in ('draft', 'open')
    on conflict (task_id, repo_id, sha) do nothing
    returning id, task_id, sha, agent, author_email, subject
)
insert into outbox (kind, task_id, payload)
select 'cross_repo_close', a.task_id,
       jsonb_build_object('key', task_key($8, t.number), 'repo', $7::text, 'sha', a.sha,
                          'agent', a.agent, 'author', a.author_email, 'subject', a.subject,
                          'ask', a.id)
from a join tasks t on t.id = a.task_id
returning task_id
"""

_LINKED_EVENTS = """
insert into events (task_id, actor, kind, details)
select task_id, actor, 'commit_linked', details::jsonb
from unnest($1::bigint[], $2::text[], $3::text[]) as e(task_id, actor, details)
"""


@dataclass
class Linked:
    """What one scan's mentions did."""

    linked: int = 0
    closed: int = 0
    closed_while_claimed: int = 0
    reverified: int = 0  # done tasks a closing commit verified (again)
    asked: int = 0  # another repo's tasks a closing reference names: the operator is asked
    unknown_keys: int = 0


async def link_and_close(
    conn: asyncpg.Connection,
    prefix: str,
    repo_id: int,
    repo: str,
    st: ScanState,
    reverted: set[str],
    emails: dict[str, str],
) -> Linked:
    """Link every mention of a known task, close or verify what closing references on the
    default branch name (not `reverted` ones), in this transaction."""
    res = Linked()
    found = st.mentions
    if not found:
        return res
    numbers = sorted({m.number for m in found})
    known = {r["number"] for r in await conn.fetch(_KNOWN, numbers)}
    res.unknown_keys = sum(1 for m in found if m.number not in known)
    found = [m for m in found if m.number in known]
    if not found:
        return res
    links = await conn.fetch(
        _LINK,
        repo_id,
        [m.number for m in found],
        [m.sha for m in found],
        [m.closes for m in found],
        [m.on_default for m in found],
        [m.agent or emails.get(m.author_email) for m in found],
        [m.author_email for m in found],
        [m.subject for m in found],
        [m.committed_at for m in found],
        [",".join(m.reverts) if m.reverts is not None else None for m in found],
    )
    # one closing commit per task (the oldest new one whose change is still on the
    # branch); everything else is a link
    seq = {m.sha: m.seq for m in found if m.on_default}
    closing: dict[int, asyncpg.Record] = {}
    for link in links:
        if link["closes"] and link["on_default"] and link["sha"] not in reverted:
            cur = closing.get(link["task_id"])
            if cur is None or seq.get(link["sha"], 0) > seq.get(cur["sha"], 0):
                closing[link["task_id"]] = link
    closed: set[tuple[int, str]] = set()
    asked: set[int] = set()
    if closing:
        owners = {r["id"]: r["repo"] for r in await conn.fetch(_OWNERS, list(closing))}
        cross = [c for t, c in closing.items() if owners.get(t) not in (None, repo)]
        if cross:
            rows = await conn.fetch(_ASK, *_columns(cross), repo_id, repo, prefix)
            asked = {r["task_id"] for r in rows}
            res.asked = len(asked)
        cs = sorted(
            (c for t, c in closing.items() if owners.get(t) in (None, repo)),
            key=lambda c: c["task_id"],
        )
        done = await close_tasks(conn, prefix, repo, cs) if cs else []
        ids = {d["id"] for d in done}
        res.closed = len(ids)
        res.closed_while_claimed = sum(1 for d in done if d["prev_status"] == "claimed")
        rest = [c for c in cs if c["task_id"] not in ids]
        again: set[int] = set()
        if rest:
            again = {
                r["id"]
                for r in await conn.fetch(
                    _REVERIFY,
                    [c["task_id"] for c in rest],
                    [c["sha"] for c in rest],
                    [c["agent"] for c in rest],
                    [c["subject"] for c in rest],
                    repo,
                    prefix,
                )
            }
            res.reverified = len(again)
        closed = {(c["task_id"], c["sha"]) for c in cs if c["task_id"] in ids | again}
    ev_ids, ev_actors, ev_details = [], [], []
    for link in links:
        if (link["task_id"], link["sha"]) in closed or not (
            link["fresh"] or (link["closes"] and link["on_default"])
        ):
            continue
        ev_ids.append(link["task_id"])
        ev_actors.append("git:" + link["agent"] if link["agent"] else "git")
        details: dict[str, Any] = {
            "sha": link["sha"],
            "repo": repo,
            "on_default_branch": link["on_default"],
            "closes": link["closes"],
            "agent": link["agent"],
            "author": link["author_email"],
            "subject": link["subject"],
        }
        if link["reverts"] is not None:
            details["revert"] = True
            details["reverts"] = list(link["reverts"])
        if link["sha"] in reverted:
            details["reverted"] = True
        if link["task_id"] in asked and link["closes"] and link["on_default"]:
            details["asks_operator"] = True  # another repo's task: the operator decides
        ev_details.append(json.dumps(details))
    if ev_ids:
        await conn.execute(_LINKED_EVENTS, ev_ids, ev_actors, ev_details)
    res.linked = len(ev_ids)
    return res


def _columns(rows: list[asyncpg.Record]) -> list[list[Any]]:
    """Task ids, SHAs, agents, author emails and subjects of closing links, as columns."""
    return [[r[c] for r in rows] for c in ("task_id", "sha", "agent", "author_email", "subject")]


async def close_tasks(
    conn: asyncpg.Connection,
    prefix: str,
    repo: str,
    closing: list[asyncpg.Record],
    *,
    evidence_repo: str | None = None,
    confirmed_by: str | None = None,
) -> list[asyncpg.Record]:
    """Close the unfinished tasks these closing links (commits of `repo`) name, verified, with
    the commit as evidence; (id, prev_status) of each task closed. `evidence_repo` and
    `confirmed_by`: the operator confirmed that another repo's commit closes it."""
    return await conn.fetch(_CLOSE, *_columns(closing), repo, prefix, evidence_repo, confirmed_by)
