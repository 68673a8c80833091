// The library's per-tenant request limit on the comm-service's template and message routes (issue
// 17): one tenant limited, another not, other routes untouched; on by default in the service's
// configuration; and the render pool's knobs and worker path.
import t from 'tap'
import { loadConfig, rateLimitFromEnv, renderFromEnv } from '../src/config.ts'
import { siblingModule } from '../src/templates/pool.ts'
import { SECRET, startPlatform, tid } from './fixtures.ts'
import { startComm } from './helpers.ts'

t.test('the per-tenant request limit on template and message routes: one tenant limited, another not', async (t) => {
  const p = await startPlatform(t)
  const a = tid('la')
  const b = tid('lb')
  await p.createTenant(a)
  await p.createTenant(b)
  // The service's default configuration turns the limit on; here with five requests a minute.
  const limits = rateLimitFromEnv({ COMM_RATE_LIMIT_FREE: '5', COMM_RATE_LIMIT_STANDARD: '5', COMM_RATE_LIMIT_PREMIUM: '5' })
  const { call, app } = await startComm(t, p, { multitenant: { registry: { url: p.registryUrl, token: p.serviceToken, ttl: 200 }, db: { url: p.serviceDatabaseUrl, max: 8 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' }, ...limits } })
  t.ok(app.hasDecorator('rateLimit'), 'the rate limit plugin is installed')
  for (let i = 0; i < 3; i++) t.equal((await call('GET', '/v1/templates', a)).status, 200)
  t.equal((await call('GET', '/v1/messages', a)).status, 200)
  t.equal((await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'hi' })).status, 202, 'the fifth request in the minute')
  const refused = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'hi' })
  t.match(refused, { status: 429, body: { code: 'RATE_LIMITED' } }, 'the sixth is refused')
  t.ok(Number(refused.headers['retry-after']) > 0, 'with Retry-After')
  t.match(await call('POST', '/v1/templates/x/preview', a, {}), { status: 429, body: { code: 'RATE_LIMITED' } }, 'templates share the limit')
  t.equal((await call('GET', '/v1/config', a)).status, 200, 'routes other than templates and messages are not limited')
  t.equal((await call('GET', '/health', a)).status, 200)
  for (let i = 0; i < 4; i++) t.equal((await call('GET', '/v1/messages', b)).status, 200, `tenant B is unaffected (${i + 1})`)
  t.equal((await call('GET', '/v1/templates', b)).status, 200)
})

t.test('configuration: the limit is on by default, the pool\'s knobs are checked, the worker resolves from src and dist', async (t) => {
  const env = { REGISTRY_URL: 'http://tenant-registry:4000', SERVICE_TOKEN: 'token', DATABASE_URL: 'postgres://comm:pw@db:5432/platform', JWT_SECRET: 'a-secret-that-is-long-enough-0123456789' }
  t.match(loadConfig(env), { multitenant: { rateLimit: { timeWindow: '1 minute', tiers: { free: 300, standard: 3000, premium: 30000 } } }, render: { timeoutMs: 1000, perTenant: 2 } })
  t.same(loadConfig({ ...env, COMM_RATE_LIMIT: 'off' }).multitenant.rateLimit, false)
  t.match(loadConfig({ ...env, COMM_RATE_LIMIT_FREE: '60', COMM_RENDER_THREADS: '3', COMM_RENDER_TIMEOUT_MS: '500', COMM_RENDER_PER_TENANT: '1' }),
    { multitenant: { rateLimit: { tiers: { free: 60 } } }, render: { threads: 3, timeoutMs: 500, perTenant: 1 } })
  t.same(renderFromEnv({}), { timeoutMs: 1000, perTenant: 2 })
  for (const [variable, value] of [['COMM_RATE_LIMIT', 'maybe'], ['COMM_RATE_LIMIT_STANDARD', '0'], ['COMM_RENDER_THREADS', '65'], ['COMM_RENDER_TIMEOUT_MS', 'soon'], ['COMM_RENDER_PER_TENANT', '0']] as const) {
    t.throws(() => loadConfig({ ...env, [variable]: value }), { code: 'MT_INVALID_ENV', variable }, variable)
  }
  t.equal(siblingModule('render-worker', 'file:///app/src/templates/pool.ts').href, 'file:///app/src/templates/render-worker.ts', 'from the sources')
  t.equal(siblingModule('render-worker', 'file:///app/dist/templates/pool.js').href, 'file:///app/dist/templates/render-worker.js', 'from dist')
  t.equal(siblingModule('render-worker', 'file:///app/x/pool').href, 'file:///app/x/render-worker.js', 'JavaScript when the extension says nothing')
})
