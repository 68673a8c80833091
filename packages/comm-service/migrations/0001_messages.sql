-- The communication service's tables, in each tenant's schema (run as the tenant's role).
create table messages (
  id uuid primary key,
  channel text not null check (channel in ('email', 'sms', 'webhook')),
  recipient text not null,
  subject text,
  text_body text,
  html_body text,
  body text,
  metadata jsonb not null default '{}',
  status text not null default 'queued' check (status in ('queued', 'sending', 'sent', 'delivered', 'failed', 'bounced', 'canceled')),
  scheduled_at timestamptz,
  attempts integer not null default 0,
  last_error text,
  provider text,
  provider_message_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index messages_newest on messages (created_at desc, id desc);

create table message_events (
  id bigint generated always as identity primary key,
  message_id uuid not null references messages (id) on delete cascade,
  status text not null,
  detail text,
  at timestamptz not null default now()
);
create index message_events_by_message on message_events (message_id, id);

-- Stripe's semantics: a key per tenant, the request's fingerprint, the first answer for 24 hours.
create table idempotency_keys (
  key text primary key,
  fingerprint text not null,
  message_id uuid not null,
  status_code integer not null,
  response jsonb not null,
  created_at timestamptz not null default now()
);
