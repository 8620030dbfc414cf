-- The operator's hands (issue 17): undoing decisions (reopen), rejected prerequisites handed
-- back to the operator, token rotation, removing repos, likely duplicates.

-- A draft whose title matches an unfinished, recently done or rejected task is marked as its
-- likely duplicate (the other task's number), when it is filed or its title changes. Titles
-- match case-, space- and punctuation-blind; letters outside ASCII are kept as written.
create function title_key(title text) returns text
    language sql immutable parallel safe
    return btrim(regexp_replace(lower(title), '[[:space:][:punct:]]+', ' ', 'g'));

create index tasks_title_key_idx on tasks (title_key(title));

alter table tasks add column duplicate_of bigint references tasks (number);

-- Repos removed with `ob repo rm`: discovery under OB_REPO_ROOTS does not register their
-- folders again (`ob repo add PATH` does, and forgets the removal).
create table repo_removals (
    path        text primary key,
    name        text not null,
    removed_by  text not null,
    removed_at  timestamptz not null default now()
);

alter table events drop constraint events_kind_known;
alter table events add constraint events_kind_known check (kind in (
    'filed', 'approved', 'rejected', 'lane_changed', 'edited', 'dep_added', 'dep_removed',
    'claimed', 'heartbeat', 'released', 'expired', 'attempts_exhausted', 'completed',
    'findings', 'handed_off', 'unblocked', 'lease_revoked', 'agent_added', 'agent_revoked',
    'repo_added', 'repo_moved', 'commit_linked', 'closed_by_commit', 'closed_while_claimed',
    'verified', 'history_rewritten', 'replanned', 'evidence_lost', 'plan_base_lost',
    'default_branch_changed', 'repo_branch_set', 'repo_skipped',
    'repo_fetch_set', 'cross_repo_ignored', 'reopened', 'prerequisite_rejected', 'agent_rotated',
    'repo_removed'));

alter table outbox drop constraint outbox_kind_known;
alter table outbox add constraint outbox_kind_known check (kind in (
    'draft_filed', 'task_decided', 'lane_changed', 'task_completed', 'handoff', 'lease_expired',
    'attempts_exhausted', 'findings_reported', 'task_unblocked', 'task_closed_by_commit',
    'closed_while_claimed', 'task_verified', 'evidence_lost', 'default_branch_changed',
    'todo_imported', 'task_edited',
    'cross_repo_close', 'task_reopened', 'prerequisite_rejected'));
