import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import { multitenantOptionsFromEnv, multitenantPlugin, platformErrorHandler, withTenant } from '@platform/multitenant/fastify'

const app = Fastify({ logger: true })
app.setErrorHandler(platformErrorHandler()) // the platform's error shape: { statusCode, code, error, message }

// One plugin owns the parts: the registry client (REGISTRY_URL, SERVICE_TOKEN), the tenant
// database (DATABASE_URL, a service login), token checks (JWKS_URL), and the migrations of
// every tenant's schema (at start, when a tenant is created, and on first use).
await app.register(multitenantPlugin, {
  ...multitenantOptionsFromEnv(),
  migrations: { dir: fileURLToPath(new URL('./migrations', import.meta.url)) }
})

// Each statement runs in the request's tenant schema, as the tenant's role.
app.get('/todos', { config: { auth: { scope: 'todos:read' } } }, withTenant(async (request) => ({
  tenant: request.tenant.id,
  todos: await app.tenantDb.query('select id, title, done from todos order by id')
})))

app.post<{ Body: { title: string } }>('/todos', {
  config: { auth: { scope: 'todos:write' } },
  schema: { body: { type: 'object', required: ['title'], properties: { title: { type: 'string', minLength: 1, maxLength: 200 } } } }
}, withTenant(async (request, reply) => {
  const [todo] = await app.tenantDb.query('insert into todos (title) values ($1) returning id, title, done', [request.body.title])
  return await reply.code(201).send(todo)
}))

await app.listen({ port: Number(process.env.PORT ?? 3000) })
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => { app.close().catch(console.error) }) // drain, close the pools
