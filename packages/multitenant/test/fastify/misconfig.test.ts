// Misconfiguration fails at start (ready()), with a message naming the setting — not as an
// outage on the first request. (A missing optional peer is tested where it can be missing: in
// test/package.test.ts, installed outside the workspace.)
import { createServer } from 'node:net'
import Fastify from 'fastify'
import t from 'tap'
import { multitenantPlugin, type MultitenantPluginOptions } from '../../src/fastify/plugin.ts'
import { startTestRegistry } from '../fixtures/registry.ts'

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function start (options: MultitenantPluginOptions): Promise<unknown> {
  const app = Fastify()
  app.register(multitenantPlugin, options)
  try {
    await app.ready()
  } catch (err) {
    // Not closed on purpose: what the plugin opened before the failure (the registry client's
    // feed, the pools) must already be closed, or this file never exits.
    return err
  }
  await app.close()
  return undefined
}

t.test('each wrong setting fails ready() and names itself', async (t) => {
  const r = await startTestRegistry(t)
  const registry = { url: r.url, token: r.serviceToken }
  const free = await freePort()
  const cases: Array<[string, MultitenantPluginOptions, Record<string, unknown>]> = [
    ['a bad service token', { registry: { ...registry, token: 'not-a-token' } }, { code: 'MT_REGISTRY_REFUSED', message: /401.*SERVICE_TOKEN/ }],
    ['a token without tenants:read', { registry: { ...registry, token: r.sign({ sub: 's', scope: 'messages:send' }) } }, { code: 'MT_REGISTRY_REFUSED', message: /403.*tenants:read.*SERVICE_TOKEN/ }],
    ['nothing listening at the registry URL', { registry: { ...registry, url: `http://127.0.0.1:${free}`, retries: 0 } }, { code: 'MT_REGISTRY_UNREACHABLE', message: /REGISTRY_URL.*ECONNREFUSED/ }],
    ['a registry URL that is not a URL', { registry: { ...registry, url: 'tenant-registry:4000' } }, { code: 'MT_INVALID_OPTION', message: /REGISTRY_URL/ }],
    ['a URL that is not a registry', { registry: { ...registry, url: `${r.url}/nothing-here/` } }, { code: 'MT_REGISTRY_RESPONSE', message: /404.*nothing-here \(REGISTRY_URL\) a tenant registry/ }],
    ['no registry and no provider', {}, { code: 'MT_INVALID_OPTION', message: /registry \(REGISTRY_URL and SERVICE_TOKEN\) or provider/ }],
    ['a database nobody can log in to', { registry, db: { url: r.serviceDatabaseUrl.replace(/:[^:@/]+@/, ':wrong-password@') } }, { code: 'MT_INVALID_OPTION', message: /db \(DATABASE_URL\) cannot be used: 28P01/ }],
    ['a database that is not there', { registry, db: { url: `postgres://u:p@127.0.0.1:${free}/x` } }, { code: 'MT_INVALID_OPTION', message: /db \(DATABASE_URL\) cannot be used: ECONNREFUSED/ }],
    ['migrations without db', { registry, migrations: { dir: '.' } }, { code: 'MT_INVALID_OPTION', message: /migrations needs db/ }],
    ['a migrations folder that is not there', { registry, db: { url: r.serviceDatabaseUrl }, migrations: { dir: '/nonexistent/migrations' } }, { code: 'MT_INVALID_OPTION', message: /migrations.dir \/nonexistent\/migrations cannot be read: ENOENT/ }],
    ['an empty migrations folder name', { registry, db: { url: r.serviceDatabaseUrl }, migrations: { dir: '' } }, { code: 'MT_INVALID_OPTION', message: /migrations.dir must name a folder/ }],
    ['auth without a key', { registry, auth: { issuer: 'i', audience: 'a' } }, { code: 'MT_INVALID_OPTION', message: /auth needs exactly one of secret \(JWT_SECRET\), publicKey \(JWT_PUBLIC_KEY\), jwks or jwksUrl/ }],
    ['a short secret', { registry, auth: { secret: 'short', issuer: 'i', audience: 'a' } }, { code: 'MT_INVALID_OPTION', message: /JWT_SECRET/ }],
    ['a public key that is not PEM', { registry, auth: { publicKey: 'abc', issuer: 'i', audience: 'a' } }, { code: 'MT_INVALID_OPTION', message: /JWT_PUBLIC_KEY/ }],
    ['a JWKS URL that is not a URL', { registry, auth: { jwksUrl: 'idp/certs', issuer: 'i', audience: 'a' } }, { code: 'MT_INVALID_OPTION', message: /auth.jwksUrl/ }]
  ]
  for (const [name, options, expected] of cases) {
    const started = performance.now()
    const err = await start(options)
    t.match(err, expected, name)
    t.ok(performance.now() - started < 5000, `${name}: fails fast`)
  }
})

t.test('the decorations of parts that were not configured say which option is missing', async (t) => {
  const app = Fastify()
  await app.register(multitenantPlugin, { provider: { getTenant: () => null } })
  t.teardown(() => app.close())
  t.throws(() => app.tenantDb, { code: 'MT_INVALID_OPTION', message: /fastify.tenantDb needs the multitenant plugin's db option/ })
  t.throws(() => app.tenantRegistry, { message: /registry option/ })
  t.throws(() => app.tenantMigrator, { message: /migrations option/ })
})

t.test('withTenant on a route whose tenant is optional: TENANT_REQUIRED, never a null', async (t) => {
  const { withTenant, platformErrorHandler } = await import('../../src/fastify/plugin.ts')
  const app = Fastify()
  app.setErrorHandler(platformErrorHandler())
  await app.register(multitenantPlugin, { provider: { getTenant: () => null } })
  app.get('/maybe', { config: { tenant: 'optional' } }, withTenant(async (request) => ({ id: request.tenant.id })))
  t.teardown(() => app.close())
  t.match((await app.inject({ url: '/maybe' })).json(), { statusCode: 400, code: 'TENANT_REQUIRED', message: /send X-Tenant-ID/ })
})
