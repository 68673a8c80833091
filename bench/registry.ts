// registry: the tenant registry's read paths under load and its provisioning latency.
//   registry-get      GET /v1/tenants/:id (JWT check + one prepared query), keep-alive, loopback
//   registry-resolve  GET /v1/resolve?host= (custom domain, then the tenant)
//   tenant-create     200 POST /v1/tenants, one after another (row + role + schema + change, one tx)
// Each is measured next to its baseline in the same run: /health on the same server for the reads
// (interleaved pairs, median of per-pair ratios), and the bare DDL (create role, grant, create
// schema, in one transaction) for creates. Server on core 0, load generator on core 1.
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { createTestDatabase } from '@platform/testkit'
import postgres from 'postgres'
import { request } from 'undici'
import { tokenIssuer } from '../packages/tenant-registry/src/tokens.ts'
import { LOAD_GENERATOR, fmt, load, median, percentile, progress, startServer } from './lib/harness.ts'

const PAIRS = Number(process.env.BENCH_PAIRS ?? 5)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const CREATES = Number(process.env.BENCH_CREATES ?? 200)
const SECRET = randomBytes(32).toString('hex')
const run = randomBytes(2).toString('hex') // roles are cluster-wide: ids unique to this run

const db = await createTestDatabase()
const server = await startServer(fileURLToPath(new URL('./servers/registry-server.ts', import.meta.url)), [], 0, { DATABASE_URL: db.url, JWT_SECRET: SECRET })
const sql = postgres(db.url, { max: 1, connection: { client_min_messages: 'warning' } })
const issue = tokenIssuer({ secret: SECRET })
const admin = { authorization: `Bearer ${issue({ sub: 'bench', roles: ['platform-admin'], scope: 'tenants:read tenants:write' }, 3600)}` }
const service = { authorization: `Bearer ${issue({ sub: 'bench', scope: 'tenants:read' }, 3600)}` }
const created: string[] = []

async function create (id: string, domains: string[] = []): Promise<number> {
  const started = performance.now()
  const res = await request(`${server.url}/v1/tenants`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ id, name: id, domains }) })
  await res.body.dump()
  if (res.statusCode !== 201) throw new Error(`create ${id}: ${res.statusCode}`)
  created.push(id)
  return performance.now() - started
}

async function readPairs (name: string, url: string): Promise<void> {
  const health = `${server.url}/health`
  await load(health, { seconds: 1 })
  await load(url, { seconds: 1, headers: service })
  const ratios: number[] = []
  const rps: number[] = []
  const base: number[] = []
  for (let i = 0; i < PAIRS; i++) {
    const order = i % 2 === 0 ? ['c', 'b'] : ['b', 'c']
    const r: Record<string, Awaited<ReturnType<typeof load>>> = {}
    for (const which of order) r[which] = which === 'c' ? await load(url, { seconds: SECONDS, headers: service }) : await load(health, { seconds: SECONDS })
    const c = r.c as Awaited<ReturnType<typeof load>>
    const b = r.b as Awaited<ReturnType<typeof load>>
    if (c.non2xx + c.errors > 0) throw new Error(`${name}: ${c.non2xx} non-2xx answers, ${c.errors} errors`)
    ratios.push(c.rps / b.rps)
    rps.push(c.rps)
    base.push(b.rps)
    progress(`${name} pair ${i + 1}/${PAIRS}: ${Math.round(c.rps)} rps (health ${Math.round(b.rps)})`)
  }
  console.log(`${name} rps=${Math.round(median(rps))} (health_rps=${Math.round(median(base))} ratio_to_health=${fmt(median(ratios))} pairs=${PAIRS} load=${LOAD_GENERATOR})`)
}

try {
  // Creates first: the tenants they make are the data the reads run against.
  progress(`${CREATES} creates through the API, and as many bare DDL transactions`)
  const api: number[] = []
  const ddl: number[] = []
  for (let i = 0; i < CREATES; i++) {
    api.push(await create(`b${run}-${i}`, i % 2 === 0 ? [`t${i}.b${run}.example`] : []))
    const role = `bench_ddl_${run}_${i}`
    const started = performance.now()
    await sql.begin(async (tx) => {
      await tx.unsafe(`create role "${role}" nologin`)
      await tx.unsafe(`grant "${role}" to current_user`)
      await tx.unsafe(`create schema "${role}"`)
      await tx.unsafe(`grant usage on schema "${role}" to "${role}"`)
    })
    ddl.push(performance.now() - started)
  }
  console.log(`tenant-create p50_ms=${fmt(percentile(api, 50))} p99_ms=${fmt(percentile(api, 99))} (bare_ddl_p50_ms=${fmt(percentile(ddl, 50))} bare_ddl_p99_ms=${fmt(percentile(ddl, 99))} creates=${CREATES})`)

  await readPairs('registry-get', `${server.url}/v1/tenants/b${run}-7`)
  await readPairs('registry-resolve', `${server.url}/v1/resolve?host=t10.b${run}.example`)
} finally {
  await server.stop()
  // Leave nothing cluster-wide behind (roles outlive the database).
  for (let i = 0; i < CREATES; i++) {
    const role = `bench_ddl_${run}_${i}`
    await sql.unsafe(`drop schema if exists "${role}" cascade`).catch(() => {})
    await sql.unsafe(`drop role if exists "${role}"`).catch(() => {})
  }
  for (const id of created) {
    const schema = `tenant_${id.replaceAll('-', '_')}`
    await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    await sql.unsafe(`drop owned by "${schema}"`).catch(() => {})
    await sql.unsafe(`drop role if exists "${schema}"`)
  }
  await sql.end()
  await db.drop()
}
