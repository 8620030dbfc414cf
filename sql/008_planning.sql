-- Conversational planning (issue 11): previews that collect several messages and ideas, the
-- origin of forwarded messages, photos kept on tasks, the `task_edited` notice that keeps cards
-- current after an edit, snoozed tasks back in the digest, and lane history for the chart.

-- A capture is one preview in the chat. Messages sent in a row join it (`parts`, `updated_at`);
-- `message_id` is the preview message (edited in place, and what a reply points at). A capture
-- holding several ideas is saved in one tap, or split into one capture per idea (`parent_id`,
-- `position`; outcome 'split') to be reviewed one by one. `kind`: 'text' is split into ideas,
-- 'document' is a TODO.md, 'idea' is exactly one spec. `origin` lines (forwards) and `repo` (the
-- repo of a document) apply to every spec it files; `photos` are Telegram file ids.
alter table bot_captures
    add column kind text not null default 'text' check (kind in ('text', 'document', 'idea')),
    add column message_id bigint,
    add column parts integer not null default 1,
    add column updated_at timestamptz not null default now(),
    add column parent_id bigint references bot_captures (id) on delete cascade,
    add column position integer,
    add column origin text not null default '',
    add column photos text[] not null default '{}',
    add column repo text,
    drop constraint bot_captures_outcome_check,
    add constraint bot_captures_outcome_check
        check (outcome in ('saved', 'discarded', 'split'));

-- The open preview of a chat (the latest one), a reply's target, and a group's ideas.
create index bot_captures_latest_idx on bot_captures (chat_id, user_id, id desc)
    where parent_id is null;
create index bot_captures_message_idx on bot_captures (chat_id, message_id)
    where message_id is not null;
create index bot_captures_parent_idx on bot_captures (parent_id, position)
    where parent_id is not null;

-- Photos captured with a task (Telegram file ids), shown by /task.
create table bot_task_photos (
    task_id   bigint not null references tasks (id) on delete cascade,
    file_id   text not null,
    added_at  timestamptz not null default now(),
    primary key (task_id, file_id)
);

-- An edit (a reply that amends, a priority or snooze tap, `ob edit`) refreshes the task's cards.
alter table outbox drop constraint outbox_kind_known;
alter table outbox add constraint outbox_kind_known check (kind in (
    'draft_filed', 'task_decided', 'lane_changed', 'task_completed', 'handoff', 'lease_expired',
    'attempts_exhausted', 'findings_reported', 'task_unblocked', 'task_closed_by_commit',
    'closed_while_claimed', 'task_verified', 'evidence_lost', 'default_branch_changed',
    'todo_imported', 'task_edited'));

-- The digest's "back today": unfinished tasks whose trigger date is the digest's day.
create index tasks_trigger_on_idx on tasks (trigger_on)
    where trigger_on is not null and status in ('draft', 'open', 'claimed');

-- The chart's lane history: the events that put a task into a lane or take it out, by time.
create index events_lane_at_idx on events (at) include (task_id)
    where kind in ('filed', 'approved', 'lane_changed', 'findings', 'attempts_exhausted',
                   'completed', 'closed_by_commit', 'rejected');
