-- Never silent (issue 9): each `ob serve` process keeps a status board of its parts (gateway,
-- bot polling, notifier, digest, reconcile, sweep) for `ob status`, the health endpoint and the
-- digest; dead notices (refused for good by Telegram) are found quickly for `ob outbox`.

create table service_parts (
    worker         text not null,             -- host:pid
    part           text not null,
    state          text not null check (state in ('running', 'ok', 'failing', 'stopped', 'off')),
    detail         text,
    last_ok_at     timestamptz,
    last_error     text,
    last_error_at  timestamptz,
    failures       integer not null default 0,  -- in a row
    updated_at     timestamptz not null default now(),
    primary key (worker, part)
);

create index outbox_dead_idx on outbox (id) where gave_up_at is not null and delivered_at is null;
