-- Templates with locale variants and immutable versions: an edit adds a version; a message
-- records the template, version and locale it was rendered from.
create table templates (
  name text primary key,
  channel text not null check (channel in ('email', 'sms', 'webhook')),
  current_version integer not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table template_versions (
  name text not null references templates (name) on delete cascade,
  version integer not null,
  default_locale text not null,
  variants jsonb not null,
  defaults jsonb not null default '{}',
  created_at timestamptz not null default now(),
  primary key (name, version)
);

alter table messages add column template_name text;
alter table messages add column template_version integer;
alter table messages add column template_locale text;
