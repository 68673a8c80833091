-- The role model (README, "Database roles"): services reach tenant roles through one group role,
-- granted every tenant role WITH INHERIT FALSE, SET TRUE, and nobody inherits a tenant role's
-- privileges. Tenants provisioned before this migration move to these grants.
do $$
declare
  t record;
  m record;
begin
  begin
    create role platform_services nologin;
  exception when duplicate_object or unique_violation then null;
  end;
  for t in select schema_name from public.tenants loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = t.schema_name) then
      execute format('grant %I to platform_services with inherit false, set true', t.schema_name);
      for m in select a.member::regrole::text as member from pg_catalog.pg_auth_members a
        where a.roleid = t.schema_name::regrole and a.inherit_option loop
        execute format('grant %I to %s with inherit false', t.schema_name, m.member);
      end loop;
    end if;
  end loop;
end
$$;
