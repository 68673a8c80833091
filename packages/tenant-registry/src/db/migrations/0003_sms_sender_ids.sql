-- An SMS sender id belongs to one tenant (compared without case). A sender id that two or more
-- tenants hold already cannot be given to any of them without knowing whose it is: it is removed
-- from all of them (they send with the platform's default until an operator gives it back to its
-- owner), and each change goes on the feed so services drop their cached copy.
with shared as (
  select lower(config #>> '{comm,smsSenderId}') as sender
  from tenants
  where (config #>> '{comm,smsSenderId}') <> ''
  group by 1
  having count(*) > 1
), cleared as (
  update tenants set config = config #- '{comm,smsSenderId}', version = version + 1, updated_at = now()
  where lower(config #>> '{comm,smsSenderId}') in (select sender from shared)
  returning id
)
insert into tenant_changes (tenant_id, type) select id, 'tenant.updated' from cleared;

create unique index tenants_sms_sender_id_key on tenants (lower(config #>> '{comm,smsSenderId}'))
  where (config #>> '{comm,smsSenderId}') <> '';
