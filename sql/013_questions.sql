-- Ask the operator, wake the agents (issue 18).
--
-- Questions: an agent holding a lease asks the operator (text, a few options); the answer goes
-- back to the waiting agent and into the task's notes. A lease that ends with its question
-- still open (expiry, release, hand-off, revocation) moves the task to requires_decision,
-- carrying the question, and the operator is told: the database enforces that on every path
-- that ends a lease, the claim's takeover of an expired lease included.
--
-- Waking: every change that can make work claimable sends NOTIFY ob_ready in its own
-- transaction (delivered when it commits), so waiting claims are woken instead of polling.
-- What becomes claimable by the clock alone (a lease expiring, a trigger date arriving) the
-- gateway wakes for itself (core.waiting).

create table questions (
    id            bigserial primary key,
    task_id       bigint not null references tasks (id) on delete cascade,
    task_key      text not null,    -- the key when asked (the triggers below know no prefix)
    agent_id      bigint not null,  -- who asked, under which lease
    asked_by      text not null,    -- the actor, 'agent:codex'
    epoch         bigint not null,
    lane          text not null,    -- the task's lane when asked
    text          text not null,
    options       text[] not null default '{}',
    asked_at      timestamptz not null default now(),
    answer        text,
    answered_by   text,
    answered_at   timestamptz,
    -- the lease ended while it was open: the task went to requires_decision with it
    left_open_at  timestamptz,
    constraint answers_are_whole check (
        (answer is null) = (answered_at is null) and (answer is null) = (answered_by is null))
);
create index questions_task_idx on questions (task_id);
create index questions_open_idx on questions (task_id, epoch) where answered_at is null;

-- The messages in the operator's chat that show a question (answered by a tap or a reply;
-- edited to show the answer).
create table question_cards (
    question_id  bigint not null references questions (id) on delete cascade,
    chat_id      bigint not null,
    message_id   bigint not null,
    created_at   timestamptz not null default now(),
    primary key (chat_id, message_id)
);
create index question_cards_question_idx on question_cards (question_id);

------------------------------------------------------------------ a lease ends, a question open

-- A claim that would take over an expired lease whose holder left a question open takes
-- nothing: the lease only expires (the claim goes on to its next candidate) and the trigger
-- below moves the task to the operator.
create function questions_hold_expired_lease() returns trigger language plpgsql as $$
begin
    if exists (select 1 from questions q
               where q.task_id = old.task_id and q.epoch = old.epoch and q.answered_at is null)
    then
        new.lease_agent_id := null;
        new.lease_expires_at := null;
        new.epoch := old.epoch;
    end if;
    return new;
end $$;

create trigger task_leases_question_takeover before update on task_leases
    for each row
    when (old.lease_agent_id is not null and new.lease_agent_id is not null
          and new.epoch <> old.epoch)
    execute function questions_hold_expired_lease();

-- The lease ended and the task is still claimable: its open questions of that lease, asked in
-- the lane it is still in, are left open; the task moves to requires_decision. (A task the
-- operator moved to another lane, rejected or that was finished is not moved again.)
create function questions_left_open() returns trigger language plpgsql as $$
declare
    lane_now text;
    left_ids bigint[];
begin
    select t.lane into lane_now from tasks t where t.id = old.task_id and t.status = 'open';
    with q as (
        update questions set left_open_at = now()
        where task_id = old.task_id and epoch = old.epoch and answered_at is null
          and left_open_at is null and lane = lane_now
        returning id, task_key, text, options, asked_by
    ),
    ob as (
        insert into outbox (kind, task_id, payload)
        select 'question_left_open', old.task_id,
               jsonb_build_object('key', q.task_key, 'id', q.id, 'text', q.text,
                                  'options', q.options, 'asked_by', q.asked_by,
                                  'from', lane_now)
        from q order by q.id
    )
    select array_agg(id order by id) into left_ids from q;
    if left_ids is not null then
        update tasks set lane = 'requires_decision', status_at = now(), updated_at = now()
        where id = old.task_id;
        insert into events (task_id, actor, kind, details)
        values (old.task_id, 'system', 'question_left_open',
                jsonb_build_object('questions', left_ids, 'epoch', old.epoch,
                                   'holder', (select name from agents where id = old.lease_agent_id),
                                   'from', lane_now, 'lane', 'requires_decision'));
    end if;
    return null;
end $$;

create trigger task_leases_question_left_open after update on task_leases
    for each row
    when (old.lease_agent_id is not null and new.lease_agent_id is null and new.ready)
    execute function questions_left_open();

------------------------------------------------------------------ waking waiting claims

create function notify_ready() returns trigger language plpgsql as $$
begin
    perform pg_notify('ob_ready', '');
    return null;
end $$;

-- filed straight into an agent lane (the operator's `ob add`, an auto-approved prerequisite)
create trigger task_leases_ready_filed after insert on task_leases
    for each row when (new.ready) execute function notify_ready();
-- approved or moved into an agent lane; a lease released, expired (by the sweep) or revoked;
-- a claimable task whose trigger date or repo changed
create trigger task_leases_ready_again after update on task_leases
    for each row
    when (new.ready and new.lease_agent_id is null
          and (not old.ready or old.lease_agent_id is not null
               or (old.trigger_on, old.repo) is distinct from (new.trigger_on, new.repo)))
    execute function notify_ready();
-- its last prerequisite finished (announced once, core.deps), or a prerequisite was unlinked
create trigger tasks_ready_unblocked after update of unblocked_at on tasks
    for each row when (new.unblocked_at is distinct from old.unblocked_at)
    execute function notify_ready();
create trigger task_deps_ready_unlinked after delete on task_deps
    for each row execute function notify_ready();

------------------------------------------------------------------ kinds

alter table events drop constraint events_kind_known;
alter table events add constraint events_kind_known check (kind in (
    'filed', 'approved', 'rejected', 'lane_changed', 'edited', 'dep_added', 'dep_removed',
    'claimed', 'heartbeat', 'released', 'expired', 'attempts_exhausted', 'completed',
    'findings', 'handed_off', 'unblocked', 'lease_revoked', 'agent_added', 'agent_revoked',
    'repo_added', 'repo_moved', 'commit_linked', 'closed_by_commit', 'closed_while_claimed',
    'verified', 'history_rewritten', 'replanned', 'evidence_lost', 'plan_base_lost',
    'default_branch_changed', 'repo_branch_set', 'repo_skipped',
    'repo_fetch_set', 'cross_repo_ignored', 'reopened', 'prerequisite_rejected', 'agent_rotated',
    'repo_removed', 'question_asked', 'question_answered', 'question_left_open'));

alter table outbox drop constraint outbox_kind_known;
alter table outbox add constraint outbox_kind_known check (kind in (
    'draft_filed', 'task_decided', 'lane_changed', 'task_completed', 'handoff', 'lease_expired',
    'attempts_exhausted', 'findings_reported', 'task_unblocked', 'task_closed_by_commit',
    'closed_while_claimed', 'task_verified', 'evidence_lost', 'default_branch_changed',
    'todo_imported', 'task_edited', 'cross_repo_close', 'task_reopened', 'prerequisite_rejected',
    'question_asked', 'question_answered', 'question_left_open'));
