import Fastify from 'fastify'
import { currentTenantId, defineTenantConfig, type Tenant } from '@platform/multitenant'
import { multitenantPlugin } from '@platform/multitenant/fastify'

const tenants = new Map<string, Tenant>([['acme', {
  id: 'acme',
  name: 'Acme',
  status: 'active',
  tier: 'standard',
  schema: 'tenant_acme',
  database: 'default',
  domains: [],
  config: { comm: { emailFrom: 'no-reply@acme.example.com' } },
  limits: {},
  metadata: {},
  createdAt: '',
  updatedAt: '',
  version: 1
}]])
const comm = defineTenantConfig({ service: 'comm', defaults: { emailFrom: 'no-reply@platform.example' } })

const app = Fastify()
await app.register(multitenantPlugin, { provider: { getTenant: (id) => tenants.get(id) ?? null } })
app.get('/whoami', async () => ({ tenant: currentTenantId(), from: comm.get().emailFrom }))

const res = await app.inject({ url: '/whoami', headers: { 'x-tenant-id': 'acme' } })
console.log(res.json()) // { tenant: 'acme', from: 'no-reply@acme.example.com' }
await app.close()
