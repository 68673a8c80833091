// A service's shared table (a job queue) written in the same transaction as a tenant's rows,
// through TenantTx.asService: atomic with them, and still out of every tenant role's reach.
import postgres from 'postgres'
import t from 'tap'
import { TenantDb } from '../../src/pg/index.ts'
import { schemaName } from '../../src/tenant-id.ts'
import { createPlatformDatabase, provision, tid, unprovision } from './fixtures.ts'

t.test('asService: the service login inside a tenant unit, atomically, and back to the tenant after', async (t) => {
  const db = await createPlatformDatabase(t)
  const a = tid('qa')
  const b = tid('qb')
  const registry = postgres(db.registryUrl, { max: 1, onnotice: () => {} })
  const root = postgres(db.url, { max: 1, onnotice: () => {} })
  for (const id of [a, b]) await provision(registry, id, 'create table notes (body text not null)')
  // The service's own schema: the service login may write it; no tenant role has any right on it.
  await root.unsafe(`create schema queue; create table queue.jobs (tenant text not null, run_as text not null, path text not null);
    grant usage on schema queue to ${db.serviceUser}; grant select, insert on queue.jobs to ${db.serviceUser}`)
  const tdb = new TenantDb({ url: db.serviceUrl, max: 2, lanes: 1 })
  t.teardown(async () => {
    await tdb.close()
    await unprovision(registry, [a, b])
    await registry.end()
    await root.end()
  })
  const jobs = async (): Promise<Array<{ tenant: string, run_as: string, path: string }>> => await root`select tenant, run_as, path from queue.jobs order by tenant`

  // One unit: the tenant's row, the service's job, then the tenant again.
  const after = await tdb.transaction(async (tx) => {
    await tx.sql`insert into notes (body) values ('hello')`
    await tx.asService(async (sql) => await sql`insert into queue.jobs (tenant, run_as, path) values (${a}, current_user, current_setting('search_path'))`)
    const [back] = await tx.sql<Array<{ usr: string, path: string }>>`select current_user as usr, current_setting('search_path') as path`
    return back
  }, { tenant: a })
  t.same(after, { usr: schemaName(a), path: `"${schemaName(a)}", pg_temp` }, 'the tenant\'s role and search path are back after the service step')
  t.same(await jobs(), [{ tenant: a, run_as: db.serviceUser, path: 'pg_catalog, pg_temp' }], 'the job was written as the service login, with no tenant schema on the path')
  t.same(await tdb.query('select body from notes', [], { tenant: a }), [{ body: 'hello' }])

  // Atomic: a unit that fails after its service step leaves neither the row nor the job.
  await t.rejects(tdb.transaction(async (tx) => {
    await tx.sql`insert into notes (body) values ('lost')`
    await tx.asService(async (sql) => await sql`insert into queue.jobs (tenant, run_as, path) values (${b}, '', '')`)
    throw new Error('after the job was written')
  }, { tenant: b }), /after the job was written/)
  t.same(await tdb.query('select body from notes', [], { tenant: b }), [], 'no row')
  t.equal((await jobs()).length, 1, 'no job')

  // Tenant roles have no right on the service's schema, in or out of the service step's reach.
  await t.rejects(tdb.query('select * from queue.jobs', [], { tenant: a }), { code: '42501' })
  await t.rejects(tdb.query('insert into queue.jobs values ($1, $2, $3)', [a, 'x', 'y'], { tenant: a }), { code: '42501' })
  await t.rejects(tdb.transaction(async (tx) => await tx.sql`select * from queue.jobs`, { tenant: b }), { code: '42501' })

  // A failure inside the step is the unit's failure (not the reset's that cannot run after it).
  await t.rejects(tdb.transaction(async (tx) => await tx.asService(async (sql) => await sql`select * from no_such_table`), { tenant: a }), { code: '42P01' })

  // Code that catches a failure of its own inside the step and goes on is the tenant again.
  const caught = await tdb.transaction(async (tx) => {
    await tx.asService(async () => { throw new Error('not SQL') }).catch(() => undefined)
    const [row] = await tx.sql<Array<{ usr: string }>>`select current_user as usr`
    return row?.usr
  }, { tenant: b })
  t.equal(caught, schemaName(b))

  // Under a savepoint too.
  const nested = await tdb.transaction(async (tx) => await tx.savepoint(async (sp) => {
    await sp.asService(async (sql) => await sql`insert into queue.jobs (tenant, run_as, path) values (${b}, current_user, 'sp')`)
    const [row] = await sp.sql<Array<{ usr: string }>>`select current_user as usr`
    return row?.usr
  }), { tenant: b })
  t.equal(nested, schemaName(b))
  t.equal((await jobs()).length, 2)
})

t.test('raw unsafe() in a unit is prepared only when asked and when the TenantDb prepares at all', async (t) => {
  const db = await createPlatformDatabase(t)
  const a = tid('qp')
  const registry = postgres(db.registryUrl, { max: 1, onnotice: () => {} })
  await provision(registry, a, 'create table notes (body text not null)')
  const prepared = new TenantDb({ url: db.serviceUrl, max: 2, lanes: 1 })
  const unprepared = new TenantDb({ url: db.serviceUrl, max: 2, lanes: 1, prepare: false })
  t.teardown(async () => {
    await prepared.close()
    await unprepared.close()
    await unprovision(registry, [a])
    await registry.end()
  })
  const named = async (tdb: TenantDb, options?: { prepare: boolean }): Promise<number> => await tdb.transaction(async (tx) => {
    await tx.sql.unsafe('select count(*) from notes where body = $1', ['x'], options)
    const [row] = await tx.sql.unsafe<Array<{ n: number }>>('select count(*)::int as n from pg_prepared_statements where statement like $1', ['select count(*) from notes where body%'])
    return row?.n as number
  }, { tenant: a })
  t.equal(await named(prepared), 0, 'unnamed by default')
  t.equal(await named(prepared, { prepare: true }), 1, 'named when asked')
  t.equal(await named(unprepared, { prepare: true }), 0, 'never on a TenantDb with prepare: false (PgBouncer before 1.21)')
})
