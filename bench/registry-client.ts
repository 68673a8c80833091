// registry-client: cached tenant look-ups per second through RegistryClient.getTenant (the
// plugin's hot path: a synchronous LRU hit with a staleness check and counters), next to a plain
// Map.get over the same keys in the same run. The registry here is a stub HTTP server: only hits
// are measured. Median of interleaved rounds.
import { createServer } from 'node:http'
import { RegistryClient } from '../packages/multitenant/src/registry-client.ts'
import { fmt, median, progress } from './lib/harness.ts'

const ROUNDS = Number(process.env.BENCH_PAIRS ?? 7)
const OPS = 2_000_000
const ids = Array.from({ length: 100 }, (_, i) => `tenant-${i}`)
const record = (id: string): Record<string, unknown> => ({ id, name: id, status: 'active', tier: 'standard', schema: `tenant_${id.replace('-', '_')}`, database: 'default', domains: [], config: {}, limits: {}, metadata: {}, createdAt: '', updatedAt: '', version: 1 })
const server = createServer((req, res) => {
  const id = decodeURIComponent(req.url?.split('/').at(-1) ?? '')
  res.setHeader('content-type', 'application/json')
  res.setHeader('etag', `"${id}.1"`)
  res.end(JSON.stringify(record(id)))
})
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
const address = server.address() as { port: number }
const client = new RegistryClient({ url: `http://127.0.0.1:${address.port}`, token: 'bench', follow: false, ttl: 3_600_000 })
const map = new Map<string, unknown>()
for (const id of ids) {
  map.set(id, await client.getTenant(id))
}

function run (lookup: (id: string) => unknown): number {
  let found = 0
  const started = performance.now()
  for (let i = 0; i < OPS; i++) if (lookup(ids[i % 100] as string) !== null) found++
  const seconds = (performance.now() - started) / 1000
  if (found !== OPS) throw new Error('a look-up missed')
  return OPS / seconds
}

const hits: number[] = []
const base: number[] = []
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 === 0 ? ['client', 'map'] : ['map', 'client']
  for (const which of order) {
    if (which === 'client') hits.push(run((id) => client.getTenant(id)))
    else base.push(run((id) => map.get(id)))
  }
  progress(`round ${r + 1}/${ROUNDS}: client ${Math.round(hits.at(-1) as number)}/s, map ${Math.round(base.at(-1) as number)}/s`)
}
const stats = client.stats()
console.log(`registry-client hit_ops=${Math.round(median(hits))} (map_ops=${Math.round(median(base))} ratio_to_map=${fmt(median(hits) / median(base), 3)} upstream_calls=${stats.upstreamCalls} rounds=${ROUNDS})`)
await client.close()
server.close()
