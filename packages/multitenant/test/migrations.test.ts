import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres, { type Sql } from 'postgres'
import t, { type Test } from 'tap'
import { LEDGER_TABLE, loadMigrations, migrateAll, migrateTenant } from '../src/migrations.ts'
import { DEFAULT_OWNER_ROLE } from '../src/pg/roles.ts'
import { schemaName } from '../src/tenant-id.ts'
import { createPlatformDatabase, provision, tid, unprovision } from './pg/fixtures.ts'

async function folder (t: Test, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text)
  return dir
}

async function tenants (t: Test, count: number, prefix: string): Promise<{ sql: Sql, ids: string[] }> {
  // Provisioned by the registry's login; migrations run as a service's login.
  const db = await createPlatformDatabase(t)
  const registry = postgres(db.registryUrl, { max: 10, connection: { client_min_messages: 'warning' } })
  // The superuser inspects and drives the runner here; test/pg covers the service login's limits.
  const sql = postgres(db.url, { max: 10, connection: { client_min_messages: 'warning' } })
  const ids = Array.from({ length: count }, (_, i) => tid(`${prefix}${i}`))
  // Provisioned in batches (what the registry does, one tenant at a time, is slower).
  for (let i = 0; i < ids.length; i += 50) await Promise.all(ids.slice(i, i + 50).map(async (id) => await provision(registry, id)))
  t.teardown(async () => {
    await unprovision(registry, ids)
    await registry.end()
    await sql.end()
  })
  return { sql, ids }
}

const ledger = async (sql: Sql, id: string): Promise<string[]> =>
  (await sql.unsafe<Array<{ name: string }>>(`select name from "${schemaName(id)}".${LEDGER_TABLE} order by name`)).map((r) => r.name)

t.test('500 tenants: migrated as the owner role, the tenant role gets DML only; a re-run applies nothing', async (t) => {
  const { sql, ids } = await tenants(t, 500, 'm')
  const dir = await folder(t, {
    '0001_messages.sql': 'create table messages (id bigserial primary key, body text not null);\ncreate index messages_body_idx on messages (body);',
    '0002_status.sql': "alter table messages add column status text not null default 'queued';",
    'README.md': 'not a migration'
  })
  const migrations = await loadMigrations(dir)
  t.same(migrations.map((m) => m.name), ['0001_messages.sql', '0002_status.sql'])
  let progress = 0
  const summary = await migrateAll({ migrations, tenants: ids, pool: () => sql, concurrency: 8, onProgress: (done) => { progress = done } })
  t.match(summary, { total: 500, migrated: 500, upToDate: 0, failed: [] })
  t.equal(progress, 500, 'progress reached every tenant')
  const owners = await sql<Array<{ owner: string, n: number }>>`
    select tableowner as owner, count(*)::int as n from pg_tables where tablename = 'messages' and schemaname like ${'tenant_m%' + ids[0]?.split('-').at(-1)} group by tableowner`
  t.same(owners, [{ owner: DEFAULT_OWNER_ROLE, n: 500 }], 'every tenant has its table, owned by the owner role, not the tenant\'s')
  for (const id of [ids[0] as string, ids[499] as string]) {
    t.same(await ledger(sql, id), ['0001_messages.sql', '0002_status.sql'])
    t.same((await sql.unsafe(`select column_name from information_schema.columns where table_schema = '${schemaName(id)}' and table_name = 'messages' order by ordinal_position`)).map((r) => r.column_name), ['id', 'body', 'status'])
    const s = schemaName(id)
    t.same(await sql.unsafe(`select ${['select', 'insert', 'update', 'delete', 'truncate', 'references', 'trigger'].map((p) => `has_table_privilege($1, '"${s}".messages', '${p}') as ${p}`).join(', ')},
        has_sequence_privilege($1, '"${s}".messages_id_seq', 'usage') as seq, has_schema_privilege($1, '${s}', 'create') as create, has_schema_privilege($1, '${s}', 'usage') as usage,
        has_table_privilege($1, '"${s}".${LEDGER_TABLE}', 'select, insert, update, delete') as ledger`, [s]),
    [{ select: true, insert: true, update: true, delete: true, truncate: false, references: false, trigger: false, seq: true, create: false, usage: true, ledger: false }],
    'the tenant role: DML on its table and sequence, nothing on the ledger, no CREATE')
  }
  const again = await migrateAll({ migrations, tenants: ids, pool: () => sql })
  t.match(again, { total: 500, migrated: 0, upToDate: 500, failed: [] }, 'idempotent')
})

t.test('one tenant\'s failing migration: the others migrate, that one stays as it was; a fix resumes', async (t) => {
  const { sql, ids } = await tenants(t, 12, 'f')
  const bad = ids[5] as string
  const first = await loadMigrations(await folder(t, { '0001_items.sql': 'create table items (code text not null);' }))
  t.match(await migrateAll({ migrations: first, tenants: ids, pool: () => sql }), { migrated: 12, failed: [] })
  await sql.unsafe(`set role "${schemaName(bad)}"; insert into "${schemaName(bad)}".items values ('dup'), ('dup'); reset role`)
  const next = await loadMigrations(await folder(t, {
    '0001_items.sql': 'create table items (code text not null);',
    '0002_flag.sql': 'alter table items add column flag boolean not null default false;',
    '0003_unique.sql': 'create unique index items_code_idx on items (code);'
  }))
  const summary = await migrateAll({ migrations: next, tenants: ids, pool: () => sql, concurrency: 4 })
  t.match(summary, { total: 12, migrated: 11, upToDate: 0 })
  t.equal(summary.failed.length, 1)
  t.match(summary.failed[0], { tenant: bad, code: 'MT_MIGRATION_FAILED', error: /0003_unique\.sql failed in .*could not create unique index/ })
  t.same(await ledger(sql, bad), ['0001_items.sql'], 'the failing tenant is unchanged: 0002 was rolled back with 0003')
  t.same((await sql.unsafe(`select column_name from information_schema.columns where table_schema = '${schemaName(bad)}' and table_name = 'items'`)).map((r) => r.column_name), ['code'])
  t.same(await ledger(sql, ids[6] as string), ['0001_items.sql', '0002_flag.sql', '0003_unique.sql'])

  await sql.unsafe(`delete from "${schemaName(bad)}".items`)
  t.match(await migrateAll({ migrations: next, tenants: ids, pool: () => sql }), { migrated: 1, upToDate: 11, failed: [] }, 'a re-run resumes with the one left')
})

t.test('an edited applied migration is refused; concurrent runners apply each file once', async (t) => {
  const { sql, ids } = await tenants(t, 40, 'c')
  const original = await loadMigrations(await folder(t, {
    '0001_a.sql': 'create table a (n int);',
    '0002_b.sql': 'create table b (n int); insert into b values (1);'
  }))
  const runs = await Promise.all([1, 2, 3].map(async () => await migrateAll({ migrations: original, tenants: ids, pool: () => sql, concurrency: 6 })))
  t.same(runs.map((r) => r.failed.length), [0, 0, 0])
  t.equal(runs.reduce((n, r) => n + r.migrated, 0), 40, 'each tenant was migrated by exactly one runner')
  for (const id of ids.slice(0, 5)) t.same(await sql.unsafe(`select n from "${schemaName(id)}".b`), [{ n: 1 }], 'applied once')

  const edited = original.map((m) => m.name === '0001_a.sql' ? { ...m, sql: 'create table a (n bigint);', checksum: 'changed' } : m)
  const refused = await migrateAll({ migrations: edited, tenants: ids.slice(0, 3), pool: () => sql })
  t.equal(refused.failed.length, 3)
  t.match(refused.failed[0], { code: 'MT_MIGRATION_CHANGED', error: /0001_a\.sql was changed after it was applied/ })
  await t.rejects(migrateTenant(sql, 'Not Valid', original), { code: 'TENANT_INVALID' })
  await t.rejects(migrateTenant(sql, tid('never-provisioned'), original), { code: '3F000' }, 'a tenant without a schema fails')
  await t.rejects(migrateTenant(sql, ids[0] as string, original, { owner: 'no_such_owner' }), { code: '22023', message: /role .* does not exist/ }, 'so does an owner role that was never set up')
})

t.test('tenants are routed to their cluster\'s pool; the tenant role gets nothing in another schema', async (t) => {
  const { sql, ids } = await tenants(t, 2, 'r')
  const [a, b] = ids as [string, string]
  const source = (async function * () { yield a; yield { id: b, database: 'other' } as never })()
  const clusters: string[] = []
  const fine = await loadMigrations(await folder(t, { '0001_ok.sql': 'create table ok (n int);' }))
  const summary = await migrateAll({ migrations: fine, tenants: source, pool: (cluster) => { clusters.push(cluster); return sql } })
  t.match(summary, { total: 2, migrated: 2 })
  t.same(clusters.sort(), ['default', 'other'], 'each tenant goes to its cluster\'s pool')
  t.same(await sql`select has_schema_privilege(${schemaName(a)}, ${schemaName(b)}, 'usage') as usage, has_table_privilege(${schemaName(a)}, ${`"${schemaName(b)}".ok`}, 'select') as select`,
    [{ usage: false, select: false }], 'A\'s role has no right in B\'s schema')

  t.match(await migrateTenant(sql, { id: a }, fine), { tenant: a, applied: [], skipped: 1 }, 'a record works as well as an id')
  const aborted = new AbortController()
  aborted.abort()
  t.match(await migrateAll({ migrations: fine, tenants: [a, b], pool: () => sql, signal: aborted.signal }), { total: 0 }, 'an aborted run stops before the next tenant')
  const broken = await migrateAll({ migrations: fine, tenants: [a], pool: () => { throw new Error('no pool for you') } })
  t.same(broken.failed, [{ tenant: a, error: 'no pool for you' }], 'a failure without a code is reported as is')
})
