import Fastify from 'fastify'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { multitenantPlugin } from '../src/fastify/plugin.ts'
import { RegistryClient, type RegistryClientOptions } from '../src/registry-client.ts'
import type { Tenant } from '../src/types.ts'
import { startTestRegistry, type TestRegistry } from './fixtures/registry.ts'
import { suffix } from './pg/fixtures.ts'

const tid = (name: string): string => `rc-${name}-${suffix}`
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

async function create (r: TestRegistry, id: string, extra: Record<string, unknown> = {}): Promise<void> {
  const res = await r.admin('POST', '/v1/tenants', { id, name: id, ...extra })
  if (res.status !== 201) throw new Error(`create ${id}: ${res.status} ${JSON.stringify(res.body)}`)
}

function client (t: Test, r: TestRegistry, options: Partial<RegistryClientOptions> = {}): RegistryClient {
  const c = new RegistryClient({ url: r.url, token: r.serviceToken, ...options })
  t.teardown(() => c.close())
  return c
}

async function registryCalls (r: TestRegistry, route: string): Promise<number> {
  const text = await (await request(`${r.url}/metrics`)).body.text()
  let n = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('registry_http_request_duration_seconds_count{') && line.includes(`route="${route}"`)) n += Number(line.split(' ').at(-1))
  }
  return n
}

t.test('1,000 concurrent look-ups of an uncached tenant make one registry call; hits are synchronous', async (t) => {
  const r = await startTestRegistry(t)
  const id = tid('burst')
  await create(r, id)
  const c = client(t, r, { follow: false })
  const before = await registryCalls(r, '/v1/tenants/:id')
  const answers = await Promise.all(Array.from({ length: 1000 }, async () => await c.getTenant(id)))
  t.ok(answers.every((a) => a?.id === id), 'every caller got the tenant')
  t.equal(await registryCalls(r, '/v1/tenants/:id') - before, 1, 'the registry saw one request')
  t.match(c.stats(), { misses: 1, coalesced: 999, upstreamCalls: 1 })
  const hit = c.getTenant(id)
  t.notOk(hit instanceof Promise, 'a cached tenant is answered synchronously')
  t.equal((hit as { id: string }).id, id)
  t.equal(c.stats().hits, 1)
  t.equal(c.getTenant('Not A Valid Id'), null, 'an invalid id never reaches the registry')
  t.equal(c.stats().upstreamCalls, 1)
})

t.test('negative caching, revalidation with If-None-Match, listing', async (t) => {
  const r = await startTestRegistry(t)
  const c = client(t, r, { follow: false, ttl: 100, negativeTtl: 300 })
  const ghost = tid('ghost')
  t.equal(await c.getTenant(ghost), null)
  t.equal(c.getTenant(ghost), null, 'unknown is remembered')
  t.match(c.stats(), { negativeHits: 1, upstreamCalls: 1 })
  await create(r, ghost)
  await sleep(350)
  t.equal((await c.getTenant(ghost))?.id, ghost, 'after the negative TTL the registry is asked again')

  await sleep(150)
  const calls = c.stats().upstreamCalls
  t.equal((await c.getTenant(ghost))?.id, ghost)
  t.match(c.stats(), { revalidated: 1, upstreamCalls: calls + 1 }, 'an expired entry is revalidated: 304')

  await create(r, tid('listed'), { tier: 'premium' })
  const page = await c.listTenants({ tier: 'premium', q: suffix, limit: 10 })
  t.same(page.items.map((x) => x.id), [tid('listed')])
  t.match(page, { total: 1, limit: 10, offset: 0 })
})

t.test('registry down: cached tenants served until maxStale, unknown ones unavailable', async (t) => {
  const r = await startTestRegistry(t)
  const id = tid('cached')
  await create(r, id)
  const c = client(t, r, { follow: false, ttl: 50, maxStale: 1500, retries: 1, timeout: 500 })
  const errors: unknown[] = []
  c.on('error', (err) => errors.push(err))
  t.equal((await c.getTenant(id))?.id, id)
  await r.stop()
  await sleep(80)
  t.equal((await c.getTenant(id))?.id, id, 'served from cache while the registry is down')
  t.ok(c.stats().staleServes >= 1)
  t.ok(errors.length >= 1, 'the failure was reported')
  await t.rejects(async () => await c.getTenant(tid('never-seen')), { code: 'TENANT_UNAVAILABLE', statusCode: 503 })
  await sleep(1600)
  await t.rejects(async () => await c.getTenant(id), { code: 'TENANT_UNAVAILABLE' }, 'past maxStale it is no longer served')
  await r.start()
  t.equal((await c.getTenant(id))?.id, id, 'and served again once the registry is back')
})

t.test('a look-up evicted while under way is made again; tokens can come from a function', async (t) => {
  const r = await startTestRegistry(t)
  const id = tid('evicted')
  await create(r, id)
  let asked = 0
  const c = client(t, r, { follow: false, token: () => { asked++; return r.serviceToken } })
  const pending = c.getTenant(id)
  c.invalidate(id)
  t.equal((await pending)?.id, id)
  t.ok(asked >= 2, 'the token function is called per request')
})

t.test('a follower the registry refuses reports it and keeps trying', async (t) => {
  const r = await startTestRegistry(t)
  const c = client(t, r, { token: r.sign({ sub: 'u', tenant: 'acme', roles: ['owner'], scope: 'tenants:read' }) })
  const errors: Error[] = []
  c.on('error', (err: Error) => errors.push(err))
  await waitFor(async () => errors.length >= 2, 3000)
  t.match(errors[0], { code: 'MT_REGISTRY_REFUSED', message: /HTTP 403 .*SERVICE_TOKEN/ })
  t.match(c.state, { state: 'down', code: 'MT_REGISTRY_REFUSED' })
  await t.rejects(c.check(), { code: 'MT_REGISTRY_REFUSED', message: /tenants:read/ }, 'check() names the setting')
})

t.test('a bad token is a configuration error, not retried', async (t) => {
  const r = await startTestRegistry(t)
  const c = client(t, r, { follow: false, token: 'not-a-token', retries: 3 })
  await t.rejects(async () => await c.getTenant(tid('x')), { code: 'TENANT_UNAVAILABLE', cause: { code: 'MT_REGISTRY_REFUSED', cause: { statusCode: 401 } } })
  t.equal(c.stats().upstreamCalls, 1)
  await t.rejects(c.check(), { code: 'MT_REGISTRY_REFUSED', message: /401 .*invalid or expired.*SERVICE_TOKEN/ })
})

t.test('check(): one authenticated call that names what is wrong', async (t) => {
  const r = await startTestRegistry(t)
  await client(t, r, { follow: false }).check()
  t.pass('a good URL and token pass')
  const port = (await import('node:net')).createServer()
  await new Promise<void>((resolve) => port.listen(0, '127.0.0.1', resolve))
  const free = (port.address() as { port: number }).port
  port.close()
  await t.rejects(client(t, r, { follow: false, url: `http://127.0.0.1:${free}`, retries: 0 }).check(),
    { code: 'MT_REGISTRY_UNREACHABLE', message: new RegExp(`127\\.0\\.0\\.1:${free} \\(REGISTRY_URL\\) cannot be reached: ECONNREFUSED`) })
  // A server that is not a registry.
  const other = Fastify()
  other.get('/*', async (_request, reply) => await reply.code(404).send({}))
  await other.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => other.close())
  await t.rejects(client(t, r, { follow: false, url: `http://127.0.0.1:${(other.server.address() as { port: number }).port}` }).check(),
    { code: 'MT_REGISTRY_RESPONSE', message: /REGISTRY_URL/ })
  t.throws(() => new RegistryClient({ url: 'registry:4000/x', token: 't' }), { code: 'MT_INVALID_OPTION', message: /REGISTRY_URL/ })
  t.throws(() => new RegistryClient({ url: 'not a url', token: 't' }), { code: 'MT_INVALID_OPTION', message: /REGISTRY_URL\) must be an absolute http\(s\) URL, got "not a url"/ })
  t.throws(() => new RegistryClient({ url: 'ftp://registry', token: 't' }), { code: 'MT_INVALID_OPTION', message: /http or https/ })
  t.throws(() => new RegistryClient({ url: r.url, token: '' }), { code: 'MT_INVALID_OPTION', message: /SERVICE_TOKEN/ })
})

t.test('changes arrive as events and through an async iterator', async (t) => {
  const r = await startTestRegistry(t)
  const c = client(t, r)
  await c.following
  const created: string[] = []
  c.on('tenant.created', (change) => created.push(change.tenantId))
  const controller = new AbortController()
  const seen: string[] = []
  const iterating = (async () => {
    for await (const change of c.changes({ signal: controller.signal })) {
      seen.push(`${change.type} ${change.tenantId}`)
      if (seen.length === 3) controller.abort()
    }
  })()
  const id = tid('events')
  await create(r, id)
  t.equal((await r.admin('POST', `/v1/tenants/${id}/suspend`)).status, 200)
  t.equal((await r.admin('POST', `/v1/tenants/${id}/activate`)).status, 200)
  c.emit('error', Object.assign(new Error('a registry call failed'), { code: 'MT_REGISTRY_UNREACHABLE' }))
  await iterating
  t.same(seen, [`tenant.created ${id}`, `tenant.suspended ${id}`, `tenant.active ${id}`], 'in order, and the loop ends when its signal aborts')
  t.same(created, [id], 'an event per type')
  // A throwing listener is reported, and the feed goes on.
  const errors: Array<{ code?: string }> = []
  c.on('error', (err) => errors.push(err))
  c.once('tenant.updated', () => { throw new Error('listener bug') })
  t.equal((await r.admin('PATCH', `/v1/tenants/${id}`, { name: 'Renamed' })).status, 200)
  await waitFor(async () => errors.length > 0, 3000)
  t.match(errors[0], { code: 'MT_LISTENER_FAILED', message: 'listener bug' })
  const archived = c.changes()
  const first = archived.next() // a generator listens from its first next()
  t.equal((await r.admin('DELETE', `/v1/tenants/${id}`)).status, 200)
  t.match((await first).value, { type: 'tenant.archived' }, 'after the listener failed, the feed still delivers')
  await archived.return(undefined)
  // close() ends an iterator.
  const open = (async () => { for await (const change of c.changes()) t.fail(`no change expected, got ${change.type}`) })()
  await c.close()
  await open
  t.pass('close() ends the iterator')
})

t.test('an outage is one log line down and one up, and close() cancels the backoff', async (t) => {
  const lines: Array<[string, string, Record<string, unknown>]> = []
  const logger = {
    info: (obj: object, msg: string) => lines.push(['info', msg, obj as Record<string, unknown>]),
    warn: (obj: object, msg: string) => lines.push(['warn', msg, obj as Record<string, unknown>])
  }
  const r = await startTestRegistry(t)
  const c = client(t, r, { logger, followWait: 1 })
  await c.following
  const states: string[] = []
  c.on('state', (s) => states.push(s.state))
  await r.stop()
  await sleep(2500) // the follower fails several times
  t.equal(lines.filter(([level]) => level === 'warn').length, 1, 'one line while it is down')
  t.match(lines[0], ['warn', /unavailable/, { code: 'MT_REGISTRY_UNREACHABLE' }])
  await r.start()
  await waitFor(async () => states.length === 2, 8000)
  t.same(states, ['down', 'up'])
  t.match(lines.at(-1), ['info', /reachable again/, { downMs: Number }])
  // Registry gone again: the follower sleeps in its backoff; close() must not wait for it.
  await r.stop()
  await sleep(700)
  const started = performance.now()
  await c.close()
  t.ok(performance.now() - started < 200, 'close() returns without waiting out the backoff')
})

t.test('retries honour Retry-After and go through the caller\'s dispatcher', async (t) => {
  const { Agent } = await import('undici')
  let calls = 0
  const flaky = Fastify()
  flaky.get('/v1/tenants/:id', async (request, reply) => {
    calls++
    if (calls === 1) return await reply.code(503).header('retry-after', '1').send({})
    if (calls === 3) return await reply.code(429).header('retry-after', new Date(Date.now() + 1500).toUTCString()).send({})
    if (calls === 4) return await reply.code(503).header('retry-after', '0').send({})
    return { id: (request.params as { id: string }).id, name: 'x', status: 'active', tier: 'free', database: 'default', config: {}, limits: {}, domains: [] }
  })
  await flaky.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => flaky.close())
  const agent = new Agent()
  t.teardown(() => agent.close())
  const c = new RegistryClient({ url: `http://127.0.0.1:${(flaky.server.address() as { port: number }).port}`, token: 't', follow: false, dispatcher: agent })
  const started = performance.now()
  t.match(await c.getTenant('acme'), { id: 'acme' })
  const waited = performance.now() - started
  t.ok(waited >= 950, `waited the Retry-After second (${Math.round(waited)} ms)`)
  t.match(c.stats(), { upstreamCalls: 2, upstreamErrors: 1 })
  c.invalidate('acme')
  const again = performance.now()
  t.match(await c.getTenant('acme'), { id: 'acme' }, 'an HTTP-date Retry-After, then Retry-After: 0 (the usual backoff)')
  t.ok(performance.now() - again >= 450, `the date was honoured (${Math.round(performance.now() - again)} ms)`)
  t.match(c.stats(), { upstreamCalls: 5, upstreamErrors: 3 })
  await c.close()
  t.equal(agent.closed, false, 'the caller\'s dispatcher stays open')
  await c.close()
  t.pass('close() twice is fine')
})

t.test('close() during a Retry-After wait ends the look-up at once', async (t) => {
  const slow = Fastify()
  slow.get('/v1/tenants/:id', async (_request, reply) => await reply.code(503).header('retry-after', '5').send({}))
  await slow.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => slow.close())
  const c = new RegistryClient({ url: `http://127.0.0.1:${(slow.server.address() as { port: number }).port}`, token: 't', follow: false })
  const pending = c.getTenant('acme') as Promise<unknown>
  pending.catch(() => {})
  await new Promise((resolve) => setTimeout(resolve, 200))
  const started = performance.now()
  await c.close()
  await t.rejects(pending)
  t.ok(performance.now() - started < 1000, `settled ${Math.round(performance.now() - started)} ms after close(), not after the 5 s wait`)
})

t.test('an answer that is not JSON is a registry response error, not a crash', async (t) => {
  const odd = Fastify()
  odd.get('/v1/tenants/:id', async (_request, reply) => await reply.type('application/json').send('<html>proxy error</html>'))
  await odd.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => odd.close())
  const c = new RegistryClient({ url: `http://127.0.0.1:${(odd.server.address() as { port: number }).port}`, token: 't', follow: false })
  t.teardown(() => c.close())
  await t.rejects(async () => await c.getTenant('acme'), { code: 'TENANT_UNAVAILABLE', cause: { code: 'MT_REGISTRY_UNREACHABLE', message: /HTTP 502/ } })
})

t.test('the change feed evicts at once: a suspension stops requests within a second, with a one-hour TTL', async (t) => {
  const r = await startTestRegistry(t)
  const id = tid('suspendme')
  await create(r, id)
  const c = client(t, r, { ttl: 3_600_000 })
  await c.following
  const app = Fastify()
  await app.register(multitenantPlugin, { provider: c })
  app.get('/work', async (request) => ({ tenant: request.tenant?.id }))
  t.teardown(() => app.close())
  t.equal((await app.inject({ url: '/work', headers: { 'x-tenant-id': id } })).statusCode, 200)
  t.equal((await app.inject({ url: '/work', headers: { 'x-tenant-id': id } })).statusCode, 200)
  t.ok(c.stats().hits >= 1, 'the second request was a cache hit')

  const suspendedAt = Date.now()
  t.equal((await r.admin('POST', `/v1/tenants/${id}/suspend`)).status, 200)
  let status = 200
  while (status === 200 && Date.now() - suspendedAt < 3000) {
    status = (await app.inject({ url: '/work', headers: { 'x-tenant-id': id } })).statusCode
    if (status === 200) await sleep(10)
  }
  const elapsed = Date.now() - suspendedAt
  t.equal(status, 403, 'TENANT_SUSPENDED')
  t.ok(elapsed < 1000, `stopped within a second (${elapsed} ms)`)
  t.ok(c.stats().feedEvictions >= 1)

  // Hosts: a new custom domain replaces a remembered "unknown"; removing it evicts the host.
  const host = `${id}.example.org`
  t.equal(await c.getTenantByHost(host), null)
  t.equal(c.getTenantByHost(host), null, 'an unknown host is remembered')
  t.equal((await r.admin('POST', `/v1/tenants/${id}/domains`, { domain: host })).status, 201)
  await waitFor(async () => (await c.getTenantByHost(host))?.id === id)
  t.equal((await c.getTenantByHost(`${host.toUpperCase()}:443`))?.id, id, 'hosts are normalised')
  t.equal((await r.admin('DELETE', `/v1/tenants/${id}/domains/${host}`)).status, 200)
  await waitFor(async () => (await c.getTenantByHost(host)) === null)
  t.equal(c.getTenantByHost('not a host'), null)
})

async function waitFor (check: () => Promise<boolean>, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(20)
  }
}

t.test('the follower resumes after the registry restarts, and resets when the log is behind it', async (t) => {
  const r = await startTestRegistry(t)
  const id = tid('follow')
  await create(r, id)
  const c = client(t, r, { ttl: 3_600_000, followWait: 1 })
  await c.following
  t.equal((await c.getTenant(id))?.status, 'active')
  await r.stop()
  await sleep(300)
  await r.start()
  t.equal((await r.admin('POST', `/v1/tenants/${id}/suspend`)).status, 200)
  await waitFor(async () => (await c.getTenant(id))?.status === 'suspended', 8000)
  t.pass('the change made after the restart reached the cache')

  // The registry's change log is replaced (restored database): the client cannot know what it
  // missed and drops everything.
  const sql = postgres(r.databaseUrl, { max: 1 })
  t.teardown(() => sql.end())
  t.equal((await c.getTenant(id))?.status, 'suspended')
  await sql`update tenants set status = 'active' where id = ${id}` // a change the feed never shows
  let resets = 0
  c.on('reset', () => resets++)
  await sql`truncate tenant_changes`
  await waitFor(async () => c.stats().feedResets === 1, 5000)
  t.equal(resets, 1, 'a reset event tells listeners to re-read')
  t.equal((await c.getTenant(id))?.status, 'active', 'fresh after the reset')
})

t.test('made-up Host values neither evict known hosts nor cost a call each time', async (t) => {
  const r = await startTestRegistry(t)
  const id = tid('hosty')
  const host = `mail.${id}.test`
  await create(r, id, { domains: [host] })
  // The per-host memory alone (the budget on never-seen hosts is tested below).
  const c = client(t, r, { follow: false, max: 50, negativeTtl: 60_000, unknownLookups: false })
  t.equal((await c.getTenantByHost(host))?.id, id)
  // Far more unknown hosts than the cache holds.
  for (let i = 0; i < 200; i++) await c.getTenantByHost(`junk-${i}.attacker.test`)
  const before = await registryCalls(r, '/v1/resolve')
  t.equal((c.getTenantByHost(host) as { id: string } | null)?.id, id, 'the known host is still a synchronous hit')
  t.equal(c.getTenantByHost('junk-199.attacker.test'), null, 'a repeated unknown host is answered from memory')
  t.equal(await registryCalls(r, '/v1/resolve'), before, 'with no registry call')
})

t.test('a stream of random Host values costs a bounded number of registry calls; announced tenants and domains still resolve at once', async (t) => {
  const r = await startTestRegistry(t)
  const id = tid('flood')
  const host = `mail.${id}.test`
  await create(r, id, { domains: [host] })
  // No refill during the test: the bound is exactly the burst, whatever the machine's speed.
  const burst = 20
  const c = client(t, r, { unknownLookups: { burst, perSecond: 0 } })
  await c.following
  t.equal((await c.getTenantByHost(host))?.id, id)
  const before = await registryCalls(r, '/v1/resolve')
  let unknown = 0
  let refused = 0
  const look = async (i: number): Promise<void> => {
    try {
      if (await c.getTenantByHost(`r${i}-${Math.random().toString(36).slice(2)}.attacker.test`) === null) unknown++
    } catch (err) {
      if ((err as { code?: string }).code === 'TENANT_UNAVAILABLE') refused++
      else throw err
    }
  }
  // 1,000 made-up hosts: 500 at once, then 500 one after another.
  await Promise.all(Array.from({ length: 500 }, async (_, i) => await look(i)))
  for (let i = 500; i < 1000; i++) await look(i)
  const calls = await registryCalls(r, '/v1/resolve') - before
  t.comment(`1,000 random hosts cost ${calls} registry calls (burst ${burst}); ${unknown} answered unknown, ${refused} refused`)
  t.ok(calls <= burst, `at most the burst reaches the registry (${calls})`)
  t.equal(unknown + refused, 1000)
  t.equal(c.stats().unknownRefused, refused)
  t.equal((c.getTenantByHost(host) as { id: string } | null)?.id, id, 'a known host is still a synchronous hit')
  // Random ids (a random subdomain is one) are bounded by the same budget.
  const idCalls = await registryCalls(r, '/v1/tenants/:id')
  const ids = await Promise.allSettled(Array.from({ length: 200 }, async (_, i) => await c.getTenant(tid(`nobody${i}`))))
  t.ok(ids.every((x) => x.status === 'rejected'), 'random ids are refused while the budget is spent')
  t.equal(await registryCalls(r, '/v1/tenants/:id'), idCalls, 'with no registry call')

  // While the budget is spent, a tenant created with a new domain, and a domain added to a known
  // tenant, resolve at their first look-up: the change feed announced them.
  const fresh = tid('fresh')
  const freshHost = `mail.${fresh}.test`
  await create(r, fresh, { domains: [freshHost] })
  await waitFor(async () => (await Promise.resolve(c.getTenantByHost(freshHost)).catch(() => null))?.id === fresh, 5000)
  t.equal((await c.getTenant(fresh))?.id, fresh, 'the new tenant by id')
  const added = `shop.${id}.test`
  t.equal((await r.admin('POST', `/v1/tenants/${id}/domains`, { domain: added })).status, 201)
  await waitFor(async () => (await Promise.resolve(c.getTenantByHost(added)).catch(() => null))?.id === id, 5000)
  t.pass('a domain added to a known tenant')
  // An update evicts a known tenant: it is looked up again, never held back.
  t.equal((await r.admin('PATCH', `/v1/tenants/${id}`, { name: 'Renamed' })).status, 200)
  await waitFor(async () => (await c.getTenant(id))?.name === 'Renamed', 5000)
  t.equal((await c.getTenantByHost(host))?.id, id, 'and its host too')

  // Through the plugin: a made-up host is 503 TENANT_UNAVAILABLE with Retry-After, not a registry call.
  const app = Fastify()
  t.teardown(() => app.close())
  app.setErrorHandler((await import('../src/fastify/error-handler.ts')).platformErrorHandler())
  await app.register(multitenantPlugin, { provider: c })
  app.get('/x', async () => ({ ok: true }))
  const res = await app.inject({ url: '/x', headers: { host: 'yet-another.attacker.test' } })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { code: 'TENANT_UNAVAILABLE' })
  t.ok(res.headers['retry-after'] !== undefined)
  t.equal((await app.inject({ url: '/x', headers: { host } })).statusCode, 200, 'the known host is served')
})

t.test('1,000 random hosts spend the unknown-look-up budget but lock out no real tenant this client never looked up', async (t) => {
  const r = await startTestRegistry(t)
  // Real tenants that exist before the client starts (the feed never announces them) and that
  // it has never looked up: by custom domain, by id, and by subdomain of the platform's domain.
  const shop = tid('shop')
  const shopHost = `shop.${shop}.test`
  await create(r, shop, { domains: [shopHost] })
  const plain = tid('plain')
  await create(r, plain)
  const sub = tid('sub')
  await create(r, sub)
  const burst = 20
  const c = client(t, r, { unknownLookups: { burst, perSecond: 0 } })
  await c.following
  const before = await registryCalls(r, '/v1/resolve')
  let refused = 0
  for (let i = 0; i < 1000; i++) {
    try {
      await c.getTenantByHost(`x${i}.evil.example`)
    } catch (err) {
      if ((err as { code?: string }).code !== 'TENANT_UNAVAILABLE') throw err
      refused++
    }
  }
  const calls = await registryCalls(r, '/v1/resolve') - before
  t.comment(`1,000 random hosts cost ${calls} registry calls (burst ${burst}); ${refused} refused`)
  t.ok(calls <= burst, `bounded by the burst (${calls})`)
  t.ok(refused >= 1000 - burst, 'the budget is spent')
  t.equal((await c.getTenantByHost(shopHost))?.id, shop, 'a real custom domain never looked up still resolves')
  t.equal((await c.getTenant(plain))?.id, plain, 'a real id never looked up still resolves')
  const afterAttack = await registryCalls(r, '/v1/resolve')
  // Through the plugin, as the attack is made: the victims' users are served.
  const app = Fastify()
  t.teardown(() => app.close())
  app.setErrorHandler((await import('../src/fastify/error-handler.ts')).platformErrorHandler())
  await app.register(multitenantPlugin, { provider: c, baseDomain: 'platform.test' })
  app.get('/x', async (request) => ({ tenant: request.tenant?.id }))
  t.equal((await app.inject({ url: '/x', headers: { host: 'x1001.evil.example' } })).statusCode, 503, 'a new made-up host is still refused')
  const bySub = await app.inject({ url: '/x', headers: { host: `${sub}.platform.test` } })
  t.equal(bySub.statusCode, 200, 'a real tenant by subdomain is served')
  t.equal(bySub.json().tenant, sub)
  t.equal(await registryCalls(r, '/v1/resolve'), afterAttack, 'the made-up host cost no registry call')
})

t.test('a failed listing of tenants is reported; the feed is followed all the same', async (t) => {
  const odd = Fastify()
  odd.get('/v1/changes', async () => ({ items: [], next: 0, head: 0 }))
  await odd.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => odd.close())
  const c = new RegistryClient({ url: `http://127.0.0.1:${(odd.server.address() as { port: number }).port}`, token: 't', retries: 0 })
  t.teardown(() => c.close())
  const errors: Array<{ code?: string }> = []
  c.on('error', (err) => errors.push(err))
  await c.following
  t.ok(errors.some((err) => err.code === 'MT_REGISTRY_RESPONSE'), 'an error event names the failure')
})

t.test('the unknown-look-up budget refills with time, and can be turned off', async (t) => {
  const r = await startTestRegistry(t)
  const c = client(t, r, { follow: false, unknownLookups: { burst: 1, perSecond: 1 } })
  t.equal(await c.getTenantByHost('first.attacker.test'), null, 'the one token: asked')
  await t.rejects(Promise.resolve(c.getTenantByHost('second.attacker.test')), { code: 'TENANT_UNAVAILABLE' }, 'spent')
  await sleep(1100) // one a second
  t.equal(await c.getTenantByHost('third.attacker.test'), null, 'refilled: asked again')
  const off = client(t, r, { follow: false, unknownLookups: false })
  for (let i = 0; i < 5; i++) t.equal(await off.getTenantByHost(`h${i}.attacker.test`), null)
  t.equal(off.stats().upstreamCalls, 5, 'off: every made-up host is asked')
  t.throws(() => new RegistryClient({ url: r.url, token: 'x', unknownLookups: { burst: 0 } }), { code: 'MT_INVALID_OPTION' })
  t.throws(() => new RegistryClient({ url: r.url, token: 'x', unknownLookups: { perSecond: -1 } }), { code: 'MT_INVALID_OPTION' })
})

t.test('remember(): a record the registry just answered is served at once; an older one is ignored', async (t) => {
  const r = await startTestRegistry(t)
  const id = tid('remember')
  await create(r, id)
  const c = client(t, r, { follow: false, ttl: 60_000 })
  t.equal(c.url, r.url.replace(/\/+$/, ''), 'url is the registry base')
  const first = await c.getTenant(id)
  t.equal(first?.name, id)
  const res = await r.admin('PATCH', `/v1/tenants/${id}`, { name: 'Renamed' })
  const updated = res.body as Tenant
  t.equal((await c.getTenant(id))?.name, id, 'the cache still has the old record (no feed)')
  c.remember(updated, `"${id}.${updated.version}"`)
  const calls = c.stats().upstreamCalls
  t.equal((await c.getTenant(id))?.name, 'Renamed', 'served the remembered record')
  t.equal(c.stats().upstreamCalls, calls, 'without asking the registry')
  c.remember(first as Tenant)
  t.equal((await c.getTenant(id))?.name, 'Renamed', 'an older version does not replace a newer one')
})
