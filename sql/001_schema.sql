-- Operator Backlog: the foundation schema.
-- Tasks, their dependencies, the append-only event log, agents, the notification outbox, repos.

create table repos (
    id              bigserial primary key,
    name            text not null unique check (name ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$'),
    path            text not null,
    default_branch  text,
    created_at      timestamptz not null default now()
);

create table agents (
    id          bigserial primary key,
    name        text not null unique check (name ~ '^[a-z0-9][a-z0-9._-]{0,39}$'),
    token_id    text not null unique,
    token_hash  bytea not null,
    git_emails  text[] not null default '{}',
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);

create sequence task_number_seq;

create table tasks (
    id               bigserial primary key,
    number           bigint not null unique default nextval('task_number_seq'),
    title            text not null check (length(title) between 1 and 200),
    repo             text check (repo ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$'),
    status           text not null check (status in ('draft', 'open', 'claimed', 'done', 'rejected')),
    status_at        timestamptz not null default now(),
    lane             text check (lane in ('requires_triage', 'requires_decision',
                                          'requires_investigation', 'autonomous_safe')),
    priority         smallint not null default 2 check (priority between 0 and 3),
    trigger          text,
    trigger_on       date,
    steps            text[] not null default '{}',
    risks            text[] not null default '{}',
    notes            text not null default '',
    findings         text not null default '',
    created_by       text not null,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    approved_by      text,
    approved_at      timestamptz,
    rejected_reason  text,
    -- the lease: holder + expiry + fencing epoch (grows on every claim and every revocation)
    lease_agent_id   bigint references agents (id),
    lease_expires_at timestamptz,
    epoch            bigint not null default 0,
    expiries         integer not null default 0,
    -- completion
    completed_by     text,
    completed_at     timestamptz,
    commits          text[] not null default '{}',
    completion_note  text,
    verified_at      timestamptz,
    -- plan drift: the repo HEAD the plan was approved against
    base_sha         text,
    search           tsvector generated always as (
                         to_tsvector('simple', title || ' ' || coalesce(repo, '') || ' ' || notes
                                     || ' ' || findings || ' ' || coalesce(trigger, ''))
                     ) stored,
    constraint open_tasks_have_a_lane check (status not in ('open', 'claimed') or lane is not null),
    constraint claimed_tasks_have_a_lease check (
        (status = 'claimed') = (lease_agent_id is not null and lease_expires_at is not null))
);

-- The ready queue: open (or claimed, for expired leases) tasks in the agent lanes, by priority then age.
create index tasks_ready_idx on tasks (priority, id)
    where status in ('open', 'claimed') and lane in ('autonomous_safe', 'requires_investigation');
create index tasks_ready_repo_idx on tasks (repo, priority, id)
    where status in ('open', 'claimed') and lane in ('autonomous_safe', 'requires_investigation');
-- Leases that can expire (the sweep and "who holds what").
create index tasks_lease_idx on tasks (lease_expires_at) where status = 'claimed';
create index tasks_status_lane_idx on tasks (status, lane, priority, id);
create index tasks_repo_idx on tasks (repo, status);
create index tasks_search_idx on tasks using gin (search);
create index tasks_done_at_idx on tasks (completed_at) where status = 'done';

create table task_deps (
    task_id    bigint not null references tasks (id) on delete cascade,
    prereq_id  bigint not null references tasks (id) on delete cascade,
    created_at timestamptz not null default now(),
    primary key (task_id, prereq_id),
    check (task_id <> prereq_id)
);
create index task_deps_prereq_idx on task_deps (prereq_id);

create table events (
    id       bigserial primary key,
    task_id  bigint references tasks (id),
    at       timestamptz not null default now(),
    actor    text not null,
    kind     text not null,
    details  jsonb not null default '{}'
);
create index events_task_idx on events (task_id, id);

create function events_are_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'the event log is append-only (% refused)', tg_op;
end $$;
create trigger events_append_only before update or delete on events
    for each row execute function events_are_append_only();

create table outbox (
    id            bigserial primary key,
    kind          text not null,
    task_id       bigint references tasks (id),
    payload       jsonb not null default '{}',
    created_at    timestamptz not null default now(),
    available_at  timestamptz not null default now(),
    delivered_at  timestamptz,
    attempts      integer not null default 0,
    last_error    text
);
create index outbox_pending_idx on outbox (available_at, id) where delivered_at is null;
-- Writers wake the notifier with pg_notify('ob_outbox') AFTER they commit (core/events.wake):
-- a NOTIFY inside the writing transaction would hold PostgreSQL's global notify lock across
-- the commit's WAL flush and serialise every completing agent. The notifier also polls.
