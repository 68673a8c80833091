import { createTestDatabase } from '@platform/testkit'
import { eq, sql as dsql } from 'drizzle-orm'
import { integer, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { runAsSystem, runAsTenant } from '../../src/context.ts'
import { TenantDb } from '../../src/pg/index.ts'
import type { Tenant } from '../../src/types.ts'
import { createPlatformDatabase, provision, tid, unprovision } from './fixtures.ts'

const notes = pgTable('notes', {
  id: serial('id').primaryKey(),
  owner: text('owner').notNull(),
  body: text('body').notNull(),
  n: integer('n').notNull().default(0),
  at: timestamp('at', { withTimezone: true }).notNull().defaultNow()
})
const DDL = 'create table notes (id serial primary key, owner text not null, body text not null, n int not null default 0, at timestamptz not null default now())'

async function setup (t: Test, ids: string[]) {
  const db = await createPlatformDatabase(t)
  const admin = postgres(db.registryUrl, { max: 2, connection: { client_min_messages: 'warning' } })
  for (const id of ids) await provision(admin, id, DDL)
  t.teardown(async () => {
    await unprovision(admin, ids)
    await admin.end()
  })
  // The superuser only inspects what the units did (the logins cannot read tenant tables).
  const root = postgres(db.url, { max: 2, connection: { client_min_messages: 'warning' } })
  t.teardown(() => root.end())
  return { url: db.serviceUrl, admin, root, db }
}

t.test('scoped statements, transactions and system work see only their own schema', async (t) => {
  const a = tid('pa')
  const b = tid('pb')
  const { url, admin, root } = await setup(t, [a, b])
  const tdb = new TenantDb({ url, schema: { notes } })
  t.teardown(() => tdb.close())

  const inserted = await runAsTenant(a, async () => await tdb.scoped.insert(notes).values({ owner: a, body: 'hello from a' }).returning())
  t.match(inserted, [{ owner: a, body: 'hello from a', n: 0 }])
  t.ok(inserted[0]?.at instanceof Date, 'drizzle maps timestamps')
  await runAsTenant(b, async () => await tdb.scoped.insert(notes).values({ owner: b, body: 'hello from b' }))
  t.same(await runAsTenant(a, async () => (await tdb.scoped.select({ owner: notes.owner }).from(notes)).map((r) => r.owner)), [a])
  t.same(await runAsTenant(b, async () => (await tdb.scoped.select({ owner: notes.owner }).from(notes)).map((r) => r.owner)), [b])
  t.same(await runAsTenant(a, async () => await tdb.scoped.query.notes.findMany({ columns: { body: true } })), [{ body: 'hello from a' }], 'relational queries')

  // A transaction: several statements, one scope, savepoints.
  const count = await runAsTenant(a, async () => await tdb.transaction(async (tx) => {
    await tx.insert(notes).values({ owner: a, body: 'two' })
    await t.rejects(tx.savepoint(async (sp) => {
      await sp.insert(notes).values({ owner: a, body: 'rolled back' })
      throw new Error('inner failure')
    }), /inner failure/)
    await t.rejects(tx.savepoint(async (sp) => {
      await sp.insert(notes).values({ owner: a, body: 'rolled back too' })
      await sp.sql`select 1 / 0`
    }), { code: '22012' }, 'a failed statement inside a savepoint is rolled back with it')
    t.equal(await tx.savepoint(async (sp) => { await sp.insert(notes).values({ owner: a, body: 'kept' }); return 'ok' }), 'ok')
    const [{ n } = { n: -1 }] = await tx.sql<Array<{ n: number }>>`select count(*)::int as n from notes`
    return n
  }))
  t.equal(count, 3, 'the failed savepoint rolled back only its own insert; the released one kept its')
  await t.rejects(runAsTenant(a, async () => await tdb.transaction(async (tx) => {
    await tx.insert(notes).values({ owner: a, body: 'lost' })
    throw new Error('whole unit fails')
  })), /whole unit fails/)
  t.same((await root.unsafe(`select body from "tenant_${a.replaceAll('-', '_')}".notes order by id`)).map((r) => r.body), ['hello from a', 'two', 'kept'], 'a failed unit leaves nothing')

  // A statement error swallowed inside the unit: COMMIT turns into ROLLBACK, and the unit says so.
  await t.rejects(runAsTenant(a, async () => await tdb.transaction(async (tx) => {
    await tx.insert(notes).values({ owner: a, body: 'doomed' })
    await tx.sql`select 1 / 0`.catch(() => {})
    return 'looks fine'
  })), { code: '22012' }, 'the swallowed error fails the unit, which rolls back')

  // Named tenant without context, and a record routed by its database.
  t.equal((await tdb.transaction(async (tx) => await tx.select().from(notes), { tenant: b })).length, 1)
  const recordB = { id: b, database: 'default' } as unknown as Tenant
  t.equal((await tdb.transaction(async (tx) => await tx.select().from(notes), { tenant: recordB })).length, 1)

  // Updates through drizzle are scoped too.
  await runAsTenant(b, async () => await tdb.scoped.update(notes).set({ n: 5 }).where(eq(notes.owner, b)))
  t.same(await root.unsafe(`select n from "tenant_${b.replaceAll('-', '_')}".notes`), [{ n: 5 }])

  // System work sees public, and no tenant table unqualified.
  await admin`create table if not exists public.catalog (k text)`
  await admin`insert into public.catalog values ('shared')`
  await admin`grant select on public.catalog to platform_services`
  t.same(await tdb.system(async (tx) => await tx.sql`select k from catalog`), [{ k: 'shared' }])
  await t.rejects(tdb.system(async (tx) => await tx.sql`select * from notes`), { code: '42P01' })
})

t.test('fail closed: no scope, another tenant\'s table, and nothing left on the connection', async (t) => {
  const a = tid('fa')
  const b = tid('fb')
  const { url, db } = await setup(t, [a, b])
  const tdb = new TenantDb({ url, max: 2, lanes: 1 })
  t.teardown(() => tdb.close())

  // drizzle wraps what the client throws; the cause is ours.
  await t.rejects(async () => await tdb.scoped.select().from(notes), { cause: { code: 'TENANT_REQUIRED' } }, 'no tenant in context: refused before sending')
  await t.rejects(runAsSystem(async () => await tdb.scoped.select().from(notes)), { cause: { code: 'TENANT_REQUIRED' } }, 'the system scope is not a tenant')
  await t.rejects(tdb.transaction(async () => 1), { code: 'TENANT_REQUIRED' })
  await t.rejects(tdb.transaction(async () => 1, { tenant: 'Bad Id' }), { code: 'TENANT_INVALID' })

  const sb = `tenant_${b.replaceAll('-', '_')}`
  await t.rejects(runAsTenant(a, async () => await tdb.scoped.execute(dsql.raw(`select * from "${sb}".notes`))), { cause: { code: '42501' } }, 'a fully qualified query for another tenant: permission denied')
  await t.rejects(runAsTenant(a, async () => await tdb.transaction(async (tx) => await tx.sql.unsafe(`select * from "${sb}".notes`))), { code: '42501' })

  // Outside any unit, the pool's connections resolve no tenant table and carry no tenant role.
  const pool = tdb.pool()
  await t.rejects(pool`select * from notes`, { code: '42P01' })
  for (let i = 0; i < 4; i++) {
    await runAsTenant(a, async () => await tdb.scoped.select().from(notes))
    t.match((await pool`select current_setting('search_path') as sp, current_user as usr, current_setting('statement_timeout') as st`)[0], { sp: 'pg_catalog, pg_temp', usr: db.serviceUser, st: '0' })
  }

  // Statement timeout is transaction-local too.
  await t.rejects(runAsTenant(a, async () => await tdb.transaction(async (tx) => await tx.sql`select pg_sleep(2)`, { statementTimeout: 50 })), { code: '57014' })
  t.equal((await pool`select current_setting('statement_timeout') as st`)[0]?.st, '0')
  t.same(await runAsTenant(a, async () => await tdb.transaction(async (tx) => (await tx.sql`select current_setting('statement_timeout') as st`)[0])), { st: '5s' })
})

t.test('a purged tenant\'s role is gone: its units fail, others carry on', async (t) => {
  const a = tid('ga')
  const b = tid('gb')
  const { url, admin } = await setup(t, [a, b])
  const tdb = new TenantDb({ url, max: 2, lanes: 1 })
  t.teardown(() => tdb.close())
  await unprovision(admin, [a])
  const results = await Promise.allSettled([
    runAsTenant(a, async () => await tdb.scoped.select().from(notes)),
    runAsTenant(b, async () => await tdb.scoped.select().from(notes)),
    runAsTenant(a, async () => await tdb.scoped.select().from(notes)),
    runAsTenant(b, async () => await tdb.scoped.insert(notes).values({ owner: b, body: 'still here' }).returning({ owner: notes.owner }))
  ])
  t.same(results.map((r) => r.status), ['rejected', 'fulfilled', 'rejected', 'fulfilled'])
  t.same((results[3] as PromiseFulfilledResult<unknown>).value, [{ owner: b }])
})

t.test('clusters: a tenant\'s database picks its pool; unknown clusters are an error', async (t) => {
  const a = tid('ca')
  const { url } = await setup(t, [a])
  const other = await createTestDatabase(t)
  const admin2 = postgres(other.url, { max: 1, connection: { client_min_messages: 'warning' } })
  t.teardown(() => admin2.end())
  // The same tenant id on a second "cluster" (another database here; roles are per server).
  await admin2.begin(async (tx) => {
    await tx.unsafe(`create schema "tenant_${a.replaceAll('-', '_')}" authorization "tenant_${a.replaceAll('-', '_')}"`)
    await tx.unsafe(`set local role "tenant_${a.replaceAll('-', '_')}"; set local search_path = "tenant_${a.replaceAll('-', '_')}"; ${DDL}`)
  })
  const tdb = new TenantDb({ clusters: { default: url, eu: other.url }, max: 2 })
  t.teardown(() => tdb.close())
  const onEu = { id: a, database: 'eu' } as unknown as Tenant
  const onDefault = { id: a, database: 'default' } as unknown as Tenant
  await runAsTenant(onEu, async () => await tdb.scoped.insert(notes).values({ owner: a, body: 'in eu' }))
  t.same(await runAsTenant(onEu, async () => (await tdb.scoped.select({ body: notes.body }).from(notes))), [{ body: 'in eu' }])
  t.same(await runAsTenant(onDefault, async () => (await tdb.scoped.select({ body: notes.body }).from(notes))), [], 'default cluster untouched')
  await t.rejects(runAsTenant({ id: a, database: 'mars' } as unknown as Tenant, async () => await tdb.scoped.select().from(notes)), { cause: { code: 'MT_UNKNOWN_CLUSTER' } })
  t.throws(() => new TenantDb({}), { code: 'MT_INVALID_OPTION' })
  t.throws(() => new TenantDb({ url, max: 1 }), { code: 'MT_INVALID_OPTION' })
  t.throws(() => new TenantDb({ url, max: 4, lanes: 4 }), { code: 'MT_INVALID_OPTION' })
  await t.rejects(runAsTenant(a, async () => await tdb.scoped.transaction(async () => {})), { code: 'MT_INVALID_OPTION' })
})

t.test('raw scoped statements, and more units in flight than one lane pipelines', async (t) => {
  const a = tid('qa')
  const b = tid('qb')
  const { url } = await setup(t, [a, b])
  const tdb = new TenantDb({ url, max: 2, lanes: 1, postgres: { max_pipeline: 6 } as never })
  t.teardown(() => tdb.close())
  await tdb.query('insert into notes (owner, body) values ($1, $2)', [a, 'raw'], { tenant: a })
  t.same(await runAsTenant(a, async () => await tdb.query<{ owner: string }>('select owner from notes')), [{ owner: a }])
  t.same(await tdb.query('select owner from notes', [], { tenant: b }), [])
  await t.rejects(tdb.query('select 1'), { code: 'TENANT_REQUIRED' })
  // 200 units on one lane that pipelines two at a time: they wait their turn, none is lost.
  const owners = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
    const id = i % 2 === 0 ? a : b
    const rows = await tdb.query<{ tenant: string }>('select current_setting(\'role\') as tenant', [], { tenant: id })
    return rows[0]?.tenant === `tenant_${id.replaceAll('-', '_')}`
  }))
  t.ok(owners.every(Boolean), 'every unit ran as its own tenant')
})

t.test('connections the server drops are replaced: later units work, nothing crashes', async (t) => {
  const a = tid('la')
  const { url, root } = await setup(t, [a])
  const tdb = new TenantDb({ url, max: 3, lanes: 2 })
  t.teardown(() => tdb.close())
  const admin = root
  const pids = async (): Promise<number[]> => (await admin<Array<{ pid: number }>>`select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`).map((r) => r.pid)
  for (let i = 0; i < 4; i++) await tdb.query('select 1', [], { tenant: a })
  await tdb.transaction(async (tx) => await tx.sql`select 1`, { tenant: a })
  // The server drops every connection the adapter holds (a restart, a failover, an idle timeout).
  for (const pid of await pids()) await admin`select pg_terminate_backend(${pid})`
  await new Promise((resolve) => setTimeout(resolve, 200))
  // A unit that meets a dead connection fails (like any client's); the pool then reconnects.
  const outcomes: boolean[] = []
  for (let i = 0; i < 10; i++) outcomes.push(await tdb.query<{ n: number }>('select 3 as n', [], { tenant: a }).then((rows) => rows[0]?.n === 3, () => false))
  t.ok(outcomes.filter((ok) => !ok).length <= 2, `at most one failure per lane (${outcomes.join(' ')})`)
  t.same(outcomes.slice(-6), [true, true, true, true, true, true], 'lanes reconnected')
  let answer: unknown
  for (let attempt = 0; attempt < 5 && answer === undefined; attempt++) {
    answer = await tdb.transaction(async (tx) => await tx.sql`select 4 as n`, { tenant: a }).catch(() => undefined)
  }
  t.same(answer, [{ n: 4 }], 'transactions too')
})
