import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { Readable } from 'node:stream'
import { freePort } from '@platform/testkit'
import { startTokenIssuer, type TokenIssuer } from '@platform/testkit/token-issuer'
import { createVerifier } from 'fast-jwt'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { Agent, Client, request, type Dispatcher } from 'undici'
import { runAsSystem, runAsTenant } from '../src/context.ts'
import { tenantPropagation, type InternalOrigin, type TokenExchangeOptions } from '../src/propagation.ts'

async function echoServer (t: { teardown (fn: () => unknown): void }): Promise<{ origin: string, seen: IncomingHttpHeaders[] }> {
  const seen: IncomingHttpHeaders[] = []
  const server: Server = createServer((req, res) => {
    seen.push(req.headers)
    res.end('ok')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return { origin: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen }
}

t.test('adds X-Tenant-ID to internal origins only', async (t) => {
  const internal = await echoServer(t)
  const external = await echoServer(t)
  const agent = new Agent().compose(tenantPropagation({ origins: [internal.origin + '/ignored-path'] }))
  t.teardown(() => agent.close())
  const get = async (url: string, headers?: Record<string, string> | string[]) => {
    const res = await request(url, { dispatcher: agent, headers })
    await res.body.text()
  }
  await runAsTenant('acme', () => get(internal.origin + '/a'))
  await runAsTenant('acme', () => get(external.origin + '/b'))
  await get(internal.origin + '/c')
  await runAsSystem(() => get(internal.origin + '/d'))
  await runAsTenant('acme', () => get(internal.origin + '/e', { 'x-trace': '1' }))
  await runAsTenant('acme', () => get(internal.origin + '/f', ['x-trace', '2']))
  await runAsTenant('acme', () => get(internal.origin + '/g', { 'X-Tenant-ID': 'acme' }))
  await runAsTenant('acme', () => get(internal.origin + '/h', ['X-Tenant-ID', 'acme']))
  t.same(internal.seen.map((h) => h['x-tenant-id']), ['acme', undefined, undefined, 'acme', 'acme', 'acme', 'acme'])
  t.same(internal.seen.map((h) => h['x-trace']), [undefined, undefined, undefined, '1', '2', undefined, undefined])
  t.equal(external.seen[0]?.['x-tenant-id'], undefined, 'never sent to other origins')
  await t.rejects(runAsTenant('acme', () => get(internal.origin + '/i', { 'x-tenant-id': 'globex' })), { code: 'TENANT_MISMATCH' })
  await t.rejects(runAsTenant('acme', () => get(internal.origin + '/j', ['x-tenant-id', 'globex'])), { code: 'TENANT_MISMATCH' })
  t.equal(internal.seen.length, 7, 'the mismatched requests were never sent')
})

t.test('iterable headers and options', async (t) => {
  const internal = await echoServer(t)
  const agent = new Agent().compose(tenantPropagation({ origins: [new URL(internal.origin)], header: 'X-Org' }))
  t.teardown(() => agent.close())
  await runAsTenant('globex', async () => {
    const res = await request(internal.origin, { dispatcher: agent, headers: new Map([['x-a', 'b']]) as unknown as Record<string, string> })
    await res.body.text()
  })
  t.equal(internal.seen[0]?.['x-org'], 'globex')
  t.equal(internal.seen[0]?.['x-a'], 'b')
  t.throws(() => tenantPropagation({ origins: ['not a url'] }), { code: 'MT_INVALID_OPTION' })
  t.throws(() => tenantPropagation({} as never), { code: 'MT_INVALID_OPTION' })
})

// Token exchange: the registry's POST /v1/token is played by the testkit's issuer (same contract),
// the target by a Fastify server that verifies every token it gets.
const SECRET = 'propagation-test-secret-0123456789'
const CREDENTIAL = 'orders-credential'

interface Seen { tenant: string | undefined, claims: Record<string, unknown> | null, token: string | undefined, refused: boolean }

async function commServer (t: Test): Promise<{ origin: string, seen: Seen[], revoked: Set<string> }> {
  const verify = createVerifier({ key: SECRET, allowedAud: 'comm', allowedIss: 'tenant-registry' })
  const seen: Seen[] = []
  const revoked = new Set<string>()
  const app = Fastify()
  app.all('/*', async (request, reply) => {
    const token = request.headers.authorization?.replace(/^Bearer /, '')
    let claims: Record<string, unknown> | null = null
    try {
      claims = token === undefined || revoked.has(token) ? null : verify(token) as Record<string, unknown>
    } catch {}
    seen.push({ tenant: request.headers['x-tenant-id'] as string | undefined, claims, token, refused: claims === null })
    if (claims === null) return await reply.code(401).send({ statusCode: 401, code: 'UNAUTHORIZED', error: 'Unauthorized', message: 'Authentication required' })
    return { tenant: request.headers['x-tenant-id'], claimed: claims.tenant, body: request.body ?? null }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { origin: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, seen, revoked }
}

const statuses = new Map<string, 'active' | 'suspended'>([['suspended-co', 'suspended']])

async function issuer (t: Test): Promise<TokenIssuer> {
  const started = await startTokenIssuer({
    secret: SECRET,
    services: { [CREDENTIAL]: { name: 'orders', scopes: ['messages:send', 'messages:read'], audiences: ['comm'] } },
    tenant: (id) => id.startsWith('ghost') ? null : statuses.get(id) ?? 'active'
  })
  t.teardown(() => started.close())
  return started
}

async function setUp (t: Test, exchange: Partial<TokenExchangeOptions> = {}, entry: Partial<InternalOrigin> = {}): Promise<{ comm: Awaited<ReturnType<typeof commServer>>, tokens: TokenIssuer, agent: Dispatcher, get: (path?: string, init?: { headers?: Record<string, string>, body?: unknown, method?: 'GET' | 'POST' }) => Promise<{ status: number, body: any }> }> {
  const comm = await commServer(t)
  const tokens = await issuer(t)
  const agent = new Agent().compose(tenantPropagation({
    origins: [{ origin: comm.origin, audience: 'comm', ...entry }],
    exchange: { registry: tokens.url, credential: CREDENTIAL, ...exchange }
  }))
  t.teardown(() => agent.close())
  const get = async (path = '/v1/messages', init: { headers?: Record<string, string>, body?: unknown, method?: 'GET' | 'POST' } = {}): Promise<{ status: number, body: any }> => {
    const res = await request(comm.origin + path, { dispatcher: agent, method: init.method ?? 'GET', headers: init.headers, body: init.body as string | undefined })
    return { status: res.statusCode, body: await res.body.json() }
  }
  return { comm, tokens, agent, get }
}

t.test('inside a tenant scope: X-Tenant-ID and a token for that tenant and audience', async (t) => {
  const { comm, tokens, agent, get } = await setUp(t)
  const answer = await runAsTenant('acme', () => get())
  t.same(answer, { status: 200, body: { tenant: 'acme', claimed: 'acme', body: null } })
  t.match(comm.seen[0]?.claims, { sub: 'svc:orders', tenant: 'acme', roles: ['service'], scope: 'messages:send messages:read', aud: 'comm', act: { sub: 'svc:orders' } })
  t.same(tokens.issued.map((x) => [x.tenant, x.audience]), [['acme', 'comm']])
  // The caller's own token (forwarding a user's) is kept, and costs no exchange.
  const forwarded = tokens.issued[0]?.token as string
  t.equal((await runAsTenant('acme', () => get('/x', { headers: { authorization: `Bearer ${forwarded}` } }))).status, 200)
  t.equal(comm.seen[1]?.token, forwarded)
  t.equal(tokens.requests, 1)
  await t.rejects(runAsTenant('acme', () => get('/x', { headers: { 'x-tenant-id': 'globex' } })), { code: 'TENANT_MISMATCH' })
  t.equal(comm.seen.length, 2, 'nothing sent for a request that names another tenant')
  // Headers as a flat array: the token is added, or the caller's own kept.
  for (const headers of [['x-trace', '1'], ['Authorization', `Bearer ${forwarded}`]]) {
    const res = await runAsTenant('acme', async () => await request(comm.origin + '/y', { dispatcher: agent, headers }))
    t.equal(res.statusCode, 200)
    await res.body.dump()
  }
  t.same(comm.seen.slice(2).map((s) => [s.tenant, s.token === forwarded]), [['acme', true], ['acme', true]], 'one cached token, or the caller\'s')
})

t.test('100 concurrent calls for one tenant: one exchange', async (t) => {
  const { comm, tokens, get } = await setUp(t)
  const answers = await runAsTenant('acme', () => Promise.all(Array.from({ length: 100 }, async () => await get())))
  t.ok(answers.every((a) => a.status === 200 && a.body.claimed === 'acme'))
  t.equal(tokens.requests, 1, 'one exchange for 100 concurrent misses')
  t.equal(new Set(comm.seen.map((s) => s.token)).size, 1)
})

t.test('different tenants under concurrency: each call carries its own tenant\'s token', async (t) => {
  const { comm, tokens, get } = await setUp(t)
  const ids = ['acme', 'globex', 'initech', 'hooli']
  const calls = Array.from({ length: 200 }, (_, i) => ids[(i * 7) % ids.length] as string)
  const answers = await Promise.all(calls.map(async (id) => await runAsTenant(id, async () => ({ id, answer: await get() }))))
  t.ok(answers.every(({ id, answer }) => answer.body.tenant === id && answer.body.claimed === id), 'every answer is its caller\'s tenant, header and token')
  t.ok(comm.seen.every((s) => s.tenant === s.claims?.tenant), 'no header and token of different tenants')
  t.equal(tokens.requests, ids.length, 'one exchange per tenant')
  t.same(new Set(tokens.issued.map((x) => x.tenant)), new Set(ids))
})

t.test('refreshed before it expires (injected clock) and after a real short lifetime', async (t) => {
  let clock = 1_000_000
  const { comm, tokens, get } = await setUp(t, { now: () => clock })
  await runAsTenant('acme', () => get())
  clock += 269_000 // 300 s tokens are refreshed 30 s before their end
  await runAsTenant('acme', () => get())
  t.equal(tokens.requests, 1, 'still fresh')
  clock += 2000
  await runAsTenant('acme', () => get())
  t.equal(tokens.requests, 2, 'refreshed')
  t.not(comm.seen[2]?.token, comm.seen[1]?.token)

  // One-second tokens, verified for their expiry by the target: kept for 0.8 s, then exchanged again.
  tokens.lifetime = 1
  const short = await setUp(t)
  short.tokens.lifetime = 1
  t.equal((await runAsTenant('acme', () => short.get())).status, 200)
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.equal((await runAsTenant('acme', () => short.get())).status, 200, 'the target accepted the call after the first token expired')
  t.equal(short.tokens.requests, 2)
  t.ok(short.comm.seen.every((s) => !s.refused), 'never sent an expired token')
})

t.test('outside a tenant scope: refused, nothing sent', async (t) => {
  const { comm, tokens, get } = await setUp(t)
  await t.rejects(get(), { code: 'TENANT_REQUIRED', message: /no tenant is in scope/ })
  await t.rejects(runAsSystem(() => get()), { code: 'TENANT_REQUIRED' }, 'a system scope is not a tenant')
  t.equal(comm.seen.length, 0)
  t.equal(tokens.requests, 0)
})

t.test('a 401 from the target: the token is forgotten and the call retried once', async (t) => {
  const { comm, tokens, get } = await setUp(t)
  await runAsTenant('acme', () => get())
  comm.revoked.add(tokens.issued[0]?.token as string)
  const retried = await runAsTenant('acme', () => get('/v1/messages', { method: 'POST', body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } }))
  t.same(retried, { status: 200, body: { tenant: 'acme', claimed: 'acme', body: { a: 1 } } })
  t.same(comm.seen.map((s) => s.refused), [false, true, false], 'refused once, then sent with a fresh token')
  t.equal(tokens.requests, 2)
  // A target that refuses every token: one retry, then the caller gets the 401.
  for (const x of tokens.issued) comm.revoked.add(x.token)
  const verifyRevokes = comm.revoked
  const original = verifyRevokes.has.bind(verifyRevokes)
  verifyRevokes.has = () => true
  t.teardown(() => { verifyRevokes.has = original })
  t.match(await runAsTenant('acme', () => get()), { status: 401, body: { code: 'UNAUTHORIZED' } })
  t.equal(comm.seen.length, 5)
  t.equal(tokens.requests, 3)
  // A streamed body cannot be sent twice: the caller gets the 401 (and the token is forgotten).
  const res = await runAsTenant('acme', async () => await request(comm.origin + '/stream', { dispatcher: (await setUpAgent()).agent, method: 'POST', headers: { 'content-type': 'text/plain' }, body: Readable.from(['x']) }))
  async function setUpAgent (): Promise<{ agent: Dispatcher }> {
    const agent = new Agent().compose(tenantPropagation({ origins: [{ origin: comm.origin, audience: 'comm' }], exchange: { registry: tokens.url, credential: () => CREDENTIAL } }))
    t.teardown(() => agent.close())
    return { agent }
  }
  t.equal(res.statusCode, 401)
  await res.body.dump()
  t.equal(comm.seen.length, 6, 'not retried')
})

t.test('an exchange that is refused fails the call with a clear code; nothing reaches the target', async (t) => {
  const { comm, get } = await setUp(t)
  await t.rejects(runAsTenant('suspended-co', () => get()), { code: 'TENANT_SUSPENDED', statusCode: 403 })
  await t.rejects(runAsTenant('ghost-co', () => get()), { code: 'TENANT_NOT_FOUND', statusCode: 404 })
  const wrong = await setUp(t, { credential: 'not-a-credential' })
  await t.rejects(runAsTenant('acme', () => wrong.get()), { code: 'MT_REGISTRY_REFUSED', message: /HTTP 401 UNAUTHORIZED.*SERVICE_TOKEN/ })
  const beyond = await setUp(t, {}, { audience: 'billing' })
  await t.rejects(runAsTenant('acme', () => beyond.get()), { code: 'MT_REGISTRY_REFUSED', message: /403 FORBIDDEN.*may not call billing/ })
  const scoped = await setUp(t, {}, { scope: 'templates:write' })
  await t.rejects(runAsTenant('acme', () => scoped.get()), { code: 'MT_REGISTRY_REFUSED', message: /templates:write/ })
  const narrow = await setUp(t, {}, { scope: 'messages:send' })
  await runAsTenant('acme', () => narrow.get())
  t.equal(narrow.comm.seen[0]?.claims?.scope, 'messages:send', 'a narrower scope is asked for')
  t.equal(comm.seen.length + wrong.comm.seen.length + beyond.comm.seen.length + scoped.comm.seen.length, 0)

  // Registries that are down, slow or answer oddly.
  const odd = Fastify({ forceCloseConnections: true })
  odd.post('/ok/v1/token', async () => ({ access_token: 'x', token_type: 'bearer', expires_in: 60 }))
  odd.post('/empty/v1/token', async () => ({ token_type: 'Bearer', expires_in: 60 }))
  odd.post('/forever/v1/token', async () => ({ access_token: 'x', token_type: 'Bearer', expires_in: 10 ** 9 }))
  odd.post('/boom/v1/token', async (_r, reply) => await reply.code(500).send({ statusCode: 500, code: 'INTERNAL' }))
  odd.post('/busy/v1/token', async (_r, reply) => await reply.code(429).send('slow down'))
  odd.post('/teapot/v1/token', async (_r, reply) => await reply.code(418).send('short and stout'))
  odd.post('/bare/v1/token', async (_r, reply) => await reply.code(403).type('text/plain').send('no'))
  odd.post('/scalar/v1/token', async (_r, reply) => await reply.type('application/json').send('42'))
  odd.post('/hang/v1/token', async () => await new Promise(() => {}))
  await odd.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => odd.close())
  const base = `http://127.0.0.1:${(odd.server.address() as { port: number }).port}`
  const via = async (path: string, options: Partial<TokenExchangeOptions> = {}): Promise<unknown> => {
    const agent = new Agent().compose(tenantPropagation({ origins: [{ origin: comm.origin, audience: 'comm' }], exchange: { registry: base + path, credential: 'c', ...options } }))
    t.teardown(() => agent.close())
    return await runAsTenant('acme', async () => await (await request(comm.origin, { dispatcher: agent })).body.json())
  }
  t.match(await via('/ok/'), { statusCode: 401 }, 'a registry path prefix is kept (the target refused its made-up token)')
  await t.rejects(via('/empty'), { code: 'MT_REGISTRY_RESPONSE' })
  await t.rejects(via('/forever'), { code: 'MT_REGISTRY_RESPONSE' })
  await t.rejects(via('/scalar'), { code: 'MT_REGISTRY_RESPONSE' })
  await t.rejects(via('/boom'), { code: 'MT_REGISTRY_UNREACHABLE', message: /HTTP 500/ })
  await t.rejects(via('/busy'), { code: 'MT_REGISTRY_UNREACHABLE', message: /HTTP 429/ })
  await t.rejects(via('/teapot'), { code: 'MT_REGISTRY_RESPONSE', message: /HTTP 418/ })
  await t.rejects(via('/bare'), { code: 'MT_REGISTRY_REFUSED', message: /HTTP 403 +for/ })
  await t.rejects(via('/hang', { timeout: 100 }), { code: 'MT_REGISTRY_UNREACHABLE', message: /no answer within 100 ms/ })
  const ownDispatcher = new Agent()
  t.teardown(() => ownDispatcher.close())
  await t.rejects(via('/boom', { dispatcher: ownDispatcher }), { code: 'MT_REGISTRY_UNREACHABLE' }, 'through the given dispatcher')
  const down = new Agent().compose(tenantPropagation({ origins: [{ origin: comm.origin, audience: 'comm' }], exchange: { registry: `http://127.0.0.1:${await freePort()}`, credential: 'c' } }))
  t.teardown(() => down.close())
  await t.rejects(runAsTenant('acme', () => request(comm.origin, { dispatcher: down })), { code: 'MT_REGISTRY_UNREACHABLE', message: /ECONNREFUSED/ })
})

t.test('token options are checked at construction', async (t) => {
  const exchange = { registry: 'http://127.0.0.1:1', credential: 'c' }
  const comm = 'http://127.0.0.1:2'
  t.throws(() => tenantPropagation({ origins: [{ origin: comm } as InternalOrigin], exchange }), { code: 'MT_INVALID_OPTION', message: /origin, audience/ })
  t.throws(() => tenantPropagation({ origins: [{ origin: comm, audience: 'comm', scope: 3 } as unknown as InternalOrigin], exchange }), { code: 'MT_INVALID_OPTION', message: /space-separated/ })
  t.throws(() => tenantPropagation({ origins: [{ origin: comm, audience: 'comm' }] }), { code: 'MT_INVALID_OPTION', message: /need exchange/ })
  t.throws(() => tenantPropagation({ origins: [{ origin: comm, audience: 'comm' }], exchange: { ...exchange, registry: 'nope' } }), { code: 'MT_INVALID_OPTION', message: /REGISTRY_URL/ })
  t.throws(() => tenantPropagation({ origins: [{ origin: comm, audience: 'comm' }], exchange: { ...exchange, credential: '' } }), { code: 'MT_INVALID_OPTION', message: /SERVICE_TOKEN/ })
  t.throws(() => tenantPropagation({ origins: [{ origin: comm, audience: 'comm' }], exchange: null as unknown as TokenExchangeOptions }), { code: 'MT_INVALID_OPTION' })
  t.doesNotThrow(() => tenantPropagation({ origins: [comm], exchange }), 'header-only origins need no exchange, and ignore one')
})

t.test('the caller\'s handler keeps one controller across the retry: pause, resume, abort and upgrades pass through', async (t) => {
  const tokens = await issuer(t)
  let refuseNext = true
  const server = createServer((req, res) => {
    if (refuseNext && req.headers.authorization !== undefined) {
      refuseNext = false
      res.statusCode = 401
      res.end('{"code":"UNAUTHORIZED"}')
      return
    }
    res.end('x'.repeat(100_000))
  })
  server.on('upgrade', (req, socket) => {
    socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${String(req.headers.upgrade)}\r\nConnection: Upgrade\r\nX-Tenant: ${String(req.headers['x-tenant-id'])}\r\n\r\n`)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  const origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const agent = new Agent().compose(tenantPropagation({ origins: [{ origin, audience: 'comm' }], exchange: { registry: tokens.url, credential: CREDENTIAL } }))
  t.teardown(() => agent.close())

  const run = async (opts: Partial<Dispatcher.DispatchOptions>, on: (controller: Dispatcher.DispatchController, events: string[]) => void, tenant = 'acme'): Promise<string[]> => {
    const events: string[] = []
    await runAsTenant(tenant, async () => await new Promise<void>((resolve) => {
      agent.dispatch({ origin, path: '/', method: 'GET', ...opts }, {
        onRequestStart (controller) {
          events.push('start')
          // Paused before the first answer: the retry's connection starts paused too.
          controller.pause()
          t.equal(controller.paused, true)
          setTimeout(() => controller.resume(), 20)
        },
        onRequestUpgrade (controller, status, headers, socket) {
          events.push(`upgrade ${status} ${String(headers['x-tenant'])}`)
          socket.destroy()
          resolve()
        },
        onResponseStart (controller, status) {
          events.push(String(status))
          on(controller, events)
        },
        onResponseData () {},
        onResponseEnd () { events.push('end'); resolve() },
        onResponseError (controller, err) {
          events.push(`error ${err.message}`)
          on(controller, events)
          resolve()
        }
      })
    }))
    return events
  }
  t.same(await run({}, (controller) => { t.equal(controller.aborted, false); t.equal(controller.reason, null) }), ['start', '200', 'end'], 'one start and one answer for the caller, across the retry')
  t.equal(tokens.requests, 2, 'the refused token was exchanged again')
  t.same(await run({}, (controller) => { controller.abort(new Error('caller gave up')) }), ['start', '200', 'error caller gave up'])
  t.same(await run({ upgrade: 'websocket' }, () => {}), ['start', 'upgrade 101 acme'])
  // Refused before anything was sent: the controller it gets is inert.
  t.same(await run({}, (controller) => {
    controller.pause()
    controller.resume()
    controller.abort(new Error('late'))
    t.same([controller.paused, controller.aborted, controller.reason], [false, false, null])
  }, 'suspended-co'), ['error Tenant is suspended'])
  // A Client or Pool dispatches without naming the origin per request: nothing is added (compose on an Agent).
  const client = new Client(origin).compose(tenantPropagation({ origins: [{ origin, audience: 'comm' }], exchange: { registry: tokens.url, credential: CREDENTIAL } }))
  t.teardown(() => client.close())
  const res = await runAsTenant('acme', async () => await client.request({ path: '/', method: 'GET' }))
  t.equal(res.statusCode, 200)
  await res.body.dump()
})
