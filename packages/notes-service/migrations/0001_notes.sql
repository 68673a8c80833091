-- Runs in each tenant's schema, as the tenant's role (schema-unqualified on purpose).
create table notes (
  id bigint generated always as identity primary key,
  title text not null check (char_length(title) between 1 and 200),
  body text not null default '',
  tags text[] not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index notes_tags on notes using gin (tags);
