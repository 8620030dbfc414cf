-- Outbox payloads have one source (core.notices): each kind's model, which refuses fields it
-- does not name. A payload names its task and holds the facts of the event; what the task
-- itself says (its title, repo, status) the bot reads from the task, and prose nothing read is
-- no longer written. Notices still waiting to be delivered (or dead, to be retried) keep only
-- the fields their model names, so that they read under the models.

update outbox o set payload = (
    select coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb)
    from jsonb_each(o.payload) as e
    where e.key = any(k.fields))
from (values
    ('draft_filed', array['key', 'by', 'prerequisite_of']),
    ('task_decided', array['key', 'by', 'decision', 'lane', 'reason']),
    ('lane_changed', array['key', 'by', 'from', 'to', 'lease_revoked']),
    ('task_edited', array['key', 'by', 'fields']),
    ('task_reopened', array['key', 'by', 'from', 'to', 'reason']),
    ('task_completed', array['key', 'by', 'commits', 'note', 'verified', 'closed_by']),
    ('handoff', array['key', 'by', 'epoch', 'prerequisite', 'prerequisite_title',
                      'prerequisite_status', 'reason']),
    ('prerequisite_rejected', array['key', 'by', 'prerequisite', 'prerequisite_title', 'reason',
                                    'from', 'to', 'lease_revoked']),
    ('lease_expired', array['key', 'holder', 'expiries', 'max_expiries']),
    ('attempts_exhausted', array['key', 'holder', 'expiries', 'max_expiries']),
    ('findings_reported', array['key', 'by', 'text']),
    ('task_unblocked', array['key', 'prerequisite']),
    ('task_closed_by_commit', array['key', 'sha', 'repo', 'agent', 'author', 'subject',
                                    'confirmed_by']),
    ('closed_while_claimed', array['key', 'holder', 'sha', 'repo']),
    ('cross_repo_close', array['key', 'repo', 'sha', 'agent', 'author', 'subject', 'ask']),
    ('task_verified', array['key', 'repo', 'commits', 'by', 'replaced']),
    ('evidence_lost', array['key', 'repo', 'branch', 'reason', 'commits', 'reverted_by']),
    ('default_branch_changed', array['repo', 'from', 'to']),
    ('todo_imported', array['path', 'count', 'by', 'first', 'last']),
    ('question_asked', array['key', 'id', 'text', 'options', 'asked_by']),
    ('question_answered', array['key', 'id', 'text', 'options', 'asked_by', 'answer',
                                'answered_by', 'answered_at']),
    ('question_left_open', array['key', 'id', 'text', 'options', 'asked_by', 'from'])
) as k(kind, fields)
where o.kind = k.kind and o.delivered_at is null;
