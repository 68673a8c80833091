-- Registered services (README, "Services and token exchange"): what each may do on a tenant's
-- behalf (scopes) and whom it may call (audiences), and its credentials, kept by their token id
-- (`jti`) so each can be revoked. A revoked service keeps its row (its name and history).
create table services (
  name        text primary key check (name ~ '^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$'),
  scopes      text[] not null default '{}',
  audiences   text[] not null default '{}',
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  revoked_at  timestamptz,
  version     integer not null default 1
);

create table service_credentials (
  id          text primary key,
  service     text not null references services (name) on delete cascade,
  created_at  timestamptz not null default now(),
  expires_at  timestamptz not null,
  revoked_at  timestamptz
);
create index service_credentials_service_idx on service_credentials (service);
