import { Writable } from 'node:stream'
import fastifyJwt from '@fastify/jwt'
import Fastify, { type FastifyInstance, type InjectOptions } from 'fastify'
import pino from 'pino'
import t, { type Test } from 'tap'
import { currentTenantId } from '../../src/context.ts'
import { multitenantPlugin, type MultitenantPluginOptions } from '../../src/fastify/plugin.ts'
import { HOSTILE_IDS, headerSafe } from '../fixtures/hostile-ids.ts'
import { MemoryProvider, makeTenant } from '../fixtures/tenants.ts'

const tenants = [
  makeTenant('acme', { domains: [{ domain: 'mail.acme.io', primary: true }] }),
  makeTenant('globex'),
  makeTenant('trialco', { status: 'trial' }),
  makeTenant('held', { status: 'suspended' }),
  makeTenant('gone', { status: 'archived' }),
  makeTenant('newco', { status: 'provisioning' }),
  makeTenant('weird', { status: 'unknown' as 'active' })
]

async function build (t: Test, options: Partial<MultitenantPluginOptions> = {}, provider = new MemoryProvider(tenants)): Promise<{ app: FastifyInstance, provider: MemoryProvider }> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(multitenantPlugin, { provider, ...options })
  app.get('/things', async (request) => ({ tenant: currentTenantId() ?? null, record: request.tenant?.id ?? null }))
  app.get('/optional', { config: { tenant: 'optional' } }, async () => ({ tenant: currentTenantId() ?? null }))
  app.get('/open', { config: { tenant: false } }, async () => ({ tenant: currentTenantId() ?? null }))
  app.get('/health', async () => ({ ok: true, tenant: currentTenantId() ?? null }))
  app.get('/docs/json', async () => ({ docs: true }))
  app.get('/tenants/:tid/things', async () => ({ tenant: currentTenantId() }))
  app.get('/hooked', { onRequest: async (request) => { request.headers['x-seen'] = currentTenantId() ?? 'none' } }, async (request) => ({ seen: request.headers['x-seen'] }))
  return { app, provider }
}

t.test('resolves, looks up and scopes a request', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/things', headers: { 'x-tenant-id': 'acme' } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { tenant: 'acme', record: 'acme' })
  t.same((await app.inject({ url: '/things', headers: { 'x-tenant-id': 'trialco' } })).json(), { tenant: 'trialco', record: 'trialco' })
})

t.test('status gate and errors follow DESIGN.md', async (t) => {
  const { app } = await build(t)
  const cases: Array<[string | undefined, number, string]> = [
    [undefined, 400, 'TENANT_REQUIRED'],
    ['nobody', 404, 'TENANT_NOT_FOUND'],
    ['held', 403, 'TENANT_SUSPENDED'],
    ['gone', 404, 'TENANT_NOT_FOUND'],
    ['weird', 404, 'TENANT_NOT_FOUND'],
    ['newco', 503, 'TENANT_PROVISIONING'],
    ['Bad', 400, 'TENANT_INVALID']
  ]
  for (const [id, status, code] of cases) {
    const res = await app.inject({ url: '/things', headers: id === undefined ? {} : { 'x-tenant-id': id } })
    t.equal(res.statusCode, status, `${id} → ${status}`)
    t.match(res.json(), { statusCode: status, code, error: String, message: String })
    t.notMatch(res.body, /stack|at \w+ \(/)
  }
  const provisioning = await app.inject({ url: '/things', headers: { 'x-tenant-id': 'newco' } })
  t.equal(provisioning.headers['retry-after'], '5')
})

t.test('optional, excluded and unresolved routes', async (t) => {
  const { app, provider } = await build(t)
  t.same((await app.inject('/optional')).json(), { tenant: null })
  t.same((await app.inject({ url: '/optional', headers: { 'x-tenant-id': 'acme' } })).json(), { tenant: 'acme' })
  t.equal((await app.inject({ url: '/optional', headers: { 'x-tenant-id': 'nobody' } })).statusCode, 404, 'a named tenant must exist')
  const calls = provider.calls
  t.same((await app.inject({ url: '/open', headers: { 'x-tenant-id': 'Bad!' } })).json(), { tenant: null })
  t.same((await app.inject({ url: '/health', headers: { 'x-tenant-id': 'acme' } })).json(), { ok: true, tenant: null })
  t.same((await app.inject('/docs/json')).json(), { docs: true })
  t.equal(provider.calls, calls, 'excluded routes look nothing up')
  t.equal((await app.inject('/nothing-here')).statusCode, 404)
})

t.test('options are checked at registration', async (t) => {
  const bad = async (options: Partial<MultitenantPluginOptions>, provider: unknown = new MemoryProvider()) => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(multitenantPlugin, { provider, ...options } as MultitenantPluginOptions)
    await app.ready()
  }
  await t.rejects(bad({}, null), { code: 'MT_INVALID_OPTION' })
  await t.rejects(bad({}, {}), { code: 'MT_INVALID_OPTION' })
  await t.rejects(bad({ strategies: ['domain'] }, { getTenant: () => null }), { code: 'MT_INVALID_OPTION' })
  await t.rejects(bad({ tenant: 'sometimes' as 'optional' }), { code: 'MT_INVALID_OPTION' })
  await t.rejects(bad({ strategies: ['subdomain'] }), { code: 'MT_INVALID_OPTION' })
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(multitenantPlugin, { provider: new MemoryProvider() })
  t.throws(() => app.get('/x', { config: { tenant: 'yes' as 'optional' } }, async () => 1), { code: 'MT_INVALID_OPTION' })
})

t.test('a provider that fails gives TENANT_UNAVAILABLE and leaks nothing', async (t) => {
  for (const async of [false, true]) {
    const provider = new MemoryProvider(tenants, async)
    const { app } = await build(t, {}, provider)
    provider.fail = new Error('connect ECONNREFUSED 10.0.0.7:5432 password=hunter2')
    const res = await app.inject({ url: '/things', headers: { 'x-tenant-id': 'acme' } })
    t.equal(res.statusCode, 503)
    t.equal(res.json().code, 'TENANT_UNAVAILABLE')
    t.notMatch(res.body, /ECONNREFUSED|hunter2|10\.0\.0\.7/)
    provider.fail = Object.assign(new Error('registry down'), { code: 'TENANT_UNAVAILABLE', statusCode: 503 })
    const passthrough = await app.inject({ url: '/things', headers: { 'x-tenant-id': 'acme' } })
    t.equal(passthrough.json().code, 'TENANT_UNAVAILABLE')
    provider.fail = new Error('host lookup broke')
    const viaHost = await app.inject({ url: '/things', headers: { host: 'mail.acme.io' } })
    t.equal(viaHost.json().code, 'TENANT_UNAVAILABLE')
  }
})

t.test('async provider, subdomains and custom domains', async (t) => {
  const provider = new MemoryProvider(tenants, true)
  const { app } = await build(t, { baseDomain: 'example.com' }, provider)
  t.same((await app.inject({ url: '/things', headers: { host: 'globex.example.com' } })).json(), { tenant: 'globex', record: 'globex' })
  t.same((await app.inject({ url: '/things', headers: { host: 'MAIL.acme.io:443' } })).json(), { tenant: 'acme', record: 'acme' })
  t.equal((await app.inject({ url: '/things', headers: { host: 'unknown.io' } })).json().code, 'TENANT_REQUIRED')
  t.same((await app.inject({ url: '/optional', headers: { host: 'unknown.io' } })).json(), { tenant: null })
  t.equal((await app.inject({ url: '/things', headers: { host: 'acme.example.com', 'x-tenant-id': 'globex' } })).json().code, 'TENANT_MISMATCH')
})

t.test('tokens: a header never overrides the token tenant', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyJwt, { secret: 'test-secret-test-secret-test-secret' })
  app.addHook('onRequest', async (request) => {
    if (request.headers.authorization !== undefined) await request.jwtVerify()
  })
  await app.register(multitenantPlugin, { provider: new MemoryProvider(tenants) })
  app.get('/things', async () => ({ tenant: currentTenantId() }))
  app.get('/maybe', { config: { tenant: 'optional' } }, async () => ({ tenant: currentTenantId() ?? null }))
  const acmeToken = app.jwt.sign({ sub: 'u1', tenant: 'acme', roles: ['member'] })
  const platformToken = app.jwt.sign({ sub: 'svc', roles: ['platform-admin'] })
  const auth = (token: string) => ({ authorization: `Bearer ${token}` })
  t.same((await app.inject({ url: '/things', headers: auth(acmeToken) })).json(), { tenant: 'acme' })
  t.same((await app.inject({ url: '/things', headers: { ...auth(acmeToken), 'x-tenant-id': 'acme' } })).json(), { tenant: 'acme' })
  const mismatch = await app.inject({ url: '/things', headers: { ...auth(acmeToken), 'x-tenant-id': 'globex' } })
  t.equal(mismatch.statusCode, 403)
  t.equal(mismatch.json().code, 'TENANT_MISMATCH')
  t.equal((await app.inject({ url: '/things', headers: { ...auth(acmeToken), host: 'mail.acme.io' } })).json().tenant, 'acme')
  // A token without a tenant does not act as one (DESIGN, Tokens): not by header, host or path.
  for (const headers of [{ 'x-tenant-id': 'globex' }, { host: 'mail.acme.io' }]) {
    t.match((await app.inject({ url: '/things', headers: { ...auth(platformToken), ...headers } })).json(), { statusCode: 403, code: 'FORBIDDEN' }, `a platform token with ${Object.keys(headers)[0]}`)
  }
  t.match((await app.inject({ url: '/maybe', headers: { ...auth(platformToken), 'x-tenant-id': 'globex' } })).json(), { code: 'FORBIDDEN' }, 'on optional routes too')
  t.same((await app.inject({ url: '/things', headers: { ...auth(acmeToken), host: 'unknown.io' } })).json(), { tenant: 'acme' }, 'an unknown custom host leaves the token\'s tenant')
  t.same((await app.inject({ url: '/maybe', headers: auth(platformToken) })).json(), { tenant: null })
  t.same((await app.inject({ url: '/maybe', headers: { ...auth(platformToken), host: 'unknown.io' } })).json(), { tenant: null }, 'a host that is no tenant\'s names none')
  const custom = await build(t, { claims: (request) => ({ tenant: request.headers['x-claimed'], roles: (request.headers['x-roles'] as string | undefined)?.split(',') }) })
  custom.app.get('/admin-things', { config: { auth: { admin: true } } }, async () => ({ tenant: currentTenantId() }))
  t.equal((await custom.app.inject({ url: '/admin-things', headers: { 'x-tenant-id': 'acme' } })).json().code, 'FORBIDDEN', 'claims without roles')
  t.equal((await custom.app.inject({ url: '/admin-things', headers: { 'x-tenant-id': 'acme', 'x-roles': 'member' } })).json().code, 'FORBIDDEN', 'claims without the platform-admin role')
  t.same((await custom.app.inject({ url: '/admin-things', headers: { 'x-tenant-id': 'acme', 'x-roles': 'platform-admin' } })).json(), { tenant: 'acme' }, 'a platform admin on an admin route')
  t.equal((await custom.app.inject({ url: '/things', headers: { 'x-claimed': 'acme', 'x-tenant-id': 'globex' } })).json().code, 'TENANT_MISMATCH')
  t.equal((await custom.app.inject({ url: '/things', headers: { host: 'mail.acme.io', 'x-claimed': 'globex' } })).json().code, 'TENANT_MISMATCH')
  t.same((await custom.app.inject({ url: '/things', headers: { host: 'unknown.io', 'x-claimed': 'globex' } })).json(), { tenant: 'globex', record: 'globex' })
})

t.test('without getTenantByHost the domain strategy is left out', async (t) => {
  const store = new MemoryProvider(tenants)
  const { app } = await build(t, { baseDomain: 'example.com' }, { getTenant: (id: string) => store.getTenant(id) } as MemoryProvider)
  t.same((await app.inject({ url: '/things', headers: { host: 'acme.example.com' } })).json(), { tenant: 'acme', record: 'acme' })
  t.equal((await app.inject({ url: '/things', headers: { host: 'mail.acme.io' } })).json().code, 'TENANT_REQUIRED')
  const headerOnly = await build(t, {}, { getTenant: (id: string) => store.getTenant(id) } as MemoryProvider)
  t.same((await headerOnly.app.inject({ url: '/things', headers: { 'x-tenant-id': 'acme' } })).json(), { tenant: 'acme', record: 'acme' })
})

t.test('route-level onRequest hooks run after resolution', async (t) => {
  const { app } = await build(t)
  t.same((await app.inject({ url: '/hooked', headers: { 'x-tenant-id': 'globex' } })).json(), { seen: 'globex' })
})

t.test('path strategy alone reads only the path', async (t) => {
  const { app } = await build(t, { strategies: ['path'] })
  t.same((await app.inject({ url: '/tenants/globex/things', headers: { 'x-tenant-id': 'acme' } })).json(), { tenant: 'globex' })
})

t.test('dedicated mode serves one tenant and rejects others', async (t) => {
  const { app } = await build(t, { fixedTenant: 'acme' })
  t.same((await app.inject('/things')).json(), { tenant: 'acme', record: 'acme' })
  t.same((await app.inject({ url: '/things', headers: { 'x-tenant-id': 'acme' } })).json(), { tenant: 'acme', record: 'acme' })
  t.equal((await app.inject({ url: '/things', headers: { 'x-tenant-id': 'globex' } })).json().code, 'TENANT_MISMATCH')
  t.equal((await app.inject('/tenants/globex/things')).json().code, 'TENANT_MISMATCH')
})

t.test('the request logger carries the tenant', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb() } })
  const app = Fastify({ loggerInstance: pino({ level: 'info' }, stream) })
  t.teardown(() => app.close())
  await app.register(multitenantPlugin, { provider: new MemoryProvider(tenants) })
  app.get('/things', async (request) => {
    request.log.info('handled')
    return {}
  })
  await app.inject({ url: '/things', headers: { 'x-tenant-id': 'globex' } })
  t.match(lines.find((l) => l.msg === 'handled'), { tenant: 'globex', reqId: String })
})

t.test('per-tenant rate limits from limits and tier', async (t) => {
  const provider = new MemoryProvider([
    makeTenant('small', { limits: { requestsPerMinute: 3 } }),
    makeTenant('freebie', { tier: 'free' }),
    makeTenant('big')
  ])
  const { app } = await build(t, { rateLimit: { tiers: { free: 2 } } }, provider)
  const hit = (id: string) => app.inject({ url: '/things', headers: { 'x-tenant-id': id } })
  const small = [await hit('small'), await hit('small'), await hit('small'), await hit('small')]
  t.same(small.map((r) => r.statusCode), [200, 200, 200, 429])
  t.match(small[3]?.json(), { statusCode: 429, code: 'RATE_LIMITED' })
  t.ok(Number(small[3]?.headers['retry-after']) > 0)
  const free = [await hit('freebie'), await hit('freebie'), await hit('freebie')]
  t.same(free.map((r) => r.statusCode), [200, 200, 429], 'tier limit')
  t.equal((await hit('big')).statusCode, 200, 'one tenant does not spend another tenant\'s budget')
  t.equal((await app.inject('/health')).statusCode, 200)
  t.equal((await app.inject('/optional')).statusCode, 200, 'requests without a tenant are not limited per tenant')
  const on = await build(t, { rateLimit: true }, provider)
  t.equal((await on.app.inject({ url: '/things', headers: { 'x-tenant-id': 'big' } })).headers['x-ratelimit-limit'], '3000')
  const fallback = await build(t, { rateLimit: { max: 7 } }, new MemoryProvider([makeTenant('odd', { tier: 'platinum' as 'free' })]))
  t.equal((await fallback.app.inject({ url: '/things', headers: { 'x-tenant-id': 'odd' } })).headers['x-ratelimit-limit'], '7')
})

t.test('hostile ids are rejected before any look-up, from every source', async (t) => {
  const { app, provider } = await build(t, { baseDomain: 'example.com', strategies: ['header', 'query', 'path', 'subdomain', 'domain'] })
  let checked = 0
  for (const id of HOSTILE_IDS) {
    const label = JSON.stringify(id.slice(0, 30))
    const variants: Array<[string, InjectOptions, string]> = []
    if (headerSafe(id)) variants.push(['header', { url: '/things', headers: { 'x-tenant-id': id } }, 'TENANT_INVALID'])
    variants.push(['query', { url: '/things?tenant_id=' + encodeURIComponent(id) }, 'TENANT_INVALID'])
    const segment = encodeURIComponent(id)
    if (segment !== '.' && segment !== '..') variants.push(['path', { url: `/tenants/${segment}/things` }, 'TENANT_INVALID'])
    if (/^[\x21-\x7e]+$/.test(id) && !id.includes('/') && id.toLowerCase() !== id.toLowerCase().replace(/[^a-z0-9-]/g, '') + 'x') {
      const lower = id.toLowerCase()
      const reserved = ['www', 'api', 'admin', 'app', 'public', 'system', 'root', 'default', 'internal', 'static', 'assets', 'docs', 'health', 'metrics'].includes(lower)
      const folded = /^[a-z0-9](?:[a-z0-9-]{0,54}[a-z0-9])?$/.test(lower)
      if (reserved) variants.push(['host', { url: '/things', headers: { host: `${id}.example.com` } }, 'TENANT_REQUIRED'])
      else if (!folded) variants.push(['host', { url: '/things', headers: { host: `${id}.example.com` } }, 'TENANT_INVALID'])
    }
    for (const [source, request, code] of variants) {
      const res = await app.inject(request)
      if (source === 'path' && segment.length > 100) {
        // Fastify refuses route parameters over maxParamLength before any hook runs.
        t.equal(res.statusCode, 414, `${source} ${label} → 414`)
        continue
      }
      t.equal(res.statusCode, 400, `${source} ${label} → 400`)
      t.equal(res.json().code, code, `${source} ${label} → ${code}`)
      t.notMatch(res.json().message, /%[sd]/, 'the message is formatted')
      checked++
    }
  }
  t.ok(checked >= 200, `${checked} hostile requests`)
  t.equal(provider.calls + provider.hostCalls, 0, 'no look-up was made')
})
