-- Git truth under rewrites (issue 10): reverts, evidence that leaves the default branch, a
-- default branch that moves, incremental scans that cost what is new, skipped folders.

alter table repos
    -- the operator pinned the default branch (`ob repo add --branch`); otherwise ob follows the
    -- repository's own default (origin/HEAD, a bare repository's HEAD) at every scan
    add column branch_pinned  boolean not null default false,
    -- every branch tip a scan has read (newest first, capped): everything they reach was read,
    -- so the next scan excludes them all and reads only what is new
    add column seen_tips      text[] not null default '{}';

-- the tips of the last scan were read in full
update repos set seen_tips = coalesce(
    (select array_agg(distinct e.sha) from jsonb_each_text(ref_tips) as e(ref, sha)), '{}');

-- commits_seen is now the number of default-branch commits stored (it was a running sum, which
-- window rescans inflated)
update repos r set commits_seen = (select count(*) from git_commits g where g.repo_id = r.id);

-- git_commits.pos still grows with newer commits, now with gaps: each scan streams its commits
-- newest first into a block of 2^32 positions of its own (core/git/reconcile.py, POS_BLOCK).
-- files: one text, a line per file (an array costs a first scan three times as much to COPY)
alter table git_commits
    alter column files drop default,
    alter column files type text using array_to_string(files, E'\n'),
    alter column files set default '',
    -- a revert: the commits (SHAs or prefixes) its message says it reverts
    add column reverts      text[],
    -- the default-branch commit that reverted this one (null: its change is on the branch)
    add column reverted_by  text collate "C";
-- a rewrite that drops a revert brings back what it had reverted
create index git_commits_reverted_by_idx on git_commits (repo_id, reverted_by)
    where reverted_by is not null;

-- a commit that reverts others links to the tasks it names but never closes them
alter table task_commits add column reverts text[];

-- a done task whose evidence was reverted or left the default branch: why, which commits,
-- when (null while its evidence holds; cleared when git confirms it again)
alter table tasks add column evidence_lost jsonb;

-- folders under OB_REPO_ROOTS that look like repositories but could not be registered, and why
-- (refreshed by every discovery)
create table repo_skips (
    path        text primary key,
    reason      text not null,
    first_seen  timestamptz not null default now(),
    last_seen   timestamptz not null default now()
);
