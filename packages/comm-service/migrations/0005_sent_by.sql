-- Who sent each message: the user's `sub`, or `svc:<name>` for a service calling for the tenant
-- (the token's `act.sub`). Messages accepted before this column existed have none.
alter table messages add column sent_by text;
