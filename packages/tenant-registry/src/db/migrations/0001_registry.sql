create table tenants (
  id            text primary key check (id ~ '^[a-z0-9](?:[a-z0-9-]{0,54}[a-z0-9])?$'),
  name          text not null check (length(name) between 1 and 200),
  status        text not null check (status in ('provisioning', 'active', 'trial', 'suspended', 'archived')),
  tier          text not null check (tier in ('free', 'standard', 'premium')),
  schema_name   text not null unique,
  database      text not null default 'default',
  config        jsonb not null default '{}',
  limits        jsonb not null default '{}',
  metadata      jsonb not null default '{}',
  contact_email text,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  version       integer not null default 1
);
create index tenants_status_idx on tenants (status);

create table domains (
  domain     text primary key,
  tenant_id  text not null references tenants (id) on delete cascade,
  is_primary boolean not null default false,
  created_at timestamptz not null default now()
);
create index domains_tenant_idx on domains (tenant_id);

create table tenant_changes (
  seq       bigserial primary key,
  tenant_id text not null,
  type      text not null,
  at        timestamptz not null default now()
);
