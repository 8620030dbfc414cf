-- The claim path at the physical limit (issue 12): lease churn off the wide task row.
--
-- Claims, heartbeats, releases and expiries used to rewrite the whole task row (spec text,
-- search vector, eleven index entries each time). Now:
--   * the lease lives in `task_leases`, one narrow row per task, and the ready queue is an index
--     on it: a claim, heartbeat or release is a HOT update of that row and touches no index;
--   * the search vector lives in `task_search`, written only when the spec's text changes;
--   * the task row's indexes that only serve unfinished work are partial, so a completion adds
--     entries to few of them.
-- The wide row changes when the spec or the lifecycle does (filed, approved, edited, done,
-- rejected), not on lease transitions.
--
-- `claimed` is no longer stored in tasks.status: a task is claimed while its lease has a holder
-- (tasks.status stays 'open'). Readers take status, holder, expiry, epoch and expiries from
-- core.tasks.TASK_COLUMNS.

------------------------------------------------------------------------------ the lease row

-- One row per task. `ready`, `priority`, `repo` and `trigger_on` are copies of the task row's
-- (kept in step by the triggers below) so that the claim reads, orders and locks this row alone:
-- the row lock is on what the claim decides by, so a concurrent claim re-checks the latest lease.
create table task_leases (
    task_id          bigint primary key references tasks (id) on delete cascade,
    ready            boolean not null,   -- open, in an agent lane: claimable unless held
    priority         smallint not null,
    repo             text,
    trigger_on       date,
    -- The lease: holder + expiry + fencing epoch (grows on every claim and every revocation).
    -- No foreign key on the holder: agents are never deleted, and the check would lock the
    -- agent's row on every claim.
    lease_agent_id   bigint,
    lease_expires_at timestamptz,
    epoch            bigint not null default 0,
    expiries         integer not null default 0,
    -- when the lease last changed hands (claimed, released, expired, revoked): the task's
    -- status date while it is held or after it was given back
    changed_at       timestamptz,
    constraint leases_are_whole check ((lease_agent_id is null) = (lease_expires_at is null)),
    constraint only_ready_tasks_are_held check (ready or lease_agent_id is null)
) with (fillfactor = 50);  -- room on the page for HOT updates

-- Existing tasks: every lease moves over (a claimed task outside the agent lanes, which only
-- a hand edit could make, loses its lease as a revocation would).
insert into task_leases (task_id, ready, priority, repo, trigger_on, lease_agent_id,
                         lease_expires_at, epoch, expiries, changed_at)
select id, ready, priority, repo, trigger_on,
       case when held then lease_agent_id end,
       case when held then lease_expires_at end,
       epoch + (status = 'claimed' and not held)::int,
       expiries,
       case when status = 'claimed' then status_at end
from (select t.*, r.ready, r.ready and t.status = 'claimed' as held
      from tasks t
      cross join lateral (select t.status in ('open', 'claimed')
                                 and t.lane in ('autonomous_safe', 'requires_investigation')
                                 as ready) r) t;

-- The ready queue: by priority then age, optionally by repo. Lease columns are in no index, so
-- claims, heartbeats and releases are HOT updates.
create index task_leases_ready_idx on task_leases (priority, task_id) where ready;
create index task_leases_ready_repo_idx on task_leases (repo, priority, task_id) where ready;

------------------------------------------------------------------------------ the search row

-- Full-text search (`ob list -q`, /find): the words of the spec, and the title again for
-- substring matches (a trigram index). Written when the spec's text changes, never by a lease
-- or lifecycle transition.
create extension if not exists pg_trgm;

create function task_search_vector(title text, repo text, notes text, findings text,
                                   trigger_text text) returns tsvector
    language sql immutable parallel safe
    return to_tsvector('simple', title || ' ' || coalesce(repo, '') || ' ' || notes || ' '
                                 || findings || ' ' || coalesce(trigger_text, ''));

create table task_search (
    task_id  bigint primary key references tasks (id) on delete cascade,
    title    text not null,
    search   tsvector not null
);
insert into task_search (task_id, title, search) select id, title, search from tasks;
create index task_search_words_idx on task_search using gin (search);
create index task_search_title_idx on task_search using gin (title gin_trgm_ops);

------------------------------------------------------------------------------ the task row

alter table tasks drop constraint claimed_tasks_have_a_lease, drop constraint tasks_status_check;
update tasks set status = 'open' where status = 'claimed';
alter table tasks
    add constraint tasks_status_check check (status in ('draft', 'open', 'done', 'rejected')),
    drop column lease_agent_id,
    drop column lease_expires_at,
    drop column epoch,
    drop column expiries,
    drop column search;
drop index tasks_ready_idx;
drop index tasks_ready_repo_idx;

-- Unfinished work only (a completion adds no entry): lanes and drafts, repos, the digest.
drop index tasks_status_lane_idx;
create index tasks_status_lane_idx on tasks (status, lane, priority, id)
    where status in ('draft', 'open');
drop index tasks_repo_idx;
create index tasks_repo_idx on tasks (repo, priority, id) where status in ('draft', 'open');
drop index tasks_digest_lane_age_idx;
create index tasks_digest_lane_age_idx on tasks (lane, (coalesce(approved_at, created_at)))
    where status = 'open';
-- `ob list` and /find: every task by priority, then age.
create index tasks_priority_idx on tasks (priority, id);
-- The digest's and the verifier's unverified completions with commits.
create index tasks_unverified_commits_idx on tasks (completed_at)
    where status = 'done' and verified_at is null and commits <> '{}';

-- The notifier reads deliverable rows through outbox_deliverable_idx (003); this one only cost
-- every completion an index entry.
drop index if exists outbox_pending_idx;  -- 004 dropped it already

------------------------------------------------------------------------------ keeping in step

create function tasks_side_rows() returns trigger language plpgsql as $$
begin
    insert into task_leases (task_id, ready, priority, repo, trigger_on)
    select n.id, n.status = 'open' and n.lane in ('autonomous_safe', 'requires_investigation'),
           n.priority, n.repo, n.trigger_on
    from new_tasks n;
    insert into task_search (task_id, title, search)
    select n.id, n.title, task_search_vector(n.title, n.repo, n.notes, n.findings, n.trigger)
    from new_tasks n;
    return null;
end $$;

-- A task that stops being ready loses its lease: that is a revocation, and the epoch grows
-- (a completion or findings end the lease themselves first).
create function tasks_sync_lease() returns trigger language plpgsql as $$
begin
    update task_leases l set
        ready = r.ready,
        priority = new.priority,
        repo = new.repo,
        trigger_on = new.trigger_on,
        lease_agent_id = case when r.ready then l.lease_agent_id end,
        lease_expires_at = case when r.ready then l.lease_expires_at end,
        epoch = l.epoch + (not r.ready and l.lease_agent_id is not null)::int,
        changed_at = case when not r.ready and l.lease_agent_id is not null then now()
                          else l.changed_at end
    from (select new.status = 'open'
                 and new.lane in ('autonomous_safe', 'requires_investigation') as ready) r
    where l.task_id = new.id
      and (l.ready, l.priority, l.repo, l.trigger_on)
          is distinct from (r.ready, new.priority, new.repo, new.trigger_on);
    return null;
end $$;

create function tasks_sync_search() returns trigger language plpgsql as $$
begin
    update task_search
    set title = new.title,
        search = task_search_vector(new.title, new.repo, new.notes, new.findings, new.trigger)
    where task_id = new.id;
    return null;
end $$;

create trigger tasks_side_rows after insert on tasks
    referencing new table as new_tasks
    for each statement execute function tasks_side_rows();
create trigger tasks_sync_lease after update of status, lane, priority, repo, trigger_on on tasks
    for each row
    when ((old.status, old.lane, old.priority, old.repo, old.trigger_on)
          is distinct from (new.status, new.lane, new.priority, new.repo, new.trigger_on))
    execute function tasks_sync_lease();
create trigger tasks_sync_search after update of title, repo, notes, findings, trigger on tasks
    for each row
    when ((old.title, old.repo, old.notes, old.findings, old.trigger)
          is distinct from (new.title, new.repo, new.notes, new.findings, new.trigger))
    execute function tasks_sync_search();
