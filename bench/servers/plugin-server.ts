// A minimal Fastify app, bare or behind the multitenant plugin (header strategy, in-memory provider).
import Fastify from 'fastify'
import { multitenantPlugin } from '@platform/multitenant/fastify'
import type { Tenant } from '@platform/multitenant'

const mode = process.argv[2]
const app = Fastify({ logger: false })
if (mode === 'tenant') {
  const tenants = new Map<string, Tenant>()
  for (let i = 0; i < 100; i++) {
    const id = `tenant-${i}`
    tenants.set(id, {
      id,
      name: id,
      status: 'active',
      tier: 'standard',
      schema: `tenant_tenant_${i}`,
      database: 'default',
      domains: [],
      config: {},
      limits: {},
      metadata: {},
      createdAt: '',
      updatedAt: '',
      version: 1
    })
  }
  await app.register(multitenantPlugin, { provider: { getTenant: (id) => tenants.get(id) ?? null }, strategies: ['header'] })
}
app.get('/ping', { schema: { response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } } }, async () => ({ ok: true }))
await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`LISTENING http://127.0.0.1:${(app.server.address() as { port: number }).port}/ping\n`)
process.on('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
