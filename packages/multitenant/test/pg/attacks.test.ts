// Isolation as an attacker tries it: one injected statement inside tenant A's unit of work, state
// left on a connection for the next unit, the service login outside units, and lazy query
// builders handed across scopes. Every case here got through before the role model and the
// adapter's hardening.
import { pgTable, serial, text } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { forEachTenant, runAsSystem, runAsTenant } from '../../src/context.ts'
import { TenantDb } from '../../src/pg/index.ts'
import { schemaName } from '../../src/tenant-id.ts'
import { createPlatformDatabase, provision, tid, unprovision } from './fixtures.ts'

const notes = pgTable('notes', { id: serial('id').primaryKey(), owner: text('owner').notNull() })
const DDL = 'create table notes (id serial primary key, owner text not null)'

async function setup (t: Test) {
  const db = await createPlatformDatabase(t)
  const a = tid('xa')
  const b = tid('xb')
  const registry = postgres(db.registryUrl, { max: 1, onnotice: () => {} })
  const root = postgres(db.url, { max: 1, onnotice: () => {} })
  for (const id of [a, b]) await provision(registry, id, `${DDL}; insert into notes (owner) values ('${id}')`)
  // One lane and one transaction connection: whatever a unit leaves behind, the next one meets.
  const tdb = new TenantDb({ url: db.serviceUrl, max: 2, lanes: 1, schema: { notes }, postgres: { onnotice: () => {} } as never })
  t.teardown(async () => {
    await tdb.close()
    await unprovision(registry, [a, b])
    await registry.end()
    await root.end()
  })
  return { db, a, b, sa: schemaName(a), sb: schemaName(b), tdb, root }
}

const ownersIn = (rows: Array<Record<string, unknown>>): unknown[] => rows.map((r) => r.owner)

t.test('one injected statement cannot leave the tenant', async (t) => {
  const { a, b, sa, sb, tdb } = await setup(t)
  const asA = async <T>(fn: () => Promise<T>): Promise<T> => await runAsTenant(a, fn)

  // set_config switches the role for the rest of the statement; query_to_xml then reads as it.
  await t.rejects(asA(() => tdb.query(`select set_config('role', session_user, true), query_to_xml('select * from "${sb}".notes', true, false, '')`)),
    { code: '42501', message: /set_config/ }, 'set_config back to the login: permission denied')
  await t.rejects(asA(() => tdb.query(`select set_config('role', '${sb}', true), query_to_xml('select * from "${sb}".notes', true, false, '')`)),
    { code: '42501' }, 'set_config to another tenant: permission denied')
  await t.rejects(asA(() => tdb.query(`select set_config('search_path', '"${sb}"', false)`)), { code: '42501' })
  await t.rejects(asA(() => tdb.transaction(async (tx) => await tx.sql.unsafe(`select set_config('role', '${sb}', true), query_to_xml('select * from notes', true, false, '')`))), { code: '42501' })

  // Stacked statements and a COMMIT inside the statement: one statement per message.
  await t.rejects(asA(() => tdb.query(`select 1; select * from "${sb}".notes`)), { code: '42601' }, 'stacked statements are refused')
  await t.rejects(asA(() => tdb.query(`commit; set role "${sb}"; select * from "${sb}".notes`)), { code: '42601' }, 'COMMIT cannot end the unit early')
  await t.rejects(asA(() => tdb.transaction(async (tx) => await tx.sql.unsafe(`commit; select * from "${sb}".notes`))), { code: '42601' }, 'tx.sql.unsafe sends one statement too')

  // Notifications and advisory locks are for the logins, not for tenant units.
  await t.rejects(asA(() => tdb.query('select pg_notify(\'tenant_changes\', \'999999\')')), { code: '42501' })
  await t.rejects(asA(() => tdb.query('select pg_advisory_lock(1)')), { code: '42501' })
  await t.rejects(asA(() => tdb.query('select pg_try_advisory_xact_lock(1, 2)')), { code: '42501' })

  // No temporary table can shadow a tenant table: no TEMPORARY, and pg_temp is searched last.
  await t.rejects(asA(() => tdb.query('create temp table notes (id int, owner text)')), { code: '42501' })
  t.same(await asA(() => tdb.query('select current_setting(\'search_path\') as sp')), [{ sp: `"${sa}", pg_temp` }])

  // After all that, A still sees only A, and B is intact.
  t.same(ownersIn(await asA(() => tdb.query('select owner from notes'))), [a])
  t.same(ownersIn(await tdb.query('select owner from notes', [], { tenant: b })), [b])
})

t.test('nothing a unit does to its session outlives it', async (t) => {
  const { db, a, b, sa, sb, tdb, root } = await setup(t)
  const whoAmI = 'select current_user as usr, current_setting(\'search_path\') as sp, current_setting(\'statement_timeout\') as st, owner from notes'
  const expectA = { usr: sa, sp: `"${sa}", pg_temp`, st: '5s', owner: a }

  // Session-level SET ROLE and SET in pipelined units: the next unit on the lane is A's own.
  for (const injected of [`set role "${sb}"`, `set session search_path = "${sb}"`, 'set statement_timeout = 1', 'set session characteristics as transaction read only']) {
    await runAsTenant(a, () => tdb.query(injected)).catch(() => {})
    t.match(await runAsTenant(a, () => tdb.query(whoAmI)), [expectA], `after "${injected}"`)
    await runAsTenant(a, () => tdb.query('insert into notes (owner) values ($1)', [a]))
    t.same(await tdb.system(async (tx) => await tx.sql`select current_user as usr`), [{ usr: db.serviceUser }], `system work after "${injected}"`)
  }
  // A held cursor would keep A's rows for whoever comes next.
  await runAsTenant(a, () => tdb.query('declare leak cursor with hold for select owner from notes')).catch(() => {})
  await t.rejects(runAsTenant(b, () => tdb.query('fetch all from leak')), { code: '34000' }, 'no cursor survives its unit')

  // The same inside transactions, on their own connection: the unit fails and rolls back.
  for (const injected of [`set role "${sb}"`, `set search_path = "${sb}"`, 'set statement_timeout = 1']) {
    await t.rejects(runAsTenant(a, () => tdb.transaction(async (tx) => await tx.sql.unsafe(injected))), { code: 'MT_UNIT_REFUSED' })
    t.match(await runAsTenant(a, () => tdb.transaction(async (tx) => await tx.sql.unsafe(whoAmI))), [expectA], `transaction after "${injected}"`)
    t.same(await tdb.system(async (tx) => await tx.sql`select current_user as usr, current_setting('search_path') as sp`), [{ usr: db.serviceUser, sp: 'public, pg_temp' }])
  }

  // System work runs as the login, which may call set_config and take session locks: a unit whose
  // role changed fails and rolls back, and its connection (with the lock it took) is closed.
  await t.rejects(tdb.system(async (tx) => await tx.sql`select set_config('role', ${sb}, false), pg_advisory_lock(424242)`), { code: 'MT_UNIT_REFUSED' })
  t.same(await tdb.system(async (tx) => await tx.sql`select current_user as usr`), [{ usr: db.serviceUser }])
  const locks = async (): Promise<number> => (await root<Array<{ n: number }>>`select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = 424242`)[0]?.n as number
  for (let i = 0; i < 100 && await locks() > 0; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(await locks(), 0, 'the session advisory lock was released')
  t.match(await runAsTenant(a, () => tdb.transaction(async (tx) => await tx.sql.unsafe(whoAmI))), [expectA])
})

t.test('the service login reads no tenant table outside a unit of work', async (t) => {
  const { db, sa, tdb } = await setup(t)
  const pool = tdb.pool()
  await t.rejects(pool.unsafe(`select * from "${sa}".notes`), { code: '42501' }, 'qualified: permission denied')
  await t.rejects(pool`select * from notes`, { code: '42P01' }, 'unqualified: does not resolve')
  await t.rejects(tdb.system(async (tx) => await tx.sql.unsafe(`select * from "${sa}".notes`)), { code: '42501' }, 'system work is not a tenant either')
  // The login itself is no superuser, and the registry's login inherits no tenant either.
  t.same(await pool`select rolsuper from pg_roles where rolname = current_user`, [{ rolsuper: false }])
  const registry = postgres(db.registryUrl, { max: 1 })
  t.teardown(() => registry.end())
  await t.rejects(registry.unsafe(`select * from "${sa}".notes`), { code: '42501' })
})

t.test('a lazy query builder runs in the scope it was handed to', async (t) => {
  const { a, b, tdb } = await setup(t)
  // Inside B's request, work for A returned as a builder (not awaited inside the callback).
  const rows = await runAsTenant(b, async () => await runAsTenant(a, () => tdb.scoped.select({ owner: notes.owner }).from(notes)))
  t.same(ownersIn(rows), [a], 'runAsTenant adopts the builder in A\'s scope')
  const system = await runAsTenant(b, async () => await runAsSystem(() => tdb.scoped.select().from(notes)).then(() => 'ran', (err: { cause?: { code?: string } }) => err.cause?.code))
  t.equal(system, 'TENANT_REQUIRED', 'runAsSystem: the builder runs in the system scope, not B\'s')
  const each = await runAsTenant(b, async () => await forEachTenant([a], () => tdb.scoped.select({ owner: notes.owner }).from(notes)))
  t.same(each.map((r) => r.ok ? ownersIn(r.value) : r.error), [[a]], 'forEachTenant too')
})
