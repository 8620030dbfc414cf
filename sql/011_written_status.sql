-- The Phase-2 format, faithful (issue 16): the status as the person wrote it, what each TODO file
-- and the backlog said at their last sync (two-way TODO.md sync), and search over the whole spec.

-- The status line as written (`status: blocked (2026-11-18) — waiting for finance`): the word,
-- its date and its reason, kept beside the lifecycle and shown on cards; the date is also the
-- task's status date when it is filed (status_at).
alter table tasks
    add column status_word text
        check (status_word is null or length(status_word) between 1 and 40),
    add column status_date date,
    add column status_reason text
        check (status_reason is null or length(status_reason) between 1 and 500);

-- Two-way sync: for each task and each TODO file it was imported from or exported to, the spec's
-- fields as the file had them and as the backlog had them at the last sync. The next import
-- applies what changed in the file only, leaves what changed in the backlog only (export writes
-- it), and reports a field changed on both sides as a conflict; export leaves an item edited in
-- the file since the last sync as it is.
create table todo_sync (
    task_id    bigint not null references tasks (id) on delete cascade,
    path       text not null,
    file_view  jsonb not null,
    task_view  jsonb not null,
    synced_at  timestamptz not null default now(),
    primary key (task_id, path)
);

-- Search (`ob list -q`, /find) covers the steps, the risks and the status reason as well.
create function task_search_vector(title text, repo text, notes text, findings text,
                                   trigger_text text, steps text[], risks text[],
                                   status_reason text) returns tsvector
    language sql immutable parallel safe
    return to_tsvector('simple', title || ' ' || coalesce(repo, '') || ' ' || notes || ' '
                                 || findings || ' ' || coalesce(trigger_text, '') || ' '
                                 || array_to_string(steps, ' ') || ' '
                                 || array_to_string(risks, ' ') || ' '
                                 || coalesce(status_reason, ''));

create or replace function tasks_side_rows() returns trigger language plpgsql as $$
begin
    insert into task_leases (task_id, ready, priority, repo, trigger_on)
    select n.id, n.status = 'open' and n.lane in ('autonomous_safe', 'requires_investigation'),
           n.priority, n.repo, n.trigger_on
    from new_tasks n;
    insert into task_search (task_id, title, search)
    select n.id, n.title, task_search_vector(n.title, n.repo, n.notes, n.findings, n.trigger,
                                             n.steps, n.risks, n.status_reason)
    from new_tasks n;
    return null;
end $$;

create or replace function tasks_sync_search() returns trigger language plpgsql as $$
begin
    update task_search
    set title = new.title,
        search = task_search_vector(new.title, new.repo, new.notes, new.findings, new.trigger,
                                    new.steps, new.risks, new.status_reason)
    where task_id = new.id;
    return null;
end $$;

drop trigger tasks_sync_search on tasks;
create trigger tasks_sync_search
    after update of title, repo, notes, findings, trigger, steps, risks, status_reason on tasks
    for each row
    when ((old.title, old.repo, old.notes, old.findings, old.trigger, old.steps, old.risks,
           old.status_reason)
          is distinct from (new.title, new.repo, new.notes, new.findings, new.trigger, new.steps,
                            new.risks, new.status_reason))
    execute function tasks_sync_search();
drop function task_search_vector(text, text, text, text, text);

update task_search s
set search = task_search_vector(t.title, t.repo, t.notes, t.findings, t.trigger, t.steps,
                                t.risks, t.status_reason)
from tasks t where t.id = s.task_id;
