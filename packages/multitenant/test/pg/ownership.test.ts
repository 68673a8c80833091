// Tenant roles own nothing: one whole statement inside tenant A's unit cannot create a function,
// trigger or view, cannot run a DO block, and cannot change A's tables (ALTER, DROP, GRANT,
// TRUNCATE); A's role still reads and writes its rows, serial and identity columns included.
// Every attack here got through when tenant roles owned their schema and PUBLIC had plpgsql.
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { runAsTenant } from '../../src/context.ts'
import { migrateTenant } from '../../src/migrations.ts'
import { checkHardening, setupDatabase, TenantDb } from '../../src/pg/index.ts'
import { schemaName } from '../../src/tenant-id.ts'
import { createPlatformDatabase, provision, tid, unprovision } from './fixtures.ts'

const DDL = `create table notes (id serial primary key, owner text not null);
create table events (id bigint generated always as identity primary key, note int not null)`

let tests = 0
async function setup (t: Test) {
  const db = await createPlatformDatabase(t)
  const a = tid(`oa${++tests}`)
  const b = tid(`ob${tests}`)
  const registry = postgres(db.registryUrl, { max: 1, onnotice: () => {} })
  const root = postgres(db.url, { max: 1, onnotice: () => {} })
  for (const id of [a, b]) await provision(registry, id, `${DDL}; insert into notes (owner) values ('${id}'), ('${id}')`)
  const tdb = new TenantDb({ url: db.serviceUrl, max: 2, lanes: 1, postgres: { onnotice: () => {} } as never })
  // The same login without the adapter: what the database itself allows A's role.
  const service = postgres(db.serviceUrl, { max: 1, onnotice: () => {} })
  t.teardown(async () => {
    await tdb.close()
    await service.end()
    await unprovision(registry, [a, b])
    await registry.end()
    await root.end()
  })
  const sa = schemaName(a)
  const sb = schemaName(b)
  /** One statement in a transaction as A's role on A's schema, straight on the login's connection. */
  const asRoleA = async (text: string): Promise<unknown> => await service.begin(async (tx) => {
    await tx.unsafe(`select set_config('search_path', '"${sa}", pg_temp', true), set_config('role', '${sa}', true)`)
    return await tx.unsafe(text)
  })
  const ownersOfA = async (): Promise<string[]> => (await root.unsafe<Array<{ owner: string }>>(`select owner from "${sa}".notes order by id`)).map((r) => r.owner)
  return { db, a, b, sa, sb, tdb, root, service, asRoleA, ownersOfA }
}

/** The rejection of `promise`, which must reject (anything else fails the test). */
async function failure (t: Test, promise: Promise<unknown>, what: string): Promise<Record<string, unknown>> {
  const err = await promise.then(() => null, (e: unknown) => e as Record<string, unknown>)
  t.not(err, null, `${what}: fails`)
  return err ?? {}
}

/** Everything an error carries, its cause included, as text: to look for another tenant's data. */
const told = (err: Record<string, unknown>): string => JSON.stringify(err, Object.getOwnPropertyNames(err)) + String(err.message) + JSON.stringify(err.cause ?? null)

t.test('a DO block in A\'s unit cannot read or copy B\'s rows', async (t) => {
  const { a, b, sa, sb, tdb, asRoleA, ownersOfA } = await setup(t)
  const raise = `do $$ begin set role "${sb}"; raise exception '%', (select string_agg(owner, ',') from "${sb}".notes); end $$`
  for (const [how, run] of [['query', () => runAsTenant(a, () => tdb.query(raise))], ['transaction', () => runAsTenant(a, () => tdb.transaction(async (tx) => await tx.sql.unsafe(raise)))]] as const) {
    const err = await failure(t, run(), `DO … SET ROLE … RAISE (${how})`)
    t.notOk(told(err).includes(b), `${how}: no row of B in the error`)
  }
  await t.rejects(asRoleA(raise), { code: '42501', message: /permission denied for language plpgsql/ }, 'the database refuses plpgsql to A\'s role')

  const copy = `do $$ declare v text; begin set role "${sb}"; select string_agg(owner, ',') into v from "${sb}".notes; set role "${sa}"; insert into "${sa}".notes (owner) values (v); end $$`
  const before = await ownersOfA()
  await failure(t, runAsTenant(a, () => tdb.query(copy)), 'DO that copies B\'s rows into A\'s table')
  await failure(t, runAsTenant(a, () => tdb.transaction(async (tx) => await tx.sql.unsafe(copy))), 'the same in a transaction')
  await t.rejects(asRoleA(copy), { code: '42501', message: /language plpgsql/ })
  t.same(await ownersOfA(), before, 'A\'s table is unchanged')
  t.notOk((await ownersOfA()).some((o) => o.includes(b)))
})

t.test('A\'s unit cannot create functions, triggers or views, nor change its tables', async (t) => {
  const { a, b, sa, sb, tdb, root, service, asRoleA, ownersOfA } = await setup(t)
  const attacks: Array<[string, string]> = [
    ['a function with a SET role clause', `create function peek() returns setof text language sql set role = "${sb}" as 'select owner from "${sb}".notes'`],
    ['a function in A\'s schema, qualified', `create function "${sa}".peek() returns int language sql as 'select 1'`],
    ['a trigger on A\'s table', 'create trigger planted before insert on notes for each row execute function suppress_redundant_updates_trigger()'],
    ['a view', `create view peek as select owner from "${sb}".notes`],
    ['a table', 'create table stash (v text)'],
    ['a rule', 'create rule planted as on insert to notes do also delete from notes'],
    ['an ALTER of A\'s table', 'alter table notes add column planted text'],
    ['a TRUNCATE', 'truncate notes'],
    ['a DROP of A\'s table', 'drop table notes'],
    ['an index', 'create index planted on notes (owner)']
  ]
  const before = await ownersOfA()
  for (const [what, text] of attacks) {
    await failure(t, runAsTenant(a, () => tdb.query(text)), what)
    await failure(t, runAsTenant(a, () => tdb.transaction(async (tx) => await tx.sql.unsafe(text))), `${what} (transaction)`)
    await t.rejects(asRoleA(text), { code: /^42501$|^42809$/ }, `${what}: the database refuses it to A's role`)
  }
  // The login itself owns no tenant table either: asService, or a RESET ROLE, reads nothing.
  await t.rejects(runAsTenant(a, () => tdb.transaction(async (tx) => await tx.asService(async (sql) => await sql.unsafe(`select * from "${sa}".notes`)))), { code: '42501' }, 'asService: the login reads no tenant table')
  await t.rejects(service.begin(async (tx) => {
    await tx.unsafe(`select set_config('role', '${sa}', true)`)
    await tx.unsafe('reset role')
    return await tx.unsafe(`select * from "${sa}".notes`)
  }), { code: '42501' }, 'after RESET ROLE the login reads no tenant table')
  // A GRANT by a role without the grant option grants nothing (PostgreSQL only warns).
  await runAsTenant(a, () => tdb.query('grant select on notes to public')).catch(() => {})
  await asRoleA(`grant select, insert on notes to public, "${sb}"`)
  t.same(await root.unsafe(`select has_table_privilege('public', '"${sa}".notes', 'select') as public, has_table_privilege($1, '"${sa}".notes', 'select, insert') as b`, [sb]),
    [{ public: false, b: false }], 'a GRANT on A\'s table to PUBLIC or to B grants nothing')
  // Nothing was created: a later SELECT-only injection has nothing to call.
  await t.rejects(runAsTenant(a, () => tdb.query('select * from peek()')), { code: '42883' }, 'no function to call')
  t.same(await root.unsafe(`select count(*)::int as n from pg_proc where pronamespace = '"${sa}"'::regnamespace`), [{ n: 0 }], 'no function in A\'s schema')
  t.same(await root.unsafe(`select count(*)::int as n from pg_trigger where tgrelid = '"${sa}".notes'::regclass`), [{ n: 0 }], 'no trigger on A\'s table')
  t.same(await root.unsafe(`select relname from pg_class where relnamespace = '"${sa}"'::regnamespace and relkind in ('r', 'v', 'm') order by relname`),
    [{ relname: '_tenant_migrations' }, { relname: 'events' }, { relname: 'notes' }], 'no view or table was added')
  t.same(await ownersOfA(), before, 'A\'s rows are all there')
  t.same(await root.unsafe(`select count(*)::int as n from "${sb}".notes where owner = $1`, [b]), [{ n: 2 }], 'and B\'s')
  t.same(await root.unsafe('select nspowner::regrole::text as schema, (select string_agg(distinct tableowner, \',\') from pg_tables where schemaname = $1) as tables from pg_namespace where nspname = $1', [sa]),
    [{ schema: (await root`select nspowner::regrole::text as o from pg_namespace where nspname = ${sb}`)[0]?.o, tables: 'platform_owner' }], 'the registry owns the schema, the owner role the tables')
})

t.test('A\'s role reads and writes its own rows; serial and identity columns work', async (t) => {
  const { a, tdb, asRoleA } = await setup(t)
  const inserted = await runAsTenant(a, () => tdb.query<{ id: number }>('insert into notes (owner) values ($1) returning id', [a]))
  t.equal(inserted[0]?.id, 3, 'serial: the next value of the sequence')
  const event = await runAsTenant(a, () => tdb.query<{ id: string }>('insert into events (note) values ($1) returning id', [3]))
  t.equal(String(event[0]?.id), '1', 'identity column')
  t.same(await runAsTenant(a, () => tdb.query('update notes set owner = $1 where id = $2 returning id', ['changed', 3])), [{ id: 3 }])
  t.same(await runAsTenant(a, () => tdb.query('select count(*)::int as n from notes where owner = $1', ['changed'])), [{ n: 1 }])
  t.same(await runAsTenant(a, () => tdb.transaction(async (tx) => {
    await tx.sql`delete from events`
    await tx.sql`select * from notes where id = 1 for update`
    return await tx.sql`delete from notes where id = ${3} returning id`
  })), [{ id: 3 }], 'DELETE and SELECT FOR UPDATE in a transaction')
  t.same(await asRoleA('select setval(\'notes_id_seq\', 10), nextval(\'notes_id_seq\')::int as next'), [{ setval: '10', next: 11 }], 'the sequence itself: USAGE, SELECT and UPDATE')
  // The ledger is the migrator's, not the tenant's.
  await t.rejects(asRoleA('delete from _tenant_migrations'), { code: '42501' }, 'the migration ledger is out of the tenant\'s reach')
  await t.rejects(asRoleA('select * from _tenant_migrations'), { code: '42501' })
})

t.test('tenants made when tenant roles owned their schema move to this model: every row kept, what was planted gone', async (t) => {
  const db = await createPlatformDatabase(t)
  const root = postgres(db.url, { max: 1, onnotice: () => {} })
  const registry = postgres(db.registryUrl, { max: 1, onnotice: () => {} })
  const tdb = new TenantDb({ url: db.serviceUrl, max: 2, lanes: 1, postgres: { onnotice: () => {} } as never })
  const a = tid('la')
  const b = tid('lb')
  const [sa, sb] = [schemaName(a), schemaName(b)]
  t.teardown(async () => {
    await tdb.close()
    await unprovision(registry, [a, b])
    await registry.end()
    await root.end()
  })
  // The old model: PUBLIC may use plpgsql; the registry made each schema owned by its tenant's
  // role, and the migrator created the tables (and its ledger) as that role.
  await root.unsafe('grant usage on language plpgsql to public')
  for (const id of [a, b]) {
    const s = schemaName(id)
    await registry.begin(async (tx) => {
      await tx.unsafe(`create role "${s}" nologin`)
      await tx.unsafe(`grant "${s}" to current_user with inherit false, set true`)
      await tx.unsafe(`grant "${s}" to platform_services with inherit false, set true`)
      await tx.unsafe(`create schema "${s}" authorization "${s}"`)
      await tx.unsafe(`set local role "${s}"`)
      await tx.unsafe(`set local search_path = "${s}"`)
      await tx.unsafe('create table _tenant_migrations (name text primary key, checksum text not null, applied_at timestamptz not null default now())')
      await tx.unsafe('insert into _tenant_migrations (name, checksum) values (\'0001_notes.sql\', \'old\')')
      await tx.unsafe('create type mood as enum (\'fine\', \'meh\')')
      await tx.unsafe('create domain positive as int check (value > 0)')
      await tx.unsafe('create collation plain from "C"')
      await tx.unsafe('create sequence tickets')
      await tx.unsafe('create table notes (id serial primary key, owner text not null collate plain, mood mood not null default \'fine\', n positive not null default nextval(\'tickets\'))')
      await tx.unsafe('create table events (id bigint generated always as identity primary key, note int not null)')
      await tx.unsafe('insert into notes (owner) select $1 from generate_series(1, 50)', [id])
      await tx.unsafe('insert into events (note) values (1), (2)')
    })
  }
  // What single statements in A's units could plant: a function with a SET role clause that a
  // later SELECT-only injection calls, a trigger that copies B's rows into each new row of A's,
  // a view, grants to PUBLIC.
  const planted = [
    `create function peek() returns setof text language sql set role = "${sb}" as 'select owner from "${sb}".notes'`,
    `create function steal() returns trigger language plpgsql set role = "${sb}" as $$ begin new.owner := (select string_agg(distinct owner, ',') from "${sb}".notes); return new; end $$`,
    'create trigger planted before insert on notes for each row execute function steal()',
    'create view everything as select * from notes',
    'create rule planted_rule as on insert to events do also delete from notes',
    `grant usage on schema "${sa}" to public`,
    'grant select on notes to public',
    `grant usage on sequence notes_id_seq to "${sb}"`
  ]
  // Planted as A's role on a connection of its own (units refuse anything but data access now).
  await registry.begin(async (tx) => {
    await tx.unsafe(`set local role "${sa}"`)
    await tx.unsafe(`set local search_path = "${sa}"`)
    for (const text of planted) await tx.unsafe(text)
  })
  t.same(await runAsTenant(a, () => tdb.query('select distinct peek as owner from peek()')), [{ owner: b }], 'before: a SELECT-only statement in A\'s unit reads B through the planted function')
  t.same(await runAsTenant(a, () => tdb.query('insert into notes (owner) values ($1) returning owner', [a])), [{ owner: b }], 'before: the planted trigger copies B\'s rows into A\'s table')
  const weaker = (await checkHardening(registry)).weaker
  t.ok(weaker.some((w) => /2 tenant role\(s\) own their schema/.test(w)) && weaker.some((w) => /language plpgsql/.test(w)), 'checkHardening reports both')

  const snapshot = async (s: string): Promise<unknown[]> => [
    ...await root.unsafe(`select id, owner, mood::text, n from "${s}".notes order by id`),
    ...await root.unsafe(`select id::int, note from "${s}".events order by id`),
    ...await root.unsafe(`select name, checksum from "${s}"._tenant_migrations order by name`)
  ]
  const before = [await snapshot(sa), await snapshot(sb)]
  t.equal(before[0]?.length, 51 + 2 + 1)

  // The upgrade: the documented superuser setup, run again.
  const password = decodeURIComponent(new URL(db.registryUrl).password)
  const report = await setupDatabase(root, { registry: { user: db.registryUser, password } })
  t.same(report.moved.sort(), [sa, sb].sort(), 'both tenants moved')
  for (const what of [/function .*peek\(\)/, /function .*steal\(\)/, /trigger planted on table .*notes/, /view .*everything/, /rule planted_rule on table .*events/]) {
    t.ok(report.dropped.some((d) => what.test(d)), `dropped: ${String(what)}`)
  }
  t.same(await setupDatabase(root, { registry: { user: db.registryUser, password } }), { moved: [], dropped: [] }, 'idempotent: a second run moves nothing')

  t.same([await snapshot(sa), await snapshot(sb)], before, 'every row of both tenants is still there, the ledger too')
  t.same(await root.unsafe(`select (select nspowner::regrole::text from pg_namespace where nspname = $1) as schema,
      (select string_agg(distinct relowner::regrole::text, ',') from pg_class where relnamespace = $1::regnamespace) as relations,
      (select string_agg(distinct typowner::regrole::text, ',') from pg_type where typname in ('mood', 'positive') and typnamespace = $1::regnamespace) as type,
      (select collowner::regrole::text from pg_collation where collname = 'plain' and collnamespace = $1::regnamespace) as collation,
      (select count(*)::int from pg_proc where pronamespace = $1::regnamespace) as functions,
      (select count(*)::int from pg_trigger where tgrelid = $2::regclass and not tgisinternal) as triggers`, [sa, `"${sa}".notes`]),
  [{ schema: db.registryUser, relations: 'platform_owner', type: 'platform_owner', collation: 'platform_owner', functions: 0, triggers: 0 }], 'the registry owns the schema, the owner role the tables, sequences, types and collations; the planted objects are gone')
  t.same(await root.unsafe(`select has_schema_privilege('public', $1, 'usage') as schema, has_table_privilege('public', $2, 'select') as table,
      has_table_privilege($1, $3, 'select') as ledger, has_schema_privilege($1, $1, 'create') as create,
      has_sequence_privilege($4, $5, 'usage') as sequence`, [sa, `"${sa}".notes`, `"${sa}"._tenant_migrations`, sb, `"${sa}".notes_id_seq`]),
  [{ schema: false, table: false, ledger: false, create: false, sequence: false }], 'the grants A made are gone; A has no right on the ledger, no CREATE')

  // After: the planted function and trigger are gone, and the old attacks fail.
  await t.rejects(runAsTenant(a, () => tdb.query('select * from peek()')), { code: '42883' }, 'after: nothing to call')
  t.same(await runAsTenant(a, () => tdb.query('insert into notes (owner) values ($1) returning id, owner', [a])), [{ id: 52, owner: a }], 'after: A\'s insert is A\'s, the serial goes on')
  t.same(await runAsTenant(a, () => tdb.query<{ id: string }>('insert into events (note) values (3) returning id::int')), [{ id: 3 }], 'the identity column goes on, and the planted rule deleted nothing')
  t.same(await runAsTenant(a, () => tdb.query('select count(*)::int as n, max(n) as last from notes')), [{ n: 52, last: 52 }], 'the standalone sequence and the domain still work')
  t.same(await runAsTenant(a, () => tdb.query('update notes set mood = \'meh\' where id = 1 returning mood::text')), [{ mood: 'meh' }], 'the enum type still works')
  for (const text of planted.slice(0, 5)) await failure(t, runAsTenant(a, () => tdb.query(text)), `after: ${text.slice(0, 40)}…`)
  await failure(t, runAsTenant(a, () => tdb.query(`do $$ begin set role "${sb}"; raise exception '%', (select string_agg(owner, ',') from "${sb}".notes); end $$`)), 'after: DO')
  // The service's next migration applies as the owner, and A's role may use what it adds.
  const more = 'alter table notes add column extra text; create table tags (id serial primary key, tag text)'
  t.match(await migrateTenant(tdb.pool(), a, [{ name: '0001_notes.sql', checksum: 'old', sql: '' }, { name: '0002_more.sql', checksum: 'more', sql: more }]), { applied: ['0002_more.sql'] })
  t.same(await runAsTenant(a, () => tdb.query('insert into tags (tag) values (\'x\') returning id')), [{ id: 1 }], 'a table added after the move: DML and its sequence')
  t.same((await checkHardening(registry)).weaker, [], 'nothing weaker after the move')
  // The registry's purge: schema with its tables, then the role.
  await unprovision(registry, [a])
  t.same(await root`select count(*)::int as n from pg_roles where rolname = ${sa}`, [{ n: 0 }], 'a moved tenant can be purged')
})
