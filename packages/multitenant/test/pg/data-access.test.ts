// A unit runs data access only. Inside tenant A's unit on the service login, one injected statement
// that is not data access (a plain SET ROLE to another tenant, RESET ROLE back to the login, SET
// search_path…) used to switch the session for the rest of the unit: the next statement read B's
// rows or the login's own tables. Now such a statement fails its unit at once, the unit rolls back
// (the role change dies with it), no later statement of the unit reaches the server, and the next
// unit on the same pool is clean. Through every way in: db.query and db.scoped (pipelined), and
// db.transaction through drizzle, tx.sql, tx.sql.unsafe, a savepoint, concurrent statements.
import { sql as dsql } from 'drizzle-orm'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { runAsTenant } from '../../src/context.ts'
import { TenantDb, type TenantTx } from '../../src/pg/index.ts'
import { schemaName } from '../../src/tenant-id.ts'
import { createPlatformDatabase, provision, tid, unprovision } from './fixtures.ts'

const REFUSED = { code: 'MT_UNIT_REFUSED' }
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

async function setup (t: Test) {
  const db = await createPlatformDatabase(t)
  const a = tid('da')
  const b = tid('db')
  const registry = postgres(db.registryUrl, { max: 1, onnotice: () => {} })
  const root = postgres(db.url, { max: 1, onnotice: () => {} })
  for (const id of [a, b]) await provision(registry, id, `create table notes (id serial primary key, owner text not null); insert into notes (owner) values ('${id}')`)
  // A table of the service login's own (a job queue): no tenant role may read it.
  await root.unsafe(`create schema queue authorization ${db.serviceUser}; create table queue.jobs (secret text); alter table queue.jobs owner to ${db.serviceUser}; insert into queue.jobs values ('the login''s own')`)
  // One lane and one transaction connection: whatever a unit leaves behind, the next one meets.
  const tdb = new TenantDb({ url: db.serviceUrl, max: 2, lanes: 1 })
  t.teardown(async () => {
    await tdb.close()
    await unprovision(registry, [a, b])
    await registry.end()
    await root.end()
  })
  const sa = schemaName(a)
  const sb = schemaName(b)
  const asA = async <T>(fn: () => Promise<T>): Promise<T> => await runAsTenant(a, fn)
  const whoAmI = 'select current_user as usr, current_setting(\'search_path\') as sp, current_setting(\'statement_timeout\') as st, owner from notes'
  /** The next units on the same pool (pipelined, transaction, system) are clean and their own. */
  const clean = async (t: Test, after: string): Promise<void> => {
    const mine = { usr: sa, sp: `"${sa}", pg_temp`, st: '5s', owner: a }
    t.same(await asA(() => tdb.query(whoAmI)), [mine], `${after}: the next pipelined unit is A's own`)
    t.same(await asA(() => tdb.transaction(async (tx) => await tx.sql.unsafe(whoAmI))), [mine], `${after}: the next transaction is A's own`)
    t.same(await tdb.system(async (tx) => await tx.sql`select current_user as usr, current_setting('search_path') as sp`), [{ usr: db.serviceUser, sp: 'public, pg_temp' }], `${after}: system work is the login's`)
  }
  const ownersOf = async (schema: string): Promise<string[]> => (await root.unsafe<Array<{ owner: string }>>(`select owner from "${schema}".notes order by id`)).map((r) => r.owner)
  const sequenceOf = async (schema: string): Promise<number> => Number((await root.unsafe<Array<{ n: string }>>(`select last_value as n from "${schema}".notes_id_seq`))[0]?.n)
  return { db, a, b, sa, sb, tdb, root, asA, clean, ownersOf, sequenceOf }
}

t.test('pipelined units (db.query, db.scoped): a statement that is not data access fails and rolls back', async (t) => {
  const { b, sa, sb, tdb, asA, clean } = await setup(t)
  const injections = [`set role "${sb}"`, 'reset role', `set search_path = "${sb}"`, 'set statement_timeout = 0', `set local role "${sb}"`, 'set session characteristics as transaction read only']
  for (const injected of injections) {
    await t.rejects(asA(() => tdb.query(injected)), REFUSED, `"${injected}" fails its unit`)
    await t.rejects(asA(() => tdb.query(`select owner from "${sb}".notes`)), { code: '42501' }, `after "${injected}", B's rows are not A's`)
    await t.rejects(asA(() => tdb.query('select secret from queue.jobs')), { code: '42501' }, `after "${injected}", nor the login's`)
    await clean(t, injected)
  }
  await t.rejects(asA(() => tdb.scoped.execute(dsql.raw(`set role "${sb}"`))), { cause: REFUSED }, 'through drizzle too')
  await clean(t, 'drizzle')

  // The role change died with its transaction: the unit pipelined right behind it on the same
  // connection opened as the login (a role left on the session may not) and ran as A.
  const pid = 'select pg_backend_pid() as pid, current_user as usr'
  const [before, injected, after] = await Promise.allSettled([asA(() => tdb.query(pid)), asA(() => tdb.query(`set role "${sb}"`)), asA(() => tdb.query(pid))])
  t.match(injected, { status: 'rejected', reason: REFUSED })
  t.same(after, before, 'same connection, same role: nothing of the refused unit stayed')
  t.match(before, { status: 'fulfilled', value: [{ usr: sa }] })

  // SET ROLE to A's own role passes the guard and sticks: the units behind it cannot take their
  // settings there, and run again on a fresh connection, each as itself.
  const outcomes = await Promise.allSettled([asA(() => tdb.query(`set role "${sa}"`)), asA(() => tdb.query(pid)), runAsTenant(b, () => tdb.query(pid))])
  t.match(outcomes, [{ status: 'rejected', reason: REFUSED }, { status: 'fulfilled', value: [{ usr: sa }] }, { status: 'fulfilled', value: [{ usr: sb }] }])
  await clean(t, `set role "${sa}"`)
})

t.test('transaction units: the first statement that is not data access is the last that runs', async (t) => {
  const { a, sa, sb, tdb, asA, clean, ownersOf, sequenceOf } = await setup(t)
  type Inject = (tx: TenantTx<Record<string, never>>, text: string) => Promise<unknown>
  // Every way a statement reaches the transaction.
  const ways: Array<[string, Inject]> = [
    ['tx.sql.unsafe', async (tx, text) => await tx.sql.unsafe(text)],
    ['tx.sql', async (tx, text) => await tx.sql`${tx.sql.unsafe(text)}`],
    ['drizzle', async (tx, text) => await tx.execute(dsql.raw(text))],
    ['a savepoint', async (tx, text) => await tx.savepoint(async (sp) => await sp.sql.unsafe(text))],
    ['tx.sql.savepoint', async (tx, text) => await tx.sql.savepoint(async (sp) => await sp.unsafe(text))]
  ]
  for (const [way, inject] of ways) {
    for (const [injected, read] of [[`set role "${sb}"`, `select owner from "${sb}".notes`], ['reset role', 'select secret as owner from queue.jobs'], [`set search_path = "${sb}", pg_temp`, 'select owner from notes']]) {
      let leaked: unknown
      const unit = asA(() => tdb.transaction(async (tx) => {
        await tx.sql`insert into notes (owner) values ('doomed')`
        // The attacker's code may swallow the failure and go on.
        await inject(tx, injected as string).catch(() => {})
        leaked = await tx.sql.unsafe(read as string)
      }))
      await t.rejects(unit, REFUSED, `${way}: "${injected}" fails the unit`)
      t.equal(leaked, undefined, `${way}: "${read}" never ran`)
      await clean(t, `${way}: "${injected}"`)
      t.same(await ownersOf(sa), [a], `${way}: nothing of the unit was committed`)
    }
  }

  // Statements issued at once: the later ones wait for the first one's answer, and never go out.
  const sequence = await sequenceOf(sb)
  let settled: Promise<Array<PromiseSettledResult<unknown>>> | undefined
  await t.rejects(asA(() => tdb.transaction(async (tx) => {
    settled = Promise.allSettled([
      tx.sql.unsafe(`set role "${sb}"`),
      tx.sql.unsafe(`select owner from "${sb}".notes`),
      tx.execute(dsql.raw(`select nextval('"${sb}".notes_id_seq')`)),
      tx.sql`select secret from queue.jobs`
    ])
    return await settled
  })), REFUSED)
  const outcomes = await settled as Array<PromiseSettledResult<unknown>>
  t.same(outcomes.map((o) => o.status), ['rejected', 'rejected', 'rejected', 'rejected'], 'no statement after it returned anything')
  t.equal(await sequenceOf(sb), sequence, 'B\'s sequence (not transactional) never moved: nothing after it ran as B')
  await clean(t, 'concurrent statements')

  // The service's own code (asService) and system units follow the same rule.
  await t.rejects(asA(() => tdb.transaction(async (tx) => await tx.asService(async (sql) => await sql.unsafe(`set role "${sb}"`)))), REFUSED)
  await t.rejects(tdb.system(async (tx) => await tx.sql.unsafe('listen anything')), REFUSED)
  // LOCK TABLE is data access (its lock ends with the transaction), on A's own table only.
  t.same(await asA(() => tdb.transaction(async (tx) => { await tx.sql.unsafe('lock table notes in share row exclusive mode'); return await tx.sql.unsafe('select count(*)::int as n from notes where false') })), [{ n: 0 }], 'LOCK TABLE on its own table')
  await t.rejects(asA(() => tdb.transaction(async (tx) => await tx.sql.unsafe(`lock table "${sb}".notes in access exclusive mode`))), { code: '42501' }, 'but not on B\'s')
  await t.rejects(asA(() => tdb.transaction(async (tx) => await tx.sql.unsafe(''))), { code: 'MT_UNIT_REFUSED', message: /an empty statement/ })
  // A statement issued after its unit ended never goes out.
  let late: PromiseLike<unknown> | undefined
  await asA(() => tdb.transaction(async (tx) => { late = tx.sql`select owner from notes` }))
  await t.rejects(Promise.resolve(late), REFUSED, 'a statement awaited after its unit ended')
  await clean(t, 'late')
})

t.test('transaction semantics: commit, rollback, nested savepoints, swallowed errors', async (t) => {
  const { a, sa, tdb, asA, ownersOf } = await setup(t)
  const mark = (tx: TenantTx<Record<string, never>>, owner: string): Promise<unknown> => tx.sql`insert into notes ${tx.sql({ owner })}`
  t.equal(await asA(() => tdb.transaction(async (tx) => { await mark(tx, 'committed'); return 'ok' })), 'ok')
  await t.rejects(asA(() => tdb.transaction(async (tx) => { await mark(tx, 'thrown'); throw new Error('rollback') })), /rollback/)
  await asA(() => tdb.transaction(async (tx) => {
    await tx.savepoint(async (outer) => {
      await mark(outer, 'outer')
      await t.rejects(outer.savepoint(async (inner) => { await mark(inner, 'inner failed'); throw new Error('inner') }), /inner/)
      await outer.savepoint(async (inner) => await mark(inner, 'inner kept'))
    })
    await t.rejects(tx.savepoint(async (outer) => {
      await outer.savepoint(async (inner) => await mark(inner, 'released, then rolled back with its parent'))
      await outer.sql`select 1 / 0`
    }), { code: '22012' })
    await t.rejects(tx.savepoint(async (sp) => {
      await mark(sp, 'swallowed failure')
      await sp.sql`select 1 / 0`.catch(() => {})
      return 'looks fine'
    }), { code: '22012' }, 'a savepoint whose statement failed, even swallowed, rolls back')
    await tx.sql.savepoint('named', async (sp) => await sp`insert into notes (owner) values ('postgres.js style')`)
  }))
  t.same(await ownersOf(sa), [a, 'committed', 'outer', 'inner kept', 'postgres.js style'])

  // A swallowed failure fails the unit; "transaction aborted" behind it reports the first one.
  await t.rejects(asA(() => tdb.transaction(async (tx) => {
    await tx.sql`select 1 / 0`.catch(() => {})
    await tx.sql`select 1`
  })), { code: '22012' })
  // A statement cancelled before it went out fails the unit too.
  await t.rejects(asA(() => tdb.transaction(async (tx) => {
    const query = tx.sql`select 1`.execute()
    query.cancel()
    await query.catch(() => {})
  })), { code: '57014' })

  // postgres.js's tools: cursors, describe, helpers; nothing that would leave the unit.
  const seen = await asA(() => tdb.transaction(async (tx) => {
    const rows: string[] = []
    for await (const [row] of tx.sql<Array<{ owner: string }>>`select owner from notes order by id`.cursor(1)) rows.push(row?.owner as string)
    const described = await tx.sql`select owner from notes where id = ${1}`.describe()
    return { rows, columns: described.columns.map((c) => c.name), begin: (tx.sql as unknown as Record<string, unknown>).begin, file: tx.sql.file }
  }))
  t.same(seen, { rows: [a, 'committed', 'outer', 'inner kept', 'postgres.js style'], columns: ['owner'], begin: undefined, file: undefined })
  t.same(await ownersOf(sa), [a, 'committed', 'outer', 'inner kept', 'postgres.js style'], 'nothing else was committed')
})

t.test('lanes are renewed after max_lifetime, between units', async (t) => {
  const { db, a } = await setup(t)
  const tdb = new TenantDb({ url: db.serviceUrl, max: 2, lanes: 1, postgres: { max_lifetime: 1 } })
  const forever = new TenantDb({ url: db.serviceUrl, max: 2, lanes: 1, postgres: { max_lifetime: null } })
  t.teardown(async () => { await tdb.close(); await forever.close() })
  const pids = async (db: TenantDb): Promise<unknown[]> => [
    (await db.query('select pg_backend_pid() as pid', [], { tenant: a }))[0]?.pid,
    (await db.transaction(async (tx) => await tx.sql`select pg_backend_pid() as pid`, { tenant: a }))[0]?.pid
  ]
  const first = await pids(tdb)
  const kept = await pids(forever)
  await sleep(1100)
  const second = await pids(tdb)
  t.ok(first[0] !== second[0] && first[1] !== second[1], 'fresh connections after the lifetime')
  t.same(await pids(forever), kept, 'max_lifetime: null keeps them')
})
