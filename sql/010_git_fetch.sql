-- Plan against the truth (issue 15): ob fetches each repository's remote before it reads it,
-- forges' push webhooks trigger a fetch at once, a commit closes only its own repo's tasks (it
-- asks the operator about another repo's), and several `ob serve` processes share the work.

alter table repos
    -- fetch the remote before each scan (`ob repo add --no-fetch`, `ob repo set --no-fetch`)
    add column fetch_enabled   boolean not null default true,
    -- ob's own bare clone under the data dir (`ob repo add URL`)
    add column managed         boolean not null default false,
    -- the default branch's remote, as the repository's git config names it (null: none), its
    -- URL, and that URL normalised (host/path, lower case, no scheme, user or .git): what a
    -- forge's push webhook is matched by
    add column remote          text,
    add column remote_url      text,
    add column remote_key      text,
    -- the last good fetch, and the last failed one's reason (null once a fetch succeeds)
    add column last_fetch_at   timestamptz,
    add column fetch_error     text,
    add column fetch_error_at  timestamptz,
    -- a shallow clone's boundary commits at the last scan: when one of them gains its parents
    -- (`git fetch --deepen`, `--unshallow`) the default branch is read again in full
    add column shallow         text[] not null default '{}';

create index repos_remote_key_idx on repos (remote_key) where remote_key is not null;

-- The repo whose commits are a done task's evidence when it is not the task's own: a commit in
-- another repo that the operator confirmed closes the task (null: the task's repo, or any repo
-- for a task without one).
alter table tasks add column evidence_repo text;

-- A closing reference in one repo's commit to another repo's task closes nothing by itself: the
-- operator is asked, one tap to close it or to ignore it.
create table cross_repo_asks (
    id            bigserial primary key,
    task_id       bigint not null references tasks (id) on delete cascade,
    repo_id       bigint not null references repos (id) on delete cascade,
    sha           text collate "C" not null,
    agent         text,
    author_email  text,
    subject       text not null,
    asked_at      timestamptz not null default now(),
    decision      text check (decision in ('closed', 'ignored')),
    decided_by    text,
    decided_at    timestamptz,
    unique (task_id, repo_id, sha)
);

-- Forge webhook deliveries already handled: a replayed delivery id does nothing twice.
create table forge_deliveries (
    forge        text not null,
    delivery     text not null,
    received_at  timestamptz not null default now(),
    repos        text[] not null default '{}',
    primary key (forge, delivery)
);
create index forge_deliveries_received_idx on forge_deliveries (received_at);

-- Scheduled rounds (the periodic reconcile): with several `ob serve` processes, the one that
-- claims a round runs it; the others skip it.
create table scheduled_rounds (
    name        text primary key,
    worker      text not null,
    started_at  timestamptz not null
);

alter table events drop constraint events_kind_known;
alter table events add constraint events_kind_known check (kind in (
    'filed', 'approved', 'rejected', 'lane_changed', 'edited', 'dep_added', 'dep_removed',
    'claimed', 'heartbeat', 'released', 'expired', 'attempts_exhausted', 'completed',
    'findings', 'handed_off', 'unblocked', 'lease_revoked', 'agent_added', 'agent_revoked',
    'repo_added', 'repo_moved', 'commit_linked', 'closed_by_commit', 'closed_while_claimed',
    'verified', 'history_rewritten', 'replanned', 'evidence_lost', 'plan_base_lost',
    'default_branch_changed', 'repo_branch_set', 'repo_skipped', 'repo_fetch_set',
    'cross_repo_ignored'));

alter table outbox drop constraint outbox_kind_known;
alter table outbox add constraint outbox_kind_known check (kind in (
    'draft_filed', 'task_decided', 'lane_changed', 'task_completed', 'handoff', 'lease_expired',
    'attempts_exhausted', 'findings_reported', 'task_unblocked', 'task_closed_by_commit',
    'closed_while_claimed', 'task_verified', 'evidence_lost', 'default_branch_changed',
    'todo_imported', 'task_edited', 'cross_repo_close'));
