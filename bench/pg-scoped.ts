// pg-scoped: a tenant-scoped one-statement unit of work (TenantDb.scoped: BEGIN, set_config for
// search_path/role/statement_timeout, the statement, COMMIT, pipelined) vs the same statement
// unscoped on the same pool, through a proxy adding DELAY_MS each way (a network link).
//   latency at concurrency 1, throughput at concurrency 64; interleaved pairs, median ratios.
// pg-scoped-local: the same without the proxy (CPU-bound on this machine).
// The client runs on core 0, the proxy on core 1; PostgreSQL is not pinned.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import postgres, { type Sql } from 'postgres'
import { runAsTenant } from '../packages/multitenant/src/context.ts'
import { migrateTenant } from '../packages/multitenant/src/migrations.ts'
import { TenantDb, tenantRoleStatements } from '../packages/multitenant/src/pg/index.ts'
import { platformDatabase } from './lib/platform.ts'
import { fmt, median, percentile, progress, startServer } from './lib/harness.ts'

const PAIRS = Number(process.env.BENCH_PAIRS ?? 5)
const LAT_OPS = Number(process.env.BENCH_LAT_OPS ?? 400)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const DELAY_MS = Number(process.env.BENCH_DELAY_MS ?? 1.4)
const POOL = Number(process.env.BENCH_POOL ?? 8)
spawnSync('taskset', ['-cp', '0', String(process.pid)], { stdio: 'ignore' })

// The scoped side runs as a service login (NOSUPERUSER, tenant roles through the group); the
// plain side reads the same table fully qualified as the superuser (a login that needs no role).
const { db, registryUrl, serviceUrl } = await platformDatabase()
const admin = postgres(db.url, { max: 1, connection: { client_min_messages: 'warning' } })
const registry = postgres(registryUrl, { max: 1, connection: { client_min_messages: 'warning' } })
const TENANT = 'bench-scoped'
await admin.unsafe('drop schema if exists tenant_bench_scoped cascade; drop role if exists tenant_bench_scoped')
await registry.begin(async (tx) => {
  for (const statement of tenantRoleStatements(TENANT)) await tx.unsafe(statement)
})
await registry.end()
// The table is the service's migration (as the owner role; the tenant role gets DML).
const migrator = postgres(serviceUrl, { max: 1, connection: { client_min_messages: 'warning' } })
await migrateTenant(migrator, TENANT, [{ name: '0001_items.sql', checksum: 'bench', sql: 'create table items (id int primary key, body text not null); insert into items select g, \'item \' || g from generate_series(1, 1000) g' }])
await migrator.end()

type Op = (k: number) => Promise<unknown>

async function latency (op: Op): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < LAT_OPS; i++) {
    const started = performance.now()
    await op(1 + (i % 1000))
    times.push(performance.now() - started)
  }
  return percentile(times, 50)
}

async function throughput (op: Op): Promise<number> {
  let done = 0
  const deadline = performance.now() + SECONDS * 1000
  await Promise.all(Array.from({ length: 64 }, async (_, w) => {
    for (let k = w; performance.now() < deadline; k++) {
      await op(1 + (k % 1000))
      done++
    }
  }))
  return done / SECONDS
}

async function measure (name: string, url: string): Promise<void> {
  const login = (user: string): string => { const u = new URL(url); const from = new URL(user); u.username = from.username; u.password = from.password; return u.toString() }
  const tdb = new TenantDb({ url: login(serviceUrl), max: POOL })
  const pool: Sql = postgres(login(db.url), { max: POOL })
  const plain: Op = async (k) => await pool.unsafe('select id, body from tenant_bench_scoped.items where id = $1', [k], { prepare: true })
  const scoped: Op = async (k) => await runAsTenant(TENANT, async () => await tdb.query('select id, body from items where id = $1', [k]))
  // Warm up both (connections, prepared statements, JIT).
  for (const op of [plain, scoped]) { await latency(op); await throughput(op) }
  const lat: number[] = []
  const rps: number[] = []
  const base = { lat: [] as number[], rps: [] as number[] }
  const cand = { lat: [] as number[], rps: [] as number[] }
  for (let i = 0; i < PAIRS; i++) {
    const order: Array<[Op, typeof base]> = i % 2 === 0 ? [[plain, base], [scoped, cand]] : [[scoped, cand], [plain, base]]
    for (const [op, into] of order) into.lat.push(await latency(op))
    for (const [op, into] of order) into.rps.push(await throughput(op))
    lat.push((cand.lat.at(-1) as number) / (base.lat.at(-1) as number))
    rps.push((cand.rps.at(-1) as number) / (base.rps.at(-1) as number))
    progress(`${name} pair ${i + 1}/${PAIRS}: p50 ${fmt(base.lat.at(-1) as number)} → ${fmt(cand.lat.at(-1) as number)} ms, ${Math.round(base.rps.at(-1) as number)} → ${Math.round(cand.rps.at(-1) as number)} ops/s`)
  }
  const detail = `plain_p50_ms=${fmt(median(base.lat))} scoped_p50_ms=${fmt(median(cand.lat))} plain_ops=${Math.round(median(base.rps))} scoped_ops=${Math.round(median(cand.rps))} pool=${POOL} pairs=${PAIRS}`
  if (name === 'pg-scoped') console.log(`pg-scoped latency_ratio=${fmt(median(lat))} rps_ratio=${fmt(median(rps))} (${detail} delay_ms=${DELAY_MS} each way node=${process.versions.node})`)
  else console.log(`pg-scoped-local rps_ratio=${fmt(median(rps))} latency_ratio=${fmt(median(lat))} (${detail})`)
  await tdb.close()
  await pool.end()
}

const proxy = await startServer(fileURLToPath(new URL('./lib/delay-proxy.ts', import.meta.url)), [String(new URL(db.url).port), String(DELAY_MS)], 1)
try {
  const proxied = new URL(db.url)
  proxied.port = proxy.url
  await measure('pg-scoped', proxied.toString())
  await measure('pg-scoped-local', db.url)
} finally {
  await proxy.stop()
  await admin.unsafe('drop schema if exists tenant_bench_scoped cascade; drop role if exists tenant_bench_scoped')
  await admin.end()
  await db.drop()
}
