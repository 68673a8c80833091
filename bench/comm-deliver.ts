// comm-deliver: 20,000 messages queued across 20 tenants, drained by the communication service's
// worker with the log provider (claim → sending, provider, sent: two tenant transactions per
// message plus pg-boss's fetch and completion), against pg-boss draining 20,000 no-op jobs with
// the same concurrency in the same run. Alternating pairs, median of per-pair ratios.
import { pino } from 'pino'
import postgres from 'postgres'
import { buildApp } from '../packages/comm-service/src/app.ts'
import { LogProvider } from '../packages/comm-service/src/delivery/providers/log.ts'
import { MessageStore } from '../packages/comm-service/src/messages/store.ts'
import { DeliveryQueue } from '../packages/comm-service/src/queue/boss.ts'
import { commPlatform, SECRET } from './lib/comm.ts'
import { fmt, median, progress } from './lib/harness.ts'

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000)
const TENANTS = 20
const PAIRS = Number(process.env.BENCH_PAIRS ?? 3)
const CONCURRENCY = { local: Number(process.env.BENCH_CONCURRENCY ?? 32), perTenant: 4 }

const platform = await commPlatform(TENANTS)
const admin = postgres(platform.db.url, { max: 2, onnotice: () => {} })
const multitenant = { registry: { url: platform.registryUrl, token: platform.serviceToken }, db: { url: platform.serviceUrl, max: 16 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' } }
// An API-only instance migrates the tenants and queues the messages (through the domain code).
const api = await buildApp({ multitenant, queueUrl: platform.serviceUrl, role: 'api', processMetrics: false }, { logger: pino({ level: 'silent' }) })
const registry = api.tenantRegistry
const store = new MessageStore(api.tenantDb, () => api.commQueue)

async function fill (): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < MESSAGES) {
      const n = next++
      const tenant = await registry.getTenant(platform.tenants[n % TENANTS] as string)
      await store.accept(tenant!, { channel: 'sms', to: '+15550100', body: `message ${n}` })
    }
  }))
}

async function sentCount (): Promise<number> {
  const parts = platform.tenants.map((id) => `select count(*) as n from "tenant_${id.replaceAll('-', '_')}".messages where status = 'sent'`)
  const [row] = await admin.unsafe(`select sum(n)::int as n from (${parts.join(' union all ')}) s`)
  return row?.n as number
}

async function deliver (): Promise<number> {
  const before = await sentCount()
  const provider = new LogProvider({ keep: 1 })
  const started = performance.now()
  const app = await buildApp({
    multitenant,
    queueUrl: platform.serviceUrl,
    role: 'worker',
    concurrency: CONCURRENCY,
    processMetrics: false
  }, { provider, logger: pino({ level: 'silent' }) })
  while (await sentCount() - before < MESSAGES) await new Promise((resolve) => setTimeout(resolve, 100))
  const seconds = (performance.now() - started) / 1000
  await app.close()
  return MESSAGES / seconds
}

async function noop (): Promise<number> {
  const queue = new DeliveryQueue({ url: platform.serviceUrl, max: 8 })
  await queue.start()
  const name = `bench-noop-${Date.now()}`
  await queue.boss.createQueue(name, { notify: true })
  for (let i = 0; i < MESSAGES; i += 1000) {
    await queue.boss.insert(name, Array.from({ length: Math.min(1000, MESSAGES - i) }, (_, k) => ({ data: { n: i + k }, group: { id: platform.tenants[(i + k) % TENANTS] as string } })))
  }
  const counter = { done: 0 }
  const started = performance.now()
  // pg-boss at its best for this shape: batches of one tenant's cap, fetched again while full.
  await queue.boss.work(name, { localConcurrency: CONCURRENCY.local / CONCURRENCY.perTenant, batchSize: CONCURRENCY.perTenant, groupConcurrency: CONCURRENCY.perTenant, burstWhenBatchFull: true, burstWhenReadyExceeds: 1, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 2 }, async (jobs) => { counter.done += jobs.length })
  while (counter.done < MESSAGES) await new Promise((resolve) => setTimeout(resolve, 50))
  const seconds = (performance.now() - started) / 1000
  await queue.stop()
  return MESSAGES / seconds
}

try {
  const ratios: number[] = []
  const rates: number[] = []
  const bases: number[] = []
  for (let i = 0; i < PAIRS; i++) {
    progress(`pair ${i + 1}/${PAIRS}: queueing ${MESSAGES} messages`)
    await fill()
    const order = i % 2 === 0 ? ['c', 'b'] : ['b', 'c']
    const r: Record<string, number> = {}
    for (const which of order) r[which] = which === 'c' ? await deliver() : await noop()
    rates.push(r.c as number)
    bases.push(r.b as number)
    ratios.push((r.c as number) / (r.b as number))
    progress(`pair ${i + 1}/${PAIRS}: ${Math.round(r.c as number)} msgs/s (no-op jobs ${Math.round(r.b as number)}/s)`)
  }
  console.log(`comm-deliver msgs_per_s=${Math.round(median(rates))} ratio=${fmt(median(ratios))} (noop_jobs_per_s=${Math.round(median(bases))} messages=${MESSAGES} tenants=${TENANTS} concurrency=${CONCURRENCY.local}/${CONCURRENCY.perTenant} pairs=${PAIRS})`)
} finally {
  await api.close()
  await admin.end()
  await platform.close()
}
