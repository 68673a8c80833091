// plugin-overhead: a bare Fastify route vs the same route behind the multitenant plugin.
// Servers on core 0, load generator on core 1, interleaved pairs, median of per-pair ratios.
import { fileURLToPath } from 'node:url'
import { LOAD_GENERATOR, fmt, load, median, progress, startServer } from './lib/harness.ts'

const PAIRS = Number(process.env.BENCH_PAIRS ?? 7)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const script = fileURLToPath(new URL('./servers/plugin-server.ts', import.meta.url))

const bare = await startServer(script, ['bare'], 0)
const tenant = await startServer(script, ['tenant'], 0)
try {
  const headers = { 'x-tenant-id': 'tenant-7' }
  // Warm both up (JIT, connection pools) before measuring.
  for (let i = 0; i < 2; i++) {
    await load(bare.url, { seconds: 2, headers })
    await load(tenant.url, { seconds: 2, headers })
  }
  const rpsRatios: number[] = []
  const p99Ratios: number[] = []
  const bareRps: number[] = []
  const tenantRps: number[] = []
  for (let i = 0; i < PAIRS; i++) {
    // Alternate which side goes first, so drift on the machine hits both equally.
    const order = i % 2 === 0 ? [bare, tenant] : [tenant, bare]
    const results = new Map<typeof bare, Awaited<ReturnType<typeof load>>>()
    for (const server of order) results.set(server, await load(server.url, { seconds: SECONDS, headers }))
    const b = results.get(bare) as Awaited<ReturnType<typeof load>>
    const t = results.get(tenant) as Awaited<ReturnType<typeof load>>
    if (b.non2xx + t.non2xx + b.errors + t.errors > 0) throw new Error('non-2xx answers or errors during the benchmark')
    rpsRatios.push(t.rps / b.rps)
    p99Ratios.push(t.p99 / Math.max(b.p99, 1))
    bareRps.push(b.rps)
    tenantRps.push(t.rps)
    progress(`pair ${i + 1}/${PAIRS}: bare=${Math.round(b.rps)} tenant=${Math.round(t.rps)} ratio=${fmt(t.rps / b.rps)}`)
  }
  console.log(`plugin-overhead rps_ratio=${fmt(median(rpsRatios))} p99_ratio=${fmt(median(p99Ratios))} (bare=${Math.round(median(bareRps))} tenant=${Math.round(median(tenantRps))} pairs=${PAIRS} load=${LOAD_GENERATOR} node=${process.versions.node})`)
} finally {
  await bare.stop()
  await tenant.stop()
}
