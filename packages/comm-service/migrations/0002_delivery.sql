-- Delivery bookkeeping: the attempt budget (a redrive extends it), the job that holds the current
-- claim (so a job re-run after a crash resumes its own claim and no other job's), and the
-- per-tenant send counters behind messagesPerMinute and messagesPerDay.
alter table messages add column max_attempts integer not null default 5;
alter table messages add column claimed_by text;
create index messages_by_status on messages (status, created_at desc, id desc);

-- One row per window kind: the window's start and the messages accepted in it. The row lock makes
-- the count exact across every instance of the service.
create table send_counters (
  name text primary key check (name in ('minute', 'day')),
  window_start timestamptz not null,
  count integer not null
);
