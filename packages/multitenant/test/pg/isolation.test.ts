// The isolation suite: many tenants, many interleaved scoped reads and writes on a small pool,
// with random delays, injected statement errors, rollbacks and savepoints. Zero rows may be read
// or written in the wrong tenant. Runs directly against PostgreSQL and through PgBouncer in
// transaction pooling mode.
import { findPgBouncer, startPgBouncer } from '@platform/testkit'
import { sql as dsql } from 'drizzle-orm'
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { runAsTenant } from '../../src/context.ts'
import { TenantDb } from '../../src/pg/index.ts'
import { schemaName } from '../../src/tenant-id.ts'
import { createPlatformDatabase, provision, tid, unprovision } from './fixtures.ts'

const TENANTS = Number(process.env.ISOLATION_TENANTS ?? 100)
const OPS = Number(process.env.ISOLATION_OPS ?? 100_000)
const WORKERS = 48

const items = pgTable('items', {
  id: serial('id').primaryKey(),
  owner: text('owner').notNull(),
  n: integer('n').notNull()
})

/** Deterministic pseudo-random numbers, so a failure can be replayed. */
function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6D2B79F5) >>> 0
    let x = Math.imul(s ^ (s >>> 15), 1 | s)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const sleep = async (ms: number): Promise<void> => { if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms)) }

interface Outcome { ops: number, leaks: number, injected: number, rolledBack: number, expected: Map<string, number> }

async function hammer (tdb: TenantDb<{ items: typeof items }>, ids: string[], seed: number): Promise<Outcome> {
  const random = rng(seed)
  const expected = new Map(ids.map((id) => [id, 0]))
  const out: Outcome = { ops: 0, leaks: 0, injected: 0, rolledBack: 0, expected }
  const check = (tenant: string, owners: string[]): void => { for (const o of owners) if (o !== tenant) out.leaks++ }
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < OPS) {
      next++
      const tenant = ids[Math.floor(random() * ids.length)] as string
      const dice = random()
      const delay = random() < 0.2 ? Math.floor(random() * 2) : 0
      await runAsTenant(tenant, async () => {
        if (dice < 0.45) {
          const rows = await tdb.scoped.insert(items).values({ owner: tenant, n: next }).returning({ owner: items.owner })
          check(tenant, rows.map((r) => r.owner))
          expected.set(tenant, (expected.get(tenant) ?? 0) + 1)
        } else if (dice < 0.88) {
          const rows = await tdb.scoped.select({ owner: items.owner }).from(items).limit(20)
          check(tenant, rows.map((r) => r.owner))
        } else if (dice < 0.95) {
          // An injected statement error on a shared pipelined connection.
          out.injected++
          await tdb.scoped.execute(dsql`select no_such_column from items`).then(() => { throw new Error('should have failed') }, () => {})
        } else {
          // A transaction with delays, a savepoint that fails, and sometimes a rollback of all of it.
          const abort = random() < 0.3
          let added = 0
          try {
            await tdb.transaction(async (tx) => {
              const before = await tx.select({ owner: items.owner }).from(items).limit(5)
              check(tenant, before.map((r) => r.owner))
              await sleep(delay)
              const mine = await tx.insert(items).values({ owner: tenant, n: -next }).returning({ owner: items.owner })
              check(tenant, mine.map((r) => r.owner))
              added++
              await tx.savepoint(async (sp) => {
                await sp.insert(items).values({ owner: tenant, n: 0 })
                await sp.execute(dsql`select 1 / 0`)
              }).catch(() => { out.injected++ })
              await sleep(delay)
              if (abort) throw new Error('rollback')
            })
            expected.set(tenant, (expected.get(tenant) ?? 0) + added)
          } catch (err) {
            if ((err as Error).message !== 'rollback') throw err
            out.rolledBack++
          }
        }
      })
      out.ops++
    }
  }
  await Promise.all(Array.from({ length: WORKERS }, worker))
  return out
}

async function suite (t: Test, url: string, admin: postgres.Sql, ids: string[], prepare: boolean): Promise<void> {
  const tdb = new TenantDb({ url, max: 4, lanes: 3, prepare, schema: { items } })
  t.teardown(() => tdb.close())
  const started = Date.now()
  const out = await hammer(tdb, ids, 20261123)
  t.comment(`${out.ops} operations in ${Date.now() - started} ms; ${out.injected} injected errors, ${out.rolledBack} rolled-back transactions`)
  t.equal(out.ops, OPS)
  t.equal(out.leaks, 0, 'no row of another tenant was ever read or returned')
  t.ok(out.injected > OPS / 25 && out.rolledBack > 0, 'errors and rollbacks were injected')
  let wrong = 0
  let mismatched = 0
  for (const id of ids) {
    const rows = await admin.unsafe<Array<{ owner: string, n: number }>>(`select owner, count(*)::int as n from "${schemaName(id)}".items group by owner`)
    for (const r of rows) if (r.owner !== id) wrong += r.n
    const total = rows.reduce((sum, r) => sum + r.n, 0)
    if (total !== out.expected.get(id)) mismatched++
  }
  t.equal(wrong, 0, 'no row was written into the wrong tenant')
  t.equal(mismatched, 0, 'every tenant holds exactly its committed writes (rollbacks and savepoints undone)')
  const sa = schemaName(ids[0] as string)
  const sb = schemaName(ids[1] as string)
  await t.rejects(runAsTenant(ids[0] as string, async () => await tdb.scoped.execute(dsql.raw(`select * from "${sb}".items`))), { cause: { code: '42501' } }, 'qualified access to another tenant: permission denied')
  await t.rejects(tdb.pool().unsafe('select * from items'), { code: '42P01' }, 'outside any scope, tenant tables do not resolve')
  t.ok(sa !== sb)
}

t.test('isolation under concurrency', { timeout: 900_000 }, async (t) => {
  // The service runs on its own non-superuser login; the registry's login provisions; the
  // superuser only counts rows afterwards.
  const db = await createPlatformDatabase(t)
  const registry = postgres(db.registryUrl, { max: 4, connection: { client_min_messages: 'warning' } })
  const admin = postgres(db.url, { max: 4, connection: { client_min_messages: 'warning' } })
  const ids = Array.from({ length: TENANTS }, (_, i) => tid(`iso${i}`))
  t.teardown(async () => {
    await unprovision(registry, ids)
    await registry.end()
    await admin.end()
  })
  for (const id of ids) await provision(registry, id, 'create table items (id serial primary key, owner text not null, n int not null)')

  await t.test(`direct: ${TENANTS} tenants, ${OPS} operations, pool of 4`, async (t) => {
    await suite(t, db.serviceUrl, admin, ids, true)
  })

  await t.test('through PgBouncer in transaction pooling mode', { skip: findPgBouncer() === null && 'pgbouncer is not installed (apt-get install pgbouncer)' }, async (t) => {
    for (const id of ids) await admin.unsafe(`truncate "${schemaName(id)}".items`)
    const bouncer = await startPgBouncer(db.serviceUrl, { poolSize: 4 })
    t.teardown(() => bouncer.stop())
    t.comment(`PgBouncer ${bouncer.version}`)
    // PgBouncer before 1.21 cannot pool prepared statements.
    const [major = 0, minor = 0] = bouncer.version.split('.').map(Number)
    await suite(t, bouncer.url, admin, ids, major > 1 || minor >= 21)
  })
})
