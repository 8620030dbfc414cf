-- Exactly-once "unblocked" (issue 9): a waiting task is announced ready once per time its last
-- prerequisite finishes. Two prerequisites finished at the same moment used to leave it
-- unannounced (each completion saw the other still unfinished); now each completion looks again
-- after it committed, under the waiting task's row lock, and this column says whether the
-- latest finish has been announced already.
alter table tasks add column unblocked_at timestamptz;

-- what was unblocked before this migration has been announced (or never will be)
update tasks w set unblocked_at = now()
where exists (select 1 from task_deps d where d.task_id = w.id)
  and not exists (select 1 from task_deps d join tasks p on p.id = d.prereq_id
                  where d.task_id = w.id and p.status <> 'done');
