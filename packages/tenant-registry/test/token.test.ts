// One issuer and token exchange, end to end: the registry signs with an Ed25519 key and publishes
// it; a service registered by a platform admin exchanges its credential for a tenant-bound token;
// a Fastify app using the library's authPlugin with the registry's JWKS URL verifies that token.
// Every refusal the issue lists is tried: beyond the registration, roles, tenant states, revoked
// credentials and tokens that are not service credentials.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDecoder, createSigner } from 'fast-jwt'
import Fastify from 'fastify'
import { authPlugin, platformErrorHandler } from '@platform/multitenant/fastify'
import t from 'tap'
import { request } from 'undici'
import type { PlatformClaims } from '@platform/multitenant'
import { exchangeToken } from '../src/exchange.ts'
import { ensureSigningKey } from '../src/keys.ts'
import { bearer, startRegistry, tid } from './fixtures/registry.ts'

const decode = createDecoder({ complete: true })
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'

t.test('register → credential → exchange → a tenant-bound token a JWKS-configured service accepts', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'registry-keys-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const key = await ensureSigningKey(dir)
  const r = await startRegistry(t, { config: { jwt: { publicKey: key.publicKey, privateKey: key.privateKey }, baseDomain: 'example.com' } })
  const base = await r.app.listen({ port: 0, host: '127.0.0.1' })
  const issue = r.app.issuer as NonNullable<typeof r.app.issuer>
  const admin = issue({ sub: 'ops', roles: ['platform-admin'], scope: 'tenants:read tenants:write' })
  const inject = async (method: 'GET' | 'POST' | 'DELETE', url: string, token: string | undefined, body?: unknown): Promise<{ status: number, body: Record<string, unknown>, headers: Record<string, unknown> }> => {
    const res = await r.app.inject({ method, url, headers: token === undefined ? {} : bearer(token), ...(body === undefined ? {} : { payload: body as Record<string, unknown> }) })
    return { status: res.statusCode, body: res.json(), headers: res.headers }
  }

  // The published keys: the signing key's public half under its kid, cacheable, nothing private.
  const jwks = await request(`${base}/.well-known/jwks.json`)
  t.equal(jwks.statusCode, 200)
  t.match(String(jwks.headers['cache-control']), /^public, max-age=\d+$/)
  const keys = (await jwks.body.json() as { keys: Array<Record<string, unknown>> }).keys
  t.equal(keys.length, 1)
  t.match(keys[0], { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: String })
  t.notOk('d' in (keys[0] as object), 'no private member is published')

  const acme = tid('xacme')
  const sleepy = tid('xsleepy')
  const gone = tid('xgone')
  const pending = tid('xpending')
  for (const id of [acme, sleepy, gone, pending]) t.equal((await inject('POST', '/v1/tenants', admin, { id, name: id })).status, 201)
  t.equal((await inject('POST', `/v1/tenants/${sleepy}/suspend`, admin)).status, 200)
  t.equal((await inject('DELETE', `/v1/tenants/${gone}`, admin)).status, 200)
  await r.sql`update public.tenants set status = 'provisioning' where id = ${pending}`

  const registered = await inject('POST', '/v1/services', admin, { name: 'orders', scopes: ['messages:send', 'messages:read'], audiences: ['comm'] })
  t.equal(registered.status, 201)
  t.equal(registered.headers['cache-control'], 'no-store')
  const credential = registered.body.credential as { token: string, id: string }
  const credentialClaims = decode(credential.token) as { header: Record<string, unknown>, payload: Record<string, unknown> }
  t.match(credentialClaims.payload, { sub: 'svc:orders', roles: ['service'], scope: 'tokens:exchange tenants:read', jti: credential.id, iss: 'tenant-registry', aud: 'platform' })
  t.notOk('tenant' in credentialClaims.payload, 'a credential names no tenant')
  t.equal(credentialClaims.header.kid, keys[0]?.kid, 'signed under the published kid')

  // The exchange.
  const exchanged = await inject('POST', '/v1/token', credential.token, { grant_type: EXCHANGE, tenant: acme, audience: 'comm' })
  t.equal(exchanged.status, 200, JSON.stringify(exchanged.body))
  t.equal(exchanged.headers['cache-control'], 'no-store')
  t.match(exchanged.body, { token_type: 'Bearer', expires_in: 300, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', scope: 'messages:read messages:send' })
  const token = exchanged.body.access_token as string
  const { header, payload } = decode(token) as { header: Record<string, unknown>, payload: Record<string, number | string | object> }
  t.same({ alg: header.alg, kid: header.kid }, { alg: 'EdDSA', kid: keys[0]?.kid })
  t.match(payload, { sub: 'svc:orders', tenant: acme, roles: ['service'], scope: 'messages:read messages:send', aud: 'comm', act: { sub: 'svc:orders' }, iss: 'tenant-registry' })
  const lifetime = (payload.exp as number) - (payload.iat as number)
  t.ok(lifetime > 0 && lifetime <= 300, `lives at most five minutes (${lifetime} s)`)
  t.comment(`exchanged token lifetime: ${lifetime} s`)
  const narrow = await inject('POST', '/v1/token', credential.token, { tenant: acme, audience: 'comm', scope: 'messages:send', roles: ['service'], subject_token: credential.token })
  t.match(narrow.body, { scope: 'messages:send' }, 'a subset of the registered scopes; subject_token may repeat the bearer')
  t.equal((decode(narrow.body.access_token as string) as { payload: { scope: string } }).payload.scope, 'messages:send')

  // A service verifying through the registry's JWKS (the library's authPlugin, as every service).
  const comm = Fastify()
  comm.setErrorHandler(platformErrorHandler())
  await comm.register(authPlugin, { jwksUrl: `${base}/.well-known/jwks.json`, issuer: 'tenant-registry', audience: 'comm' })
  comm.get('/whoami', { config: { auth: { scope: 'messages:send' } } }, async (req) => req.claims)
  t.teardown(() => comm.close())
  const call = async (bearerToken: string): Promise<{ status: number, body: Record<string, unknown> }> => {
    const res = await comm.inject({ url: '/whoami', headers: bearer(bearerToken) })
    return { status: res.statusCode, body: res.json() }
  }
  t.match(await call(token), { status: 200, body: { sub: 'svc:orders', tenant: acme, roles: ['service'], act: { sub: 'svc:orders' } } }, 'verified through the JWKS')
  const forgedHs = createSigner({ key: 'a-shared-secret-someone-kept-0123456789', algorithm: 'HS256', kid: keys[0]?.kid as string, iss: 'tenant-registry', aud: 'comm', expiresIn: 60_000 })
  t.match(await call(forgedHs({ sub: 'svc:orders', tenant: acme, roles: ['service'], scope: 'messages:send' })), { status: 401, body: { code: 'UNAUTHORIZED' } }, 'an HS256 token is refused when verifying through JWKS')
  const confused = createSigner({ key: key.publicKey, algorithm: 'HS256', kid: keys[0]?.kid as string, iss: 'tenant-registry', aud: 'comm', expiresIn: 60_000 })
  t.match(await call(confused({ sub: 'svc:orders', tenant: acme, roles: ['service'], scope: 'messages:send' })), { status: 401 }, 'HS256 keyed with the published public key (algorithm confusion)')
  t.match(await call(credential.token), { status: 401 }, 'the credential itself is not for comm (audience platform)')

  // Refusals.
  const refused: Array<[string, string, Record<string, unknown>, number, string]> = [
    ['a scope beyond the registration', credential.token, { tenant: acme, audience: 'comm', scope: 'messages:send templates:write' }, 403, 'FORBIDDEN'],
    ['an audience beyond the registration', credential.token, { tenant: acme, audience: 'notes' }, 403, 'FORBIDDEN'],
    ['the platform-admin role', credential.token, { tenant: acme, audience: 'comm', roles: ['platform-admin'] }, 403, 'FORBIDDEN'],
    ['a tenant role (owner)', credential.token, { tenant: acme, audience: 'comm', roles: ['service', 'owner'] }, 403, 'FORBIDDEN'],
    ['platform-admin asked as a scope', credential.token, { tenant: acme, audience: 'comm', scope: 'platform-admin' }, 403, 'FORBIDDEN'],
    ['a suspended tenant', credential.token, { tenant: sleepy, audience: 'comm' }, 403, 'TENANT_SUSPENDED'],
    ['an archived tenant', credential.token, { tenant: gone, audience: 'comm' }, 404, 'TENANT_NOT_FOUND'],
    ['an unknown tenant', credential.token, { tenant: tid('nobody'), audience: 'comm' }, 404, 'TENANT_NOT_FOUND'],
    ['a tenant still provisioning', credential.token, { tenant: pending, audience: 'comm' }, 503, 'TENANT_UNAVAILABLE'],
    ['a tenant user\'s token', issue({ sub: 'alice', tenant: acme, roles: ['owner'], scope: 'tokens:exchange tenants:read' }), { tenant: acme, audience: 'comm' }, 403, 'FORBIDDEN'],
    ['a platform admin\'s token', issue({ sub: 'ops', roles: ['platform-admin'], scope: 'tokens:exchange' }), { tenant: acme, audience: 'comm' }, 403, 'FORBIDDEN'],
    ['a service-looking token with another role', issue({ sub: 'svc:orders', roles: ['service', 'admin'], scope: 'tokens:exchange', jti: credential.id }), { tenant: acme, audience: 'comm' }, 403, 'FORBIDDEN'],
    ['a service credential that was never issued', issue({ sub: 'svc:orders', roles: ['service'], scope: 'tokens:exchange', jti: '00000000-0000-4000-8000-000000000000' }), { tenant: acme, audience: 'comm' }, 401, 'UNAUTHORIZED'],
    ['a credential without the exchange scope', issue({ sub: 'svc:orders', roles: ['service'], scope: 'tenants:read', jti: credential.id }), { tenant: acme, audience: 'comm' }, 403, 'FORBIDDEN'],
    ['an exchanged token (audience comm)', token, { tenant: acme, audience: 'comm' }, 401, 'UNAUTHORIZED'],
    ['no audience', credential.token, { tenant: acme }, 400, 'VALIDATION_FAILED'],
    ['a bad tenant id', credential.token, { tenant: '../x', audience: 'comm' }, 400, 'VALIDATION_FAILED'],
    ['another grant type', credential.token, { grant_type: 'client_credentials', tenant: acme, audience: 'comm' }, 400, 'VALIDATION_FAILED'],
    ['a subject_token that is not the bearer', credential.token, { tenant: acme, audience: 'comm', subject_token: token }, 400, 'VALIDATION_FAILED'],
    ['an unknown field', credential.token, { tenant: acme, audience: 'comm', actor_token: 'x' }, 400, 'VALIDATION_FAILED']
  ]
  for (const [label, bearerToken, body, status, code] of refused) {
    const res = await inject('POST', '/v1/token', bearerToken, body)
    t.same([res.status, res.body.code], [status, code], label)
    t.notMatch(JSON.stringify(res.body), /access_token|select |at .*\.ts/, `${label}: no token, SQL or stack in the answer`)
  }
  t.equal((await inject('POST', '/v1/token', undefined, { tenant: acme, audience: 'comm' })).status, 401, 'no credential')
  t.equal((await inject('GET', `/v1/tenants/${acme}`, issue({ sub: 'svc:orders', roles: ['service'], scope: 'tenants:read' }))).status, 401, 'a service subject without a credential id is refused on any route')

  // An exchanged token whose audience is the registry's own is still not a credential.
  const relay = await inject('POST', '/v1/services', admin, { name: 'relay', scopes: ['tenants:read'], audiences: ['platform'] })
  const relayToken = (await inject('POST', '/v1/token', (relay.body.credential as { token: string }).token, { tenant: acme, audience: 'platform' })).body.access_token as string
  t.same((await inject('POST', '/v1/token', relayToken, { tenant: acme, audience: 'platform' })).body.code, 'FORBIDDEN', 'an exchanged token cannot be exchanged again')

  // Revocation: one credential, then the whole service; checked on exchange and on every route.
  const second = (await inject('POST', '/v1/services/orders/credentials', admin)).body as { token: string, id: string }
  t.equal((await inject('DELETE', `/v1/services/orders/credentials/${credential.id}`, admin)).status, 200)
  t.same((await inject('POST', '/v1/token', credential.token, { tenant: acme, audience: 'comm' })).body.code, 'UNAUTHORIZED', 'a revoked credential cannot exchange')
  t.equal((await inject('GET', `/v1/tenants/${acme}`, credential.token)).status, 401, 'nor read tenants')
  t.equal((await inject('POST', '/v1/token', second.token, { tenant: acme, audience: 'comm' })).status, 200, 'the other credential still works (rotation)')
  const third = (await inject('POST', '/v1/services/orders/credentials', admin)).body as { token: string }
  t.equal((await inject('DELETE', '/v1/services/orders', admin)).body.status, 'revoked')
  t.same((await inject('POST', '/v1/token', second.token, { tenant: acme, audience: 'comm' })).body.code, 'UNAUTHORIZED', 'a revoked service cannot exchange')
  t.equal((await inject('GET', `/v1/tenants/${acme}`, third.token)).status, 401, 'nor use any credential on the registry')
  t.match(await call(token), { status: 200 }, 'tokens already exchanged run out on their own (≤ 5 min)')
  // The exchange asks the database itself too (the route's credential check is a separate layer).
  const revokedClaims = { ...(decode(second.token) as { payload: Record<string, unknown> }).payload, roles: ['service'], scope: 'tokens:exchange tenants:read' } as unknown as PlatformClaims
  await t.rejects(exchangeToken({ services: r.app.services, tenants: r.app.tenants, issue, ttl: 300 }, revokedClaims, { tenant: acme, audience: 'comm' }), { code: 'UNAUTHORIZED' })
})
