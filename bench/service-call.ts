// service-call: one service calling another for a tenant. Calls per second through an undici
// Agent composed with the library's tenantPropagation (X-Tenant-ID and a cached exchanged token,
// looked up per call) ÷ the same calls through a plain Agent with a static token and header, to
// the same loopback server, same concurrency. Interleaved rounds, medians. The token exchange is
// the testkit's stand-in for the registry's POST /v1/token: after the first call every token is
// a cache hit (the exchange count is printed).
import { createServer } from 'node:http'
import { Agent, request, type Dispatcher } from 'undici'
import { runAsTenant } from '../packages/multitenant/src/context.ts'
import { tenantPropagation } from '../packages/multitenant/src/propagation.ts'
import { startTokenIssuer } from '../packages/testkit/src/token-issuer.ts'
import { fmt, median, progress } from './lib/harness.ts'

const ROUNDS = Number(process.env.BENCH_PAIRS ?? 7)
const CALLS = 20_000
const CONCURRENCY = 32
const SECRET = 'bench-service-call-secret-0123456789'

const target = createServer((req, res) => {
  if (req.headers.authorization === undefined || req.headers['x-tenant-id'] === undefined) res.statusCode = 401
  res.end('{"ok":true}')
})
await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve))
const origin = `http://127.0.0.1:${(target.address() as { port: number }).port}`
const issuer = await startTokenIssuer({ secret: SECRET, services: { bench: { name: 'bench', scopes: ['messages:send'], audiences: ['comm'] } } })

const exchanged = new Agent().compose(tenantPropagation({ origins: [{ origin, audience: 'comm' }], exchange: { registry: issuer.url, credential: 'bench' } }))
const plain = new Agent()
const staticToken = await runAsTenant('acme', async () => {
  const res = await request(`${origin}/warm`, { dispatcher: exchanged })
  await res.body.dump()
  return issuer.issued[0]?.token as string
})

async function run (dispatcher: Dispatcher, headers: Record<string, string>): Promise<number> {
  let next = 0
  const started = performance.now()
  await runAsTenant('acme', async () => {
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < CALLS) {
        const res = await request(`${origin}/v1/messages`, { dispatcher, headers })
        if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`)
        await res.body.dump()
      }
    }))
  })
  return CALLS / ((performance.now() - started) / 1000)
}

const cached: number[] = []
const fixed: number[] = []
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 === 0 ? ['cached', 'static'] : ['static', 'cached']
  for (const which of order) {
    if (which === 'cached') cached.push(await run(exchanged, {}))
    else fixed.push(await run(plain, { authorization: `Bearer ${staticToken}`, 'x-tenant-id': 'acme' }))
  }
  progress(`round ${r + 1}/${ROUNDS}: exchanged ${Math.round(cached.at(-1) as number)}/s, static ${Math.round(fixed.at(-1) as number)}/s`)
}
console.log(`service-call ratio=${fmt(median(cached) / median(fixed), 3)} (exchanged_rps=${Math.round(median(cached))} static_rps=${Math.round(median(fixed))} exchanges=${issuer.issued.length} calls=${CALLS} concurrency=${CONCURRENCY} rounds=${ROUNDS})`)
await Promise.all([exchanged.close(), plain.close(), issuer.close()])
target.close()
