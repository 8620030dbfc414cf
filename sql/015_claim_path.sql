-- The claim path at half the cost (issue 19). Every guarantee stays (one statement per
-- transition, fencing, the event and the outbox row in the transition's own statement, expired
-- leases reclaimable inside the claim, exactly-once); what goes is work the database redid on
-- every statement for nothing.
--
-- 1. Event and outbox kinds are enum types. A check constraint is read back from its stored
--    text on every statement that writes its table: the kind lists (`kind in ('filed', ...)`,
--    40 strings) were parsed twice per claim and three times per completion, about a tenth of
--    the database's work on the claim path. An enum checks the same closed set
--    (core.models.EventKind / OutboxKind, compared by a test) for the price of a lookup.
--    A new kind is one line from now on: `alter type event_kind add value 'x';`. Text converts
--    to a kind on assignment, so statements that insert a computed kind need no cast.

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

-- 2. The task row's single-column rules are domains: a domain's check is kept parsed in the
--    type cache, a table's is parsed again by every statement that writes the row (nine of
--    them, on every completion). Only the rule that spans two columns stays on the table.
create domain task_status as text check (value in ('draft', 'open', 'done', 'rejected'));
create domain lane_name as text
    check (value in ('requires_triage', 'requires_decision', 'requires_investigation',
                     'autonomous_safe'));
create domain priority_level as smallint check (value between 0 and 3);
create domain task_title as text check (length(value) between 1 and 200);
create domain repo_name as text check (value ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$');
create domain status_word as text check (length(value) between 1 and 40);
create domain status_reason as text check (length(value) between 1 and 500);

-- (triggers that name these columns are made again below)
drop trigger tasks_sync_lease on tasks;
drop trigger tasks_sync_search on tasks;
alter table tasks
    drop constraint tasks_status_check,
    drop constraint tasks_lane_check,
    drop constraint tasks_approved_lane_check,
    drop constraint tasks_priority_check,
    drop constraint tasks_title_check,
    drop constraint tasks_repo_check,
    drop constraint tasks_status_word_check,
    drop constraint tasks_status_reason_check,
    alter column status type task_status,
    alter column lane type lane_name,
    alter column approved_lane type lane_name,
    alter column priority type priority_level,
    alter column title type task_title,
    alter column repo type repo_name,
    alter column status_word type status_word,
    alter column status_reason type status_reason;

create trigger tasks_sync_search
    after update of title, repo, notes, findings, trigger, steps, risks, status_reason on tasks
    for each row
    when ((old.title, old.repo, old.notes, old.findings, old.trigger, old.steps, old.risks,
           old.status_reason)
          is distinct from (new.title, new.repo, new.notes, new.findings, new.trigger, new.steps,
                            new.risks, new.status_reason))
    execute function tasks_sync_search();

-- 3. The ready-queue copy on the lease row follows the task row, except when a task is finished:
--    the statement that finishes it (core.leases completion, core.git.closing) ends its lease
--    and takes it out of the queue itself, so the completion calls no trigger function.
--    (tests/conftest.py checks after every test that every lease row agrees with its task.)
create trigger tasks_sync_lease
    after update of status, lane, priority, repo, trigger_on on tasks
    for each row
    when (new.status <> 'done'
          and (old.status, old.lane, old.priority, old.repo, old.trigger_on)
              is distinct from (new.status, new.lane, new.priority, new.repo, new.trigger_on))
    execute function tasks_sync_lease();

-- 4. No foreign-key check on the event and outbox rows: every statement that writes one writes
--    it for the task row it has just changed or locked (and tasks are never deleted), so the
--    check (a lookup and a share lock on the task row, per row) proved nothing.
alter table events drop constraint events_task_id_fkey;
alter table outbox drop constraint outbox_task_id_fkey;

-- 5. `task_key` inlines: `number` is cast to text by an immutable cast, where `text || bigint`
--    called a stable function, so the immutable task_key could not be inlined and was planned
--    anew each time a statement used it (every notice that names its task).
create or replace function task_key(prefix text, number bigint) returns text
    language sql immutable parallel safe
    return prefix || '-' || number::text;

-- 6. Fewer index entries per completion: the likely-duplicate lookup (core.backlog) reads
--    unfinished and rejected tasks by title key, recently done ones by completion date, so a
--    completion no longer computes a title key for an index entry nobody reads.
drop index tasks_title_key_idx;
create index tasks_title_key_idx on tasks (title_key(title))
    where status in ('draft', 'open', 'rejected');
