// comm-admin-stats: GET /v1/admin/stats with 1,000 tenants: 24 hours of counts for each (six
// statuses, 144,000 hourly rows) and 20 jobs waiting per tenant (20,000). Goal: under one second.
// Timed over loopback, median and p95 of 30 calls, with GET /health in the same run as the floor.
import { pino } from 'pino'
import postgres from 'postgres'
import { request } from 'undici'
import { buildApp } from '../packages/comm-service/src/app.ts'
import { commPlatform, SECRET } from './lib/comm.ts'
import { median, percentile, progress } from './lib/harness.ts'

const TENANTS = Number(process.env.BENCH_TENANTS ?? 1000)
const JOBS_PER_TENANT = 20
const CALLS = 30

const platform = await commPlatform(1)
const multitenant = { registry: { url: platform.registryUrl, token: platform.serviceToken }, db: { url: platform.serviceUrl, max: 8 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' } }
const app = await buildApp({ multitenant, queueUrl: platform.serviceUrl, role: 'api', processMetrics: false }, { logger: pino({ level: 'silent' }) })
const service = postgres(platform.serviceUrl, { max: 2, onnotice: () => {} })
try {
  const ids = Array.from({ length: TENANTS }, (_, i) => `stats-${String(i).padStart(4, '0')}`)
  progress(`seeding ${TENANTS * 24 * 6} hourly rows and ${TENANTS * JOBS_PER_TENANT} jobs`)
  await service`
    insert into pgboss.comm_tenant_hourly (tenant, hour, status, n)
    select t, date_trunc('hour', now()) - make_interval(hours => h), s, (random() * 100)::int
    from unnest(${ids}::text[]) as t, generate_series(0, 23) as h, unnest(array['queued', 'sent', 'delivered', 'failed', 'bounced', 'canceled']) as s
    on conflict do nothing`
  for (let i = 0; i < ids.length; i += 50) {
    const jobs = ids.slice(i, i + 50).flatMap((tenant) => Array.from({ length: JOBS_PER_TENANT }, () => ({ data: { tenant, database: 'default', messageId: '00000000-0000-4000-8000-000000000000' }, group: { id: tenant } })))
    await app.commQueue.boss.insert(app.commQueue.name, jobs)
  }
  const token = platform.sign({ sub: 'bench', roles: ['platform-admin'], scope: 'tenants:read' })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const time = async (path: string): Promise<{ ms: number, body: string }> => {
    const started = performance.now()
    const res = await request(url + path, { headers: { authorization: `Bearer ${token}` } })
    const body = await res.body.text()
    if (res.statusCode !== 200) throw new Error(`${path}: ${res.statusCode} ${body}`)
    return { ms: performance.now() - started, body }
  }
  const first = JSON.parse((await time('/v1/admin/stats')).body) as { tenants: Array<{ queue: { depth: number } }> }
  const seen = first.tenants.filter((s) => s.queue.depth === JOBS_PER_TENANT).length
  if (seen < TENANTS) throw new Error(`the stats show ${seen} of ${TENANTS} tenants with their jobs`)
  const stats: number[] = []
  const health: number[] = []
  for (let i = 0; i < CALLS; i++) {
    stats.push((await time('/v1/admin/stats')).ms)
    health.push((await time('/health')).ms)
  }
  console.log(`comm-admin-stats tenants=${TENANTS} ms=${Math.round(median(stats))} (p95_ms=${Math.round(percentile(stats, 95))} health_ms=${median(health).toFixed(1)} hourly_rows=${TENANTS * 24 * 6} jobs=${TENANTS * JOBS_PER_TENANT} calls=${CALLS})`)
} finally {
  await service.end()
  await app.close()
  await platform.close()
}
