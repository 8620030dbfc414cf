-- Typed protocols (issue 8): the event and outbox kinds core emits are closed sets, named by
-- core.models.EventKind / OutboxKind and checked here; who decided a task is kept in columns;
-- one SQL definition of a task key; approval cards know whether they carry task actions.

-- The one SQL spelling of a task key (`OB-12`); Python's is core.models.format_key.
create function task_key(prefix text, number bigint) returns text
    language sql immutable parallel safe
    return prefix || '-' || number;

-- Who decided, from columns (never from a scan of the history): the lane a draft was approved
-- into (the task may have moved since) and who rejected it.
alter table tasks
    add column approved_lane text check (approved_lane in ('requires_triage', 'requires_decision',
                                         'requires_investigation', 'autonomous_safe')),
    add column rejected_by   text;

update tasks t set rejected_by = e.actor
from (select distinct on (task_id) task_id, actor from events
      where kind = 'rejected' order by task_id, id desc) e
where e.task_id = t.id and t.status = 'rejected';

update tasks t set approved_lane = coalesce(e.lane, t.lane)
from (select distinct on (task_id) task_id, details ->> 'lane' as lane from events
      where kind in ('approved', 'filed') and details ->> 'lane' is not null
      order by task_id, id desc) e
where e.task_id = t.id and t.approved_at is not null;

alter table events add constraint events_kind_known check (kind in (
    'filed', 'approved', 'rejected', 'lane_changed', 'edited', 'dep_added', 'dep_removed',
    'claimed', 'heartbeat', 'released', 'expired', 'attempts_exhausted', 'completed',
    'findings', 'handed_off', 'unblocked', 'lease_revoked', 'agent_added', 'agent_revoked',
    'repo_added', 'repo_moved', 'commit_linked', 'closed_by_commit', 'closed_while_claimed',
    'verified', 'history_rewritten', 'replanned'));

alter table outbox add constraint outbox_kind_known check (kind in (
    'draft_filed', 'task_decided', 'lane_changed', 'task_completed', 'handoff', 'lease_expired',
    'attempts_exhausted', 'findings_reported', 'task_unblocked', 'task_closed_by_commit',
    'closed_while_claimed', 'task_verified'));

-- Superseded by outbox_deliverable_idx (003).
drop index outbox_pending_idx;

-- One path edits cards: the notifier, from the outbox. A card is an approval card (its buttons
-- go once the draft is decided) or a task card (it keeps the task's current actions).
alter table bot_cards
    drop column state,
    add column kind text not null default 'approval' check (kind in ('approval', 'task'));
