// comm-accept: POST /v1/messages (JWT, tenant from the header, validation, the message, its first
// event and its pg-boss job in one transaction), keep-alive, 64 connections spread over 20 tenants,
// against a route on the same server doing one tenant-scoped insert through TenantDb. Interleaved
// pairs, median of per-pair ratios. Server on core 0, load generator on core 1.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { commPlatform } from './lib/comm.ts'
import { fmt, median, progress, startServer } from './lib/harness.ts'

const PAIRS = Number(process.env.BENCH_PAIRS ?? 5)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4)
const CONNECTIONS = 64
const platform = await commPlatform(20)
const server = await startServer(fileURLToPath(new URL('./servers/comm-server.ts', import.meta.url)), [], 0, platform.env)
const origin = new URL(server.url).origin

interface Figures { rps: number, p50: number, p99: number, errors: number, non2xx: number }

async function post (path: string, body: unknown, seconds: number): Promise<Figures> {
  const requests = platform.tenants.map((tenant) => ({
    method: 'POST' as const,
    path,
    headers: { 'content-type': 'application/json', 'x-tenant-id': tenant, authorization: `Bearer ${platform.sign({ sub: 'bench', tenant, roles: ['member'], scope: 'messages:send' })}` },
    body: JSON.stringify(body)
  }))
  const script = fileURLToPath(new URL('./lib/post-load.ts', import.meta.url))
  const pinned = existsSync('/usr/bin/taskset') ? ['/usr/bin/taskset', ['-c', '1', process.execPath, script]] as const : [process.execPath, [script]] as const
  const child = spawn(pinned[0], [...pinned[1]], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BENCH_LOAD: JSON.stringify({ url: origin, connections: CONNECTIONS, seconds, requests }) } })
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`load generator exited with ${code}`)
  return JSON.parse(out) as Figures
}

const message = { channel: 'email', to: 'ann@example.com', subject: 'Your order', text: 'It shipped.' }
try {
  await post('/v1/messages', message, 1)
  await post('/bench/insert', {}, 1)
  const ratios: number[] = []
  const rps: number[] = []
  const p99: number[] = []
  const base: number[] = []
  for (let i = 0; i < PAIRS; i++) {
    const order = i % 2 === 0 ? ['c', 'b'] : ['b', 'c']
    const r: Record<string, Figures> = {}
    for (const which of order) r[which] = which === 'c' ? await post('/v1/messages', message, SECONDS) : await post('/bench/insert', {}, SECONDS)
    const c = r.c as Figures
    const b = r.b as Figures
    if (c.non2xx + c.errors + b.non2xx + b.errors > 0) throw new Error(`non-2xx or errors: ${JSON.stringify(r)}`)
    ratios.push(c.rps / b.rps)
    rps.push(c.rps)
    p99.push(c.p99)
    base.push(b.rps)
    progress(`pair ${i + 1}/${PAIRS}: ${Math.round(c.rps)} rps p99 ${c.p99} ms (scoped insert ${Math.round(b.rps)} rps)`)
  }
  console.log(`comm-accept rps=${Math.round(median(rps))} p99_ms=${fmt(median(p99), 1)} ratio=${fmt(median(ratios))} (scoped_insert_rps=${Math.round(median(base))} connections=${CONNECTIONS} tenants=20 pairs=${PAIRS})`)
} finally {
  await server.stop()
  await platform.close()
}
