-- Never silent (issue 9): each `ob serve` process keeps a status board of its parts (gateway,
-- bot polling, notifier, digest, reconcile, sweep) for `ob status`, the health endpoint and the
-- digest; dead notices (refused for good by Telegram) are found quickly for `ob outbox`.

create table service_parts (
    worker         text not null,             -- host:pid
    part           text not null,
    state          text not null check (state in ('running', 'ok', 'failing', 'stopped', 'off')),
    detail         text,
    last_ok_at     timestamptz,
    last_error     text,
    last_error_at  timestamptz,
    failures       integer not null default 0,  -- in a row
    updated_at     timestamptz not null default now(),
    primary key (worker, part)
);

create index outbox_dead_idx on outbox (id) where gave_up_at is not null and delivered_at is null;

-- The kinds of git truth under rewrites (006), checked like the others (004).
alter table events drop constraint events_kind_known;
alter table events add constraint events_kind_known check (kind in (
    'filed', 'approved', 'rejected', 'lane_changed', 'edited', 'dep_added', 'dep_removed',
    'claimed', 'heartbeat', 'released', 'expired', 'attempts_exhausted', 'completed',
    'findings', 'handed_off', 'unblocked', 'lease_revoked', 'agent_added', 'agent_revoked',
    'repo_added', 'repo_moved', 'commit_linked', 'closed_by_commit', 'closed_while_claimed',
    'verified', 'history_rewritten', 'replanned', 'evidence_lost', 'plan_base_lost',
    'default_branch_changed', 'repo_branch_set', 'repo_skipped'));

alter table outbox drop constraint outbox_kind_known;
alter table outbox add constraint outbox_kind_known check (kind in (
    'draft_filed', 'task_decided', 'lane_changed', 'task_completed', 'handoff', 'lease_expired',
    'attempts_exhausted', 'findings_reported', 'task_unblocked', 'task_closed_by_commit',
    'closed_while_claimed', 'task_verified', 'evidence_lost', 'default_branch_changed',
    'todo_imported'));
