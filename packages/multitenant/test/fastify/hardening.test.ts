// Resolution fails closed against odd-shaped claims, path variants the router still matches,
// authentication registered on the route, and pipelined requests on one connection.
import { connect } from 'node:net'
import fastifyJwt from '@fastify/jwt'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import t, { type Test } from 'tap'
import { assertClaims, hasRole, hasScope } from '../../src/claims.ts'
import { currentTenantId } from '../../src/context.ts'
import { multitenantPlugin, routedPath, type MultitenantPluginOptions } from '../../src/fastify/plugin.ts'
import { MemoryProvider, makeTenant } from '../fixtures/tenants.ts'

const provider = (): MemoryProvider => new MemoryProvider([makeTenant('acme'), makeTenant('globex')])
const SECRET = 'a-secret-that-is-long-enough-for-hs256-tokens!'

t.test('claims of the wrong shape are refused, never half-read', async (t) => {
  const base = { sub: 'u', iss: 'tenant-registry', aud: 'platform', exp: 2_000_000_000 }
  t.match(assertClaims({ ...base, roles: ['platform-admin'], scope: 'a b' }), { roles: ['platform-admin'], scope: 'a b' })
  t.same(assertClaims(base).roles, [], 'no roles: an empty list')
  t.same(assertClaims({ ...base, aud: ['platform', 'other'] }).aud, ['platform', 'other'], 'an audience list')
  const bad: Array<[string, unknown]> = [
    ['roles as a string', { ...base, roles: 'not-platform-admin' }],
    ['roles with a non-string', { ...base, roles: ['owner', 1] }],
    ['roles as an object', { ...base, roles: { 0: 'platform-admin' } }],
    ['scope as an array', { ...base, scope: ['tenants:read'] }],
    ['tenant not an id', { ...base, tenant: 'Acme Corp' }],
    ['tenant as an array', { ...base, tenant: ['acme'] }],
    ['tenant reserved', { ...base, tenant: 'admin' }],
    ['no sub', { ...base, sub: undefined }],
    ['empty sub', { ...base, sub: '' }],
    ['no iss', { ...base, iss: undefined }],
    ['no aud', { ...base, aud: undefined }],
    ['aud as a number', { ...base, aud: 7 }],
    ['aud an empty list', { ...base, aud: [] }],
    ['aud a list with a number', { ...base, aud: ['platform', 7] }],
    ['no exp', { ...base, exp: undefined }],
    ['exp as a string', { ...base, exp: '2000000000' }],
    ['not an object', 'claims'],
    ['an array', [base]],
    ['null', null]
  ]
  for (const [what, claims] of bad) t.throws(() => assertClaims(claims), { code: 'UNAUTHORIZED', statusCode: 401 }, what)
  t.notOk(hasRole(assertClaims({ ...base, roles: ['not-platform-admin'] }), 'platform-admin'), 'roles match whole elements only')
  t.notOk(hasScope(assertClaims({ ...base, scope: 'tenants:readwrite' }), 'tenants:read'), 'scopes match whole words only')
})

t.test('the path strategy reads the path the way the router matched it', async (t) => {
  t.equal(routedPath('http://evil.example/tenants/globex/x?y=1'), '/tenants/globex/x')
  t.equal(routedPath('https://h:8443'), '/')
  t.equal(routedPath('*'), '/', 'an asterisk-form target names no path')
  t.equal(routedPath('//tenants//globex/x', true), '/tenants/globex/x')
  t.equal(routedPath('/tenants//globex/x'), '/tenants//globex/x', 'folded only when the router folds')
  t.equal(routedPath('/tenants/acme?q=/tenants/globex'), '/tenants/acme')

  async function build (t: Test, routerOptions: Record<string, unknown>): Promise<FastifyInstance> {
    const app = Fastify({ routerOptions } as Record<string, unknown>) as unknown as FastifyInstance
    t.teardown(() => app.close())
    await app.register(fastifyJwt, { secret: SECRET })
    app.addHook('onRequest', async (request: FastifyRequest) => { if (request.headers.authorization !== undefined) await request.jwtVerify() })
    await app.register(multitenantPlugin, { provider: provider(), strategies: ['token', 'path'] })
    app.get('/tenants/:tid/things', async (request) => ({ tenant: currentTenantId(), param: (request.params as { tid: string }).tid }))
    await app.listen({ port: 0, host: '127.0.0.1' })
    return app
  }
  const app = await build(t, { ignoreDuplicateSlashes: true, caseSensitive: false })
  const token = app.jwt.sign({ sub: 'u', tenant: 'acme' })
  const port = (app.server.address() as { port: number }).port
  /** Sends a raw request line (absolute-form targets cannot go through inject). */
  const raw = async (target: string): Promise<number> => await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (chunk) => { data += chunk.toString() })
    socket.on('end', () => resolve(Number(data.slice(9, 12))))
    socket.on('error', reject)
    socket.end(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`)
  })
  t.equal(await raw('/tenants/acme/things'), 200, 'the token\'s own tenant in the path')
  t.equal(await raw('/tenants/globex/things'), 403, 'another tenant in the path: mismatch')
  for (const target of ['http://127.0.0.1/tenants/globex/things', '//tenants/globex/things', '/tenants//globex/things', '/TENANTS/globex/things', '/Tenants/globex/things']) {
    const status = await raw(target)
    t.ok(status === 403 || status === 404, `${target}: ${status}, never served as acme with globex in the path`)
  }
  t.equal(await raw('/tenants/GLOBEX/things'), 400, 'an upper-case id is not an id')
})

t.test('a token nobody verified before resolution fails the request', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyJwt, { secret: SECRET })
  await app.register(multitenantPlugin, { provider: provider() } satisfies MultitenantPluginOptions)
  // Authentication on the route runs after the plugin's route-level resolution.
  app.get('/late', { onRequest: async (request) => { await request.jwtVerify() } }, async () => ({ tenant: currentTenantId() }))
  const token = app.jwt.sign({ sub: 'u', tenant: 'acme' })
  const res = await app.inject({ url: '/late', headers: { authorization: `Bearer ${token}`, 'x-tenant-id': 'globex' } })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'UNAUTHORIZED', 'not served as globex from the header')
  t.equal((await app.inject({ url: '/late', headers: { 'x-tenant-id': 'globex' } })).statusCode, 500 - 99, 'no Authorization: the route\'s own auth answers (401)')
})

t.test('pipelined requests on one connection never see the previous one\'s tenant', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const seen: Array<string | null> = []
  // An instance-level hook runs before the plugin's route-level resolution.
  app.addHook('onRequest', async () => { seen.push(currentTenantId() ?? null) })
  await app.register(multitenantPlugin, { provider: provider() })
  app.get('/things', async () => ({ tenant: currentTenantId() }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const count = 20
  const body = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (chunk) => {
      data += chunk.toString()
      if ((data.match(/HTTP\/1\.1 200/g) ?? []).length === count) { socket.end(); resolve(data) }
    })
    socket.on('error', reject)
    // One write: the server parses all of them in one go.
    socket.write(Array.from({ length: count }, (_, i) => `GET /things HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: ${i % 2 === 0 ? 'acme' : 'globex'}\r\n\r\n`).join(''))
  })
  const answers = [...body.matchAll(/"tenant":"([a-z]+)"/g)].map((m) => m[1])
  t.same(answers, Array.from({ length: count }, (_, i) => i % 2 === 0 ? 'acme' : 'globex'), 'each answer is its own request\'s')
  t.same(seen, Array.from({ length: count }, () => null), 'instance-level hooks before resolution see no tenant')
})

t.test('pipelined requests on one keep-alive connection: every instance-level hook sees its own request\'s tenant', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const wrong: string[] = []
  let checked = 0
  const tenants = ['acme', 'globex', 'initech', 'hooli']
  const pause = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
  // Registered by the user on the instance, outside the plugin, each awaiting something real.
  const check = (name: string) => async (request: FastifyRequest): Promise<void> => {
    await pause(Number(request.headers['x-delay'] ?? 0))
    const expected = request.headers['x-tenant-id'] as string
    checked++
    if (currentTenantId() !== expected) wrong.push(`${name}: ${String(currentTenantId())} in ${expected}'s request`)
    if (request.tenant?.id !== expected) wrong.push(`${name}: request.tenant ${String(request.tenant?.id)} in ${expected}'s request`)
  }
  await app.register(multitenantPlugin, { provider: new MemoryProvider(tenants.map((id) => makeTenant(id))) })
  app.addHook('preParsing', async (request, _reply, payload) => { await check('preParsing')(request); return payload })
  app.addHook('preValidation', check('preValidation'))
  app.addHook('preHandler', check('preHandler'))
  app.addHook('preSerialization', async (request, _reply, payload: unknown) => { await check('preSerialization')(request); return payload })
  app.addHook('onSend', async (request, _reply, payload) => { await check('onSend')(request); return payload })
  app.addHook('onResponse', check('onResponse'))
  app.post('/things', async (request) => {
    await pause(1)
    return { tenant: currentTenantId(), body: request.body }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const count = 24
  const expected = Array.from({ length: count }, (_, i) => tenants[i % tenants.length] as string)
  const body = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (chunk) => {
      data += chunk.toString()
      if ((data.match(/HTTP\/1\.1 200/g) ?? []).length === count) { socket.end(); resolve(data) }
    })
    socket.on('error', reject)
    // Back to back on one connection, in one write; earlier requests wait longer in their hooks,
    // so the server has the later ones parsed while the earlier ones are still in flight.
    socket.write(expected.map((tenant, i) => {
      const json = JSON.stringify({ n: i, pad: 'x'.repeat(i % 3 === 0 ? 70_000 : 10) })
      return `POST /things HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: ${tenant}\r\nX-Delay: ${(count - i) % 5}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`
    }).join(''))
  })
  await pause(20) // the last onResponse hooks
  const answers = [...body.matchAll(/"tenant":"([a-z]+)"/g)].map((m) => m[1])
  t.same(answers, expected, 'each answer is its own request\'s')
  t.equal(checked, count * 6, 'six hooks ran for every request')
  t.same(wrong.slice(0, 10), [], 'no hook saw another request\'s tenant')
})

t.test('a request its client aborts: onRequestAbort hooks see that request\'s tenant', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(multitenantPlugin, { provider: provider() })
  const seen = Promise.withResolvers<string | null>()
  app.addHook('onRequestAbort', async (_request) => { seen.resolve(currentTenantId() ?? null) })
  const started = Promise.withResolvers<void>()
  app.get('/slow', async () => {
    started.resolve()
    await new Promise((resolve) => setTimeout(resolve, 200))
    return { ok: true }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = connect((app.server.address() as { port: number }).port, '127.0.0.1')
  socket.on('error', () => {})
  socket.write('GET /slow HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: globex\r\n\r\n')
  await started.promise
  socket.destroy()
  t.equal(await seen.promise, 'globex')
})
