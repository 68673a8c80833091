// The communication service (API only) for benchmarks, plus the baseline route: one tenant-scoped
// insert through TenantDb behind the same plugin, auth and tenant resolution. Prints `LISTENING <url>`.
import { randomUUID } from 'node:crypto'
import { withTenant } from '@platform/multitenant/fastify'
import { buildApp } from '../../packages/comm-service/src/app.ts'

const env = process.env
const app = await buildApp({
  multitenant: { registry: { url: env.REGISTRY_URL as string, token: env.SERVICE_TOKEN as string }, db: { url: env.DATABASE_URL as string, max: 16 }, auth: { secret: env.JWT_SECRET as string, issuer: 'tenant-registry', audience: 'platform' } },
  queueUrl: env.DATABASE_URL as string,
  role: 'api',
  processMetrics: false
})
app.post('/bench/insert', { config: { auth: { scope: 'messages:send' } } }, withTenant(async (_request, reply) => {
  const id = randomUUID()
  await app.tenantDb.transaction(async (tx) => { await tx.sql`insert into messages (id, channel, recipient, body) values (${id}, 'sms', '+15550100', 'baseline')` })
  return await reply.code(202).send({ id, status: 'queued' })
}))
const address = await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`LISTENING ${address}\n`)
process.on('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
