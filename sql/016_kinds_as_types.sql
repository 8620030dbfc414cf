-- The claim path at half the cost (issue 19): event and outbox kinds are enum types.
--
-- A check constraint is read back from its stored text on every statement that writes its
-- table: the kind lists (`kind in ('filed', 'approved', ...)`, 40 strings) were parsed twice per
-- claim and three times per completion, about a tenth of the database's work on the claim path.
-- An enum type checks the same closed set (core.models.EventKind / OutboxKind, compared by a
-- test) for the price of a lookup, and stores four bytes.
--
-- A new kind is one line from now on: `alter type event_kind add value 'x';`.
-- Text converts to a kind on assignment, so statements that insert a computed kind (a `case`)
-- need no cast; comparisons with a text array name the type.

create type event_kind as enum (
    'filed', 'approved', 'rejected', 'lane_changed', 'edited', 'dep_added', 'dep_removed',
    'claimed', 'heartbeat', 'released', 'expired', 'attempts_exhausted', 'completed',
    'findings', 'handed_off', 'unblocked', 'lease_revoked', 'agent_added', 'agent_revoked',
    'repo_added', 'repo_moved', 'commit_linked', 'closed_by_commit', 'closed_while_claimed',
    'verified', 'history_rewritten', 'replanned', 'evidence_lost', 'plan_base_lost',
    'default_branch_changed', 'repo_branch_set', 'repo_skipped',
    'repo_fetch_set', 'cross_repo_ignored', 'reopened', 'prerequisite_rejected', 'agent_rotated',
    'repo_removed', 'question_asked', 'question_answered', 'question_left_open');

create type outbox_kind as enum (
    'draft_filed', 'task_decided', 'lane_changed', 'task_completed', 'handoff', 'lease_expired',
    'attempts_exhausted', 'findings_reported', 'task_unblocked', 'task_closed_by_commit',
    'closed_while_claimed', 'task_verified', 'evidence_lost', 'default_branch_changed',
    'todo_imported', 'task_edited', 'cross_repo_close', 'task_reopened', 'prerequisite_rejected',
    'question_asked', 'question_answered', 'question_left_open');

create cast (text as event_kind) with inout as assignment;
create cast (text as outbox_kind) with inout as assignment;

-- the chart's lane history index names kinds in its predicate: rebuilt over the new type
drop index events_lane_at_idx;

alter table events drop constraint events_kind_known;
alter table events alter column kind type event_kind using kind::event_kind;
alter table outbox drop constraint outbox_kind_known;
alter table outbox alter column kind type outbox_kind using kind::outbox_kind;

create index events_lane_at_idx on events (at) include (task_id)
    where kind in ('filed', 'approved', 'lane_changed', 'findings', 'attempts_exhausted',
                   'completed', 'closed_by_commit', 'rejected');
