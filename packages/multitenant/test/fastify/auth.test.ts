// Token verification in the library: a shared secret, a public key, or an identity provider's
// JWKS (served here by a real HTTP server with rotating keys), with the issuer's claims mapped to
// the platform's and each route's scopes and roles checked.
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { Writable } from 'node:stream'
import pino from 'pino'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { createSigner } from 'fast-jwt'
import t, { type Test } from 'tap'
import { multitenantPlugin, platformErrorHandler, withTenant, type AuthOptions } from '../../src/fastify/plugin.ts'
import { mapClaims } from '../../src/fastify/auth.ts'
import type { Tenant } from '../../src/types.ts'
import { makeTenant } from '../fixtures/tenants.ts'

const SECRET = 'auth-test-secret-0123456789abcdef'
const tenants = new Map<string, Tenant>([['acme', makeTenant('acme')], ['globex', makeTenant('globex')]])
const provider = { getTenant: (id: string) => tenants.get(id) ?? null }

async function app (t: Test, auth: AuthOptions, logs?: Writable): Promise<FastifyInstance> {
  const fastify: FastifyInstance = Fastify(logs === undefined ? {} : { loggerInstance: pino({ level: 'info' }, logs) as FastifyBaseLogger })
  fastify.setErrorHandler(platformErrorHandler())
  await fastify.register(multitenantPlugin, { provider, auth })
  fastify.get('/health', async () => ({ ok: true }))
  fastify.get('/open', { config: { auth: false, tenant: false } }, async () => ({ open: true }))
  fastify.get('/notes', { config: { auth: { scope: 'notes:read' } } }, withTenant(async (request) => ({ tenant: request.tenant.id, sub: request.claims?.sub, roles: request.claims?.roles })))
  fastify.post('/notes/purge', { config: { auth: { scope: ['notes:read', 'notes:write'], roles: ['owner', 'admin'] } } }, withTenant(async () => ({ purged: true })))
  fastify.get('/platform', { config: { auth: { scope: 'tenants:read', admin: true }, tenant: false } }, async () => ({ admin: true }))
  fastify.get('/any', async (request) => ({ tenant: request.tenant?.id ?? null }))
  fastify.get('/tenant-admin', { config: { auth: { scope: 'tenants:read', admin: true } } }, withTenant(async (request) => ({ tenant: request.tenant.id })))
  t.teardown(() => fastify.close())
  await fastify.ready()
  return fastify
}

const base = { sub: 'user-1', roles: ['member'], scope: 'notes:read' }

t.test('a shared secret: missing, forged, expired, odd-shaped and under-scoped tokens are refused', async (t) => {
  const sign = createSigner({ key: SECRET, iss: 'tenant-registry', aud: 'platform', expiresIn: 60_000 })
  const a = await app(t, { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' })
  const call = async (url: string, token: string | undefined, tenantId = 'acme', method: 'GET' | 'POST' = 'GET'): Promise<{ status: number, code?: string, body: Record<string, unknown> }> => {
    const res = await a.inject({ method, url, headers: { ...(tenantId === '' ? {} : { 'x-tenant-id': tenantId }), ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) } })
    const body = res.json() as Record<string, unknown>
    return { status: res.statusCode, code: body.code as string | undefined, body }
  }
  t.match(await call('/notes', sign({ ...base, tenant: 'acme' })), { status: 200, body: { tenant: 'acme', sub: 'user-1', roles: ['member'] } })
  t.match(await call('/notes', undefined), { status: 401, code: 'UNAUTHORIZED' })
  t.match(await call('/notes', 'not.a.token'), { status: 401, code: 'UNAUTHORIZED' })
  const forged = createSigner({ key: 'another-secret-0123456789abcdef', iss: 'tenant-registry', aud: 'platform' })
  t.match(await call('/notes', forged({ ...base, tenant: 'acme' })), { status: 401 }, 'signed with another key')
  t.match(await call('/notes', createSigner({ key: SECRET, iss: 'someone-else', aud: 'platform', expiresIn: 60_000 })({ ...base, tenant: 'acme' })), { status: 401 }, 'another issuer')
  t.match(await call('/notes', createSigner({ key: SECRET, iss: 'tenant-registry', aud: 'elsewhere', expiresIn: 60_000 })({ ...base, tenant: 'acme' })), { status: 401 }, 'another audience')
  t.match(await call('/notes', createSigner({ key: SECRET, iss: 'tenant-registry', aud: 'platform' })({ ...base, tenant: 'acme' })), { status: 401 }, 'no expiry')
  t.match(await call('/notes', createSigner({ key: SECRET, iss: 'tenant-registry', aud: 'platform', expiresIn: 1 })({ ...base, tenant: 'acme', iat: 1 })), { status: 401 }, 'expired')
  t.match(await call('/notes', createSigner({ algorithm: 'none', iss: 'tenant-registry', aud: 'platform', expiresIn: 60_000 } as never)({ ...base, tenant: 'acme' })), { status: 401 }, 'alg none')
  t.match(await call('/notes', sign({ ...base, roles: 'owner', tenant: 'acme' })), { status: 401 }, 'roles as a string')
  t.match(await call('/notes', sign({ ...base, tenant: '../globex' })), { status: 401 }, 'a tenant claim that is not an id')
  t.match(await call('/notes', sign({ ...base, tenant: 'acme', scope: 'notes:write' })), { status: 403, code: 'FORBIDDEN' }, 'scope missing')
  t.match(await call('/notes', sign({ ...base, tenant: 'acme', scope: 'notes:readonly' })), { status: 403 }, 'a scope is a whole word')
  t.match(await call('/notes', sign({ ...base, tenant: 'globex' })), { status: 403, code: 'TENANT_MISMATCH' }, 'the header names another tenant than the token')
  t.match(await call('/notes', sign({ ...base, tenant: 'acme' }), ''), { status: 200, body: { tenant: 'acme' } }, 'no header: the token names the tenant')
  t.match(await call('/notes/purge', sign({ ...base, tenant: 'acme', scope: 'notes:read notes:write' }), 'acme', 'POST'), { status: 403, code: 'FORBIDDEN' }, 'roles checked')
  t.match(await call('/notes/purge', sign({ ...base, roles: ['admin'], tenant: 'acme', scope: 'notes:read notes:write' }), 'acme', 'POST'), { status: 200 })
  t.match(await call('/notes/purge', sign({ ...base, roles: ['admin'], tenant: 'acme', scope: 'notes:read' }), 'acme', 'POST'), { status: 403 }, 'every scope listed')
  t.match(await call('/platform', sign({ ...base, roles: ['platform-admin'], scope: 'tenants:read' })), { status: 200 })
  t.match(await call('/platform', sign({ ...base, roles: ['platform-admin'], scope: 'tenants:read', tenant: 'acme' })), { status: 403 }, 'a tenant token is not a platform token')
  t.match(await call('/health', undefined), { status: 200 }, 'excluded paths need no token')
  t.match(await call('/open', undefined), { status: 200 }, 'config.auth false opens a route')
  t.match(await call('/any', undefined), { status: 401 }, 'routes need a token by default')
  t.equal((await a.inject({ url: '/missing' })).statusCode, 404, 'an unknown route is a 404, token or not')
})

t.test('a token without a tenant acts on one only as a platform admin on an admin route', async (t) => {
  const sign = createSigner({ key: SECRET, iss: 'tenant-registry', aud: 'platform', expiresIn: 60_000 })
  const lines: Array<Record<string, unknown>> = []
  const a = await app(t, { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' }, new Writable({ write (chunk: Buffer, _e, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb() } }))
  const call = async (url: string, token: string, tenantId?: string): Promise<{ status: number, body: Record<string, unknown> }> => {
    const res = await a.inject({ url, headers: { authorization: `Bearer ${token}`, ...(tenantId === undefined ? {} : { 'x-tenant-id': tenantId }) } })
    return { status: res.statusCode, body: res.json() }
  }
  // The attack of issue 18: a service's own token (any tenantless token with the scope) plus a header.
  const service = sign({ sub: 'svc:orders', roles: ['service'], scope: 'notes:read tenants:read' })
  t.match(await call('/notes', service, 'acme'), { status: 403, body: { code: 'FORBIDDEN', message: /platform admin/ } }, 'a tenantless service token + X-Tenant-ID')
  t.match(await call('/notes', sign({ sub: 'nobody', roles: [], scope: 'notes:read' }), 'globex'), { status: 403, body: { code: 'FORBIDDEN' } }, 'a tenantless token with no role')
  const admin = sign({ sub: 'ops', roles: ['platform-admin'], scope: 'notes:read tenants:read' })
  t.match(await call('/notes', admin, 'acme'), { status: 403, body: { code: 'FORBIDDEN' } }, 'a platform admin, on a route that does not admit admins')
  t.match(await call('/tenant-admin', admin, 'acme'), { status: 200, body: { tenant: 'acme' } }, 'a platform admin on an admin route acts on the tenant it names')
  t.match(await call('/tenant-admin', service, 'acme'), { status: 403, body: { code: 'FORBIDDEN' } }, 'a service token on an admin route')
  t.match(await call('/notes', service), { status: 400, body: { code: 'TENANT_REQUIRED' } }, 'no header: no tenant')
  // A tenant-bound service token (what the token exchange issues) acts on its own tenant only.
  const bound = sign({ sub: 'svc:orders', tenant: 'acme', roles: ['service'], scope: 'notes:read', act: { sub: 'svc:orders' } })
  t.match(await call('/notes', bound, 'acme'), { status: 200, body: { tenant: 'acme', sub: 'svc:orders' } })
  t.match(await call('/notes', bound), { status: 200, body: { tenant: 'acme' } })
  t.match(await call('/notes', bound, 'globex'), { status: 403, body: { code: 'TENANT_MISMATCH' } })
  // Log lines carry the actor: the service behind an exchanged token, else the subject.
  t.match(await call('/notes', sign({ ...base, tenant: 'acme' }), 'acme'), { status: 200 })
  const completed = lines.filter((l) => l.msg === 'request completed' && l.tenant !== undefined)
  t.same(completed.map((l) => [l.tenant, l.actor]), [['acme', 'ops'], ['acme', 'svc:orders'], ['acme', 'svc:orders'], ['acme', 'user-1']])
})

t.test('optional routes verify a token when one is sent', async (t) => {
  const sign = createSigner({ key: SECRET, iss: 'i', aud: 'a', expiresIn: 60_000 })
  const a = await app(t, { secret: SECRET, issuer: 'i', audience: 'a', routes: 'optional' })
  t.equal((await a.inject({ url: '/any', headers: { 'x-tenant-id': 'acme' } })).statusCode, 200)
  t.equal((await a.inject({ url: '/any', headers: { 'x-tenant-id': 'acme', authorization: 'Bearer junk' } })).statusCode, 401)
  t.equal((await a.inject({ url: '/any', headers: { 'x-tenant-id': 'acme', authorization: `Bearer ${sign({ ...base, tenant: 'globex' })}` } })).json().code, 'TENANT_MISMATCH')
})

t.test('a public key (RS256)', async (t) => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const sign = createSigner({ key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, algorithm: 'RS256', iss: 'i', aud: 'a', expiresIn: 60_000 })
  const a = await app(t, { publicKey: publicKey.export({ type: 'spki', format: 'pem' }) as string, issuer: 'i', audience: 'a' })
  t.equal((await a.inject({ url: '/notes', headers: { 'x-tenant-id': 'acme', authorization: `Bearer ${sign({ ...base, tenant: 'acme' })}` } })).statusCode, 200)
  // Algorithm confusion: an HMAC token keyed with the public key's text.
  const confused = createSigner({ key: publicKey.export({ type: 'spki', format: 'pem' }) as string, algorithm: 'HS256', iss: 'i', aud: 'a', expiresIn: 60_000 })
  t.equal((await a.inject({ url: '/notes', headers: { 'x-tenant-id': 'acme', authorization: `Bearer ${confused({ ...base, tenant: 'acme' })}` } })).statusCode, 401, 'HS256 with the public key as secret is refused')
})

t.test('an identity provider\'s JWKS: Keycloak-shaped claims, key rotation, made-up key ids', async (t) => {
  const keys: Array<{ kid: string, publicKey: KeyObject, privateKey: KeyObject }> = []
  const addKey = (kid: string): (payload: Record<string, unknown>) => string => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    keys.push({ kid, ...pair })
    return createSigner({ key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, algorithm: 'ES256', kid, iss: 'https://idp.test/realms/platform', aud: 'notes-service', expiresIn: 60_000 })
  }
  let fetches = 0
  const idp = Fastify()
  idp.get('/realms/platform/protocol/openid-connect/certs', async () => {
    fetches++
    return { keys: keys.map(({ kid, publicKey }) => ({ ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' })) }
  })
  await idp.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => idp.close())
  const jwksUrl = `http://127.0.0.1:${(idp.server.address() as { port: number }).port}/realms/platform/protocol/openid-connect/certs`
  const first = addKey('key-1')
  const a = await app(t, {
    jwksUrl,
    jwksCooldown: 300,
    issuer: 'https://idp.test/realms/platform',
    audience: 'notes-service',
    // Keycloak: a user attribute mapped to tenant_id, realm roles, space-separated scope.
    claims: { tenant: 'tenant_id', roles: 'realm_access.roles' }
  })
  const keycloak = (tenantId: string, roles: string[] = ['member']): Record<string, unknown> =>
    ({ sub: 'kc-user', tenant_id: tenantId, realm_access: { roles }, scope: 'openid notes:read', tenant: 'globex', roles: ['platform-admin'] })
  const get = async (token: string, tenantId = 'acme'): Promise<{ statusCode: number, json: () => Record<string, unknown> }> =>
    await a.inject({ url: '/notes', headers: { 'x-tenant-id': tenantId, authorization: `Bearer ${token}` } })

  const ok = await get(first(keycloak('acme')))
  t.equal(ok.statusCode, 200)
  t.match(ok.json(), { tenant: 'acme', roles: ['member'] }, 'tenant and roles come from the mapped claims, not same-named ones')
  t.equal((await get(first(keycloak('acme')), 'globex')).json().code, 'TENANT_MISMATCH', 'the mapped tenant claim is the one that must agree')
  t.equal(fetches, 1)

  // Rotation: the provider publishes a new key and signs with it; no restart.
  const second = addKey('key-2')
  await new Promise((resolve) => setTimeout(resolve, 350)) // past the cooldown
  t.equal((await get(second(keycloak('acme')))).statusCode, 200, 'a token signed with the new key is accepted')
  t.equal(fetches, 2, 'the set was fetched again for the unknown kid')
  t.equal((await get(first(keycloak('acme')))).statusCode, 200, 'the old key still works while published')

  // Made-up key ids: refused, and they do not make every request fetch the set.
  const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const forge = (kid: string): string => createSigner({ key: stranger.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, algorithm: 'ES256', kid, iss: 'https://idp.test/realms/platform', aud: 'notes-service', expiresIn: 60_000 })(keycloak('acme'))
  await new Promise((resolve) => setTimeout(resolve, 350))
  const before = fetches
  for (let i = 0; i < 50; i++) t.equal((await get(forge(`made-up-${i}`))).statusCode, 401)
  t.ok(fetches - before <= 1, `50 made-up kids cost ${fetches - before} fetch(es)`)
  t.equal((await get(forge('key-1'))).statusCode, 401, 'a known kid with another key\'s signature is refused')
})

t.test('mapClaims: dotted paths, names with dots, functions, scp arrays', async (t) => {
  t.same(mapClaims({ sub: 's', 'https://acme.test/tenant': 'acme', scp: ['a', 'b'] }, { tenant: 'https://acme.test/tenant', scope: 'scp' }),
    { sub: 's', 'https://acme.test/tenant': 'acme', scp: ['a', 'b'], tenant: 'acme', scope: 'a b' })
  t.same(mapClaims({ sub: 's', 'cognito:groups': ['owner'], 'custom:tenant': 'acme' }, { tenant: 'custom:tenant', roles: 'cognito:groups' }),
    { sub: 's', 'cognito:groups': ['owner'], 'custom:tenant': 'acme', tenant: 'acme', roles: ['owner'] })
  t.same(mapClaims({ sub: 's', org: { id: 'acme' } }, { tenant: (p) => (p.org as { id: string }).id }), { sub: 's', org: { id: 'acme' }, tenant: 'acme' })
  t.same(mapClaims({ sub: 's', a: { b: 1 } }, { tenant: 'a.c.d', roles: 'a.b.c' }), { sub: 's', a: { b: 1 } }, 'a missing path is no claim')
  t.same(mapClaims({ sub: 's', tenant: 'acme', roles: ['x'], scope: 'y' }), { sub: 's', tenant: 'acme', roles: ['x'], scope: 'y' }, 'the platform\'s names by default')
  t.same(mapClaims({ sub: 's', scope: ['a'] }), { sub: 's', scope: ['a'] }, 'the platform\'s own scope claim is not joined: an array there is refused')
  t.same(mapClaims({ sub: 's', __proto__: { tenant: 'evil' } } as Record<string, unknown>, {}), { sub: 's' }, 'inherited properties are not claims')
})

t.test('auth options are checked at start; roles-only rules; a signing key pair; no cache', async (t) => {
  const start = async (auth: AuthOptions): Promise<unknown> => {
    const fastify = Fastify()
    fastify.register(multitenantPlugin, { provider, auth })
    try {
      await fastify.ready()
      return undefined
    } catch (err) {
      return err
    } finally {
      await fastify.close()
    }
  }
  t.match(await start({ secret: SECRET, issuer: [], audience: 'a' }), { message: /auth.issuer/ })
  t.match(await start({ secret: SECRET, issuer: 'i', audience: [''] }), { message: /auth.audience/ })
  t.match(await start({ secret: SECRET, issuer: 'i', audience: 'a', routes: 'sometimes' as never }), { message: /auth.routes/ })
  t.match(await start({ secret: SECRET, publicKey: 'x', issuer: 'i', audience: 'a' }), { message: /exactly one/ })

  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
  const fastify = Fastify()
  fastify.setErrorHandler(platformErrorHandler())
  await fastify.register(multitenantPlugin, { provider, auth: { publicKey, privateKey, issuer: ['i', 'j'], audience: 'a', cache: 0 } })
  fastify.get('/owners', { config: { auth: { roles: ['owner'] } } }, async (request) => ({ sub: request.claims?.sub }))
  t.teardown(() => fastify.close())
  await fastify.ready()
  const signed = (fastify as unknown as { jwt: { sign: (p: object) => string } }).jwt.sign({ sub: 'me', tenant: 'acme', roles: ['owner'] })
  t.same((await fastify.inject({ url: '/owners', headers: { authorization: `Bearer ${signed}` } })).json(), { sub: 'me' }, 'the app signs with the private key (first issuer) and verifies with the public one')
  const member = (fastify as unknown as { jwt: { sign: (p: object) => string } }).jwt.sign({ sub: 'me', tenant: 'acme', roles: ['member'] })
  t.equal((await fastify.inject({ url: '/owners', headers: { authorization: `Bearer ${member}` } })).json().code, 'FORBIDDEN', 'a roles-only rule')
})

t.test('JWKS: a token without a key id is refused without a fetch', async (t) => {
  let fetches = 0
  const idp = Fastify()
  idp.get('/certs', async () => { fetches++; return { keys: [] } })
  await idp.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => idp.close())
  const a = await app(t, { jwksUrl: `http://127.0.0.1:${(idp.server.address() as { port: number }).port}/certs`, issuer: 'i', audience: 'a' })
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const noKid = createSigner({ key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, algorithm: 'ES256', iss: 'i', aud: 'a', expiresIn: 60_000 })({ ...base, tenant: 'acme' })
  t.equal((await a.inject({ url: '/notes', headers: { 'x-tenant-id': 'acme', authorization: `Bearer ${noKid}` } })).statusCode, 401)
  t.equal(fetches, 0)
})
