-- Provider callbacks (delivery receipts and bounces): one row per callback id, so a repeat is
-- recognised and changes nothing; `applied` says whether it moved the message.
create table receipts (
  id text primary key,
  message_id uuid not null,
  event text not null check (event in ('delivered', 'bounced')),
  applied boolean not null,
  received_at timestamptz not null default now()
);
create index messages_by_provider_id on messages (provider_message_id) where provider_message_id is not null;
