-- Git is the truth (DESIGN §4): the repo registry's scan state, the default-branch commits the
-- reconciler has read (for verification and plan drift without running git), and the commits
-- that mention tasks.

alter table repos
    add column discovered     boolean not null default false,
    -- the default-branch tip read by the last scan: the incremental cursor
    add column cursor_sha     text,
    -- every branch tip (refs/heads, refs/remotes) at the last scan; unchanged = nothing to read
    add column ref_tips       jsonb not null default '{}',
    -- the next position to give a default-branch commit (git_commits.pos)
    add column next_pos       bigint not null default 0,
    add column commits_seen   bigint not null default 0,
    add column last_scan_at   timestamptz,
    add column last_error     text,
    add column last_error_at  timestamptz;

-- Commits on each repo's default branch, in branch order (pos grows with newer commits).
-- "What changed since the plan's base" is every commit with a larger pos than the base.
create table git_commits (
    repo_id       bigint not null references repos (id) on delete cascade,
    sha           text collate "C" not null,
    pos           bigint not null,
    committed_at  timestamptz not null,
    author_email  text not null,
    subject       text not null,
    files         text[] not null default '{}',
    primary key (repo_id, sha)
);
create index git_commits_pos_idx on git_commits (repo_id, pos);
-- verification looks completed SHAs (7-40 hex digits) up by prefix: a range scan of the
-- primary key in "C" order, per repo

-- A commit that names a task, in any repo, on any branch. The primary key makes
-- reconciliation idempotent: a commit is linked (and a task closed by it) once.
create table task_commits (
    task_id       bigint not null references tasks (id) on delete cascade,
    repo_id       bigint not null references repos (id) on delete cascade,
    sha           text collate "C" not null,
    closes        boolean not null,
    on_default    boolean not null,
    agent         text,
    author_email  text,
    subject       text not null,
    committed_at  timestamptz,
    seen_at       timestamptz not null default now(),
    primary key (task_id, repo_id, sha)
);
create index task_commits_repo_sha_idx on task_commits (repo_id, sha);

-- `ob list --unverified` and the digest: done tasks git has not confirmed yet.
create index tasks_unverified_idx on tasks (completed_at)
    where status = 'done' and verified_at is null;
