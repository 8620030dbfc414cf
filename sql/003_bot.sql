-- The Telegram bot: FSM state, capture previews, card messages, outbox leases, digest runs.

-- aiogram FSM state, one row per storage key (bot:chat:user:thread:destiny); survives restarts.
create table bot_fsm (
    key         text primary key,
    state       text,
    data        jsonb not null default '{}',
    updated_at  timestamptz not null default now()
);

-- Plain-text captures waiting for [Save] / [Edit] / [Discard]; callback data carries only the id.
create table bot_captures (
    id          bigserial primary key,
    chat_id     bigint not null,
    user_id     bigint not null,
    text        text not null,
    created_at  timestamptz not null default now(),
    outcome     text check (outcome in ('saved', 'discarded')),
    task_key    text,
    decided_at  timestamptz
);

-- Every approval card the bot sent, so it can be edited after a decision (bot or CLI).
create table bot_cards (
    task_id     bigint not null references tasks (id) on delete cascade,
    chat_id     bigint not null,
    message_id  bigint not null,
    state       text not null default 'pending',  -- 'pending' until the card shows a decision
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    primary key (chat_id, message_id)
);
create index bot_cards_task_idx on bot_cards (task_id);

-- Strangers who wrote to the bot: each gets one polite refusal, ever.
create table bot_strangers (
    user_id     bigint primary key,
    first_seen  timestamptz not null default now(),
    last_seen   timestamptz not null default now(),
    attempts    integer not null default 1
);

-- Outbox delivery: a notifier holds a row with FOR NO KEY UPDATE SKIP LOCKED while sending it
-- (released at once if the process dies); each recipient chat is recorded once Telegram accepted
-- it, so a retry never repeats a chat; rows that fail for good are marked given up, not delivered.
alter table outbox add column gave_up_at timestamptz;
create index outbox_deliverable_idx on outbox (available_at, id)
    where delivered_at is null and gave_up_at is null;

create table outbox_sent (
    outbox_id   bigint not null references outbox (id) on delete cascade,
    chat_id     bigint not null,
    message_id  bigint,
    sent_at     timestamptz not null default now(),
    primary key (outbox_id, chat_id)
);

-- The daily digest: one row per local day; claimed by one process, sent_at once delivered.
create table digest_runs (
    day         date primary key,
    claimed_by  text not null,
    claimed_at  timestamptz not null default now(),
    sent_at     timestamptz
);

-- The digest counts open work per lane (and its oldest) from this index alone; unverified
-- completions use tasks_unverified_idx (002).
create index tasks_digest_lane_age_idx on tasks (lane, (coalesce(approved_at, created_at)))
    where status in ('open', 'claimed');
