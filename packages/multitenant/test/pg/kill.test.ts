// Every unit settles when its connection dies: 100 units in flight per lane, every backend
// terminated, 20 rounds; then PostgreSQL itself stopped and started under load. Each unit settles
// within its statement timeout plus one second, units started afterwards succeed, and no unit
// ever answers with another tenant's rows. (postgres.js alone leaves some of these unsettled.)
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { startEmbeddedPostgres, type RunningPostgres } from '@platform/testkit'
import postgres from 'postgres'
import t from 'tap'
import { TenantDb } from '../../src/pg/index.ts'
import { setupDatabase } from '../../src/pg/roles.ts'
import { schemaName } from '../../src/tenant-id.ts'
import { provision, tid } from './fixtures.ts'

const TIMEOUT = 2000
const ROUNDS = Number(process.env.KILL_ROUNDS ?? 20)
const PER_LANE = 100
const LANES = 2
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

interface Tally { ok: number, failed: number, wrong: number, late: number, codes: Map<string, number>, worst: number }

t.test('units settle when connections die or the server restarts', async (t) => {
  // A server of its own: this test stops and starts it.
  const parent = await mkdtemp(join(process.cwd(), '.kill-pg-'))
  t.teardown(() => rm(parent, { recursive: true, force: true }))
  let pg: RunningPostgres = await startEmbeddedPostgres({ dataDir: join(parent, 'data') })
  const port = pg.port
  t.teardown(async () => await pg.stop())
  const root = postgres(pg.url, { max: 1, onnotice: () => {} })
  await root.unsafe('create database platform')
  await root.end()
  const url = (user: string, password: string): string => `postgres://${user}:${password}@127.0.0.1:${port}/platform`
  const admin = postgres(url('postgres', 'postgres'), { max: 1, onnotice: () => {} })
  await setupDatabase(admin, { registry: { user: 'registry', password: 'registry-pass' }, services: [{ user: 'svc', password: 'svc-password' }] })
  const registry = postgres(url('registry', 'registry-pass'), { max: 1 })
  const tenants = ['ka', 'kb', 'kc', 'kd'].map(tid)
  for (const id of tenants) await provision(registry, id, `create table notes (owner text not null); insert into notes values ('${id}')`, url('svc', 'svc-password'))
  await registry.end()

  const tdb = new TenantDb({ url: url('svc', 'svc-password'), max: LANES + 1, lanes: LANES, statementTimeout: TIMEOUT, postgres: { max_pipeline: 600, onnotice: () => {} } as never })
  t.teardown(() => tdb.close())

  const tally = (): Tally => ({ ok: 0, failed: 0, wrong: 0, late: 0, codes: new Map(), worst: 0 })
  /** One unit for a tenant: checks the answer is that tenant's, and how long it took to settle. */
  const unit = async (i: number, into: Tally): Promise<boolean> => {
    const tenant = tenants[i % tenants.length] as string
    const started = performance.now()
    try {
      const rows = await tdb.query<{ owner: string, usr: string }>('select owner, current_user as usr from notes, pg_sleep(0.0005)', [], { tenant })
      if (rows.length !== 1 || rows[0]?.owner !== tenant || rows[0]?.usr !== schemaName(tenant)) into.wrong++
      else into.ok++
      return true
    } catch (err) {
      into.failed++
      const code = String((err as { code?: string }).code)
      into.codes.set(code, (into.codes.get(code) ?? 0) + 1)
      return false
    } finally {
      const took = performance.now() - started
      into.worst = Math.max(into.worst, took)
      if (took > TIMEOUT + 1000) into.late++
    }
  }
  const afterwards = async (): Promise<Tally> => {
    const out = tally()
    for (let i = 0; i < 20; i++) await unit(i, out)
    return out
  }

  const all = tally()
  for (let round = 0; round < ROUNDS; round++) {
    // Long enough in flight to be cut off: each unit's statement waits a little on the server.
    const inflight = Array.from({ length: PER_LANE * LANES }, async (_, i) => await unit(i, all))
    await sleep(1 + (round % 4))
    await admin`select pg_terminate_backend(pid) from pg_stat_activity where usename = 'svc'`
    await Promise.all(inflight)
    // "Later" units: started once the client has seen the connections close.
    await sleep(50)
    const next = await afterwards()
    if (next.ok !== 20 || next.wrong !== 0) t.fail(`round ${round}: units started afterwards: ${JSON.stringify({ ok: next.ok, failed: next.failed, codes: [...next.codes] })}`)
  }
  t.equal(all.wrong, 0, 'no unit answered with another tenant\'s rows')
  t.equal(all.late, 0, `every unit settled within ${TIMEOUT + 1000} ms (worst ${Math.round(all.worst)} ms)`)
  t.ok(all.failed > 0, `the kills were felt (${all.ok} ok, ${all.failed} failed: ${JSON.stringify([...all.codes])})`)
  t.same([...all.codes.keys()], ['SERVICE_UNAVAILABLE'], 'failures are SERVICE_UNAVAILABLE, never another unit\'s error')
  t.comment(`kill rounds: ${ROUNDS}, units ${all.ok + all.failed}, ok ${all.ok}, failed ${all.failed}, worst settle ${Math.round(all.worst)} ms`)

  // The server stops and starts while units keep coming.
  await admin.end()
  const restart = tally()
  const stop = { now: false }
  const load = (async () => {
    let i = 0
    while (!stop.now) await Promise.all(Array.from({ length: 50 }, async () => await unit(i++, restart)))
  })()
  await sleep(100)
  await pg.stop()
  await sleep(300)
  pg = await startEmbeddedPostgres({ dataDir: join(parent, 'data'), port })
  await sleep(300)
  stop.now = true
  await load
  let recovered = tally()
  for (let attempt = 0; attempt < 50 && recovered.ok < 20; attempt++) {
    recovered = await afterwards()
    if (recovered.ok < 20) await sleep(100)
  }
  t.equal(recovered.ok, 20, 'after the restart, units succeed')
  t.equal(restart.wrong + recovered.wrong, 0, 'no wrong-tenant answers across the restart')
  t.equal(restart.late, 0, `every unit settled within ${TIMEOUT + 1000} ms across the restart (worst ${Math.round(restart.worst)} ms)`)
  t.ok(restart.failed > 0 && [...restart.codes.keys()].every((c) => c === 'SERVICE_UNAVAILABLE'), `restart failures: ${JSON.stringify([...restart.codes])}`)
})

// postgres.js 3.4.9 keeps retrying a connection whose first statement was queued while the server
// was down, even after end() and a cancel, for as long as the server is unreachable: after this
// test stops its server for good, such a retry timer would keep the process alive. Once tap has
// reported, exit with its status. (README: "Known upstream problems".)
t.teardown(() => { setTimeout(() => process.exit(), 1000).unref() })
