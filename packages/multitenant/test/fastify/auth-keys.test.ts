// Verification against key sets: an issuer's published Ed25519 keys fetched by URL (get-jwks'
// converter knows only RSA and EC), and a key set held in memory (an issuer verifying its own
// tokens, several keys during a rotation), picked by `kid`.
import { generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import { createSigner } from 'fast-jwt'
import t, { type Test } from 'tap'
import { multitenantPlugin, platformErrorHandler, withTenant, type AuthOptions } from '../../src/fastify/plugin.ts'
import type { Tenant } from '../../src/types.ts'
import { makeTenant } from '../fixtures/tenants.ts'

const tenants = new Map<string, Tenant>([['acme', makeTenant('acme')]])
const provider = { getTenant: (id: string) => tenants.get(id) ?? null }
const claims = { sub: 'user-1', roles: ['member'], scope: 'notes:read', tenant: 'acme' }

async function app (t: Test, auth: AuthOptions): Promise<FastifyInstance> {
  const fastify = Fastify()
  fastify.setErrorHandler(platformErrorHandler())
  await fastify.register(multitenantPlugin, { provider, auth })
  fastify.get('/notes', { config: { auth: { scope: 'notes:read' } } }, withTenant(async (request) => ({ tenant: request.tenant.id, sub: request.claims?.sub })))
  t.teardown(() => fastify.close())
  await fastify.ready()
  return fastify
}

const pem = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }) as string
const jwkOf = (key: KeyObject, kid: string, alg?: string): JsonWebKey => ({ ...key.export({ format: 'jwk' }), kid, ...(alg === undefined ? {} : { alg }), use: 'sig' })
const signer = (key: KeyObject | string, algorithm: string, kid?: string) =>
  createSigner({ key: typeof key === 'string' ? key : pem(key), algorithm: algorithm as 'EdDSA', ...(kid === undefined ? {} : { kid }), iss: 'tenant-registry', aud: 'platform', expiresIn: 60_000 })

const status = async (a: FastifyInstance, token: string): Promise<number> =>
  (await a.inject({ url: '/notes', headers: { 'x-tenant-id': 'acme', authorization: `Bearer ${token}` } })).statusCode

t.test('JWKS by URL: an Ed25519 (OKP) key verifies; an HS256 token naming its kid does not', async (t) => {
  const ed = generateKeyPairSync('ed25519')
  const issuer = Fastify()
  issuer.get('/.well-known/jwks.json', async () => ({ keys: [jwkOf(ed.publicKey, 'ed-1', 'EdDSA')] }))
  await issuer.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => issuer.close())
  const a = await app(t, { jwksUrl: `http://127.0.0.1:${(issuer.server.address() as { port: number }).port}/.well-known/jwks.json`, issuer: 'tenant-registry', audience: 'platform' })
  t.equal(await status(a, signer(ed.privateKey, 'EdDSA', 'ed-1')(claims)), 200)
  t.equal(await status(a, signer(ed.privateKey, 'EdDSA', 'ed-1')(claims)), 200, 'again, from the cache')
  t.equal(await status(a, signer('some-shared-secret-0123456789abcdef', 'HS256', 'ed-1')(claims)), 401, 'HS256 with the published kid')
})

t.test('a key set in memory: keys picked by kid, several during a rotation', async (t) => {
  const ed = generateKeyPairSync('ed25519')
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const a = await app(t, { jwks: { keys: [jwkOf(ed.publicKey, 'new', 'EdDSA'), jwkOf(rsa.publicKey, 'old')] }, issuer: 'tenant-registry', audience: 'platform' })
  t.equal(await status(a, signer(ed.privateKey, 'EdDSA', 'new')(claims)), 200, 'the current key')
  t.equal(await status(a, signer(rsa.privateKey, 'RS256', 'old')(claims)), 200, 'the retiring key (no alg in its JWK)')
  t.equal(await status(a, signer(ed.privateKey, 'EdDSA')(claims)), 401, 'no kid')
  t.equal(await status(a, signer(ed.privateKey, 'EdDSA', 'other')(claims)), 401, 'an unknown kid')
  t.equal(await status(a, signer(rsa.privateKey, 'RS256', 'new')(claims)), 401, 'a kid whose key has another algorithm')
  t.equal(await status(a, signer(ed.publicKey.export({ type: 'spki', format: 'pem' }) as string, 'HS256', 'old')(claims)), 401, 'HS256 keyed with a public key (algorithm confusion)')
})

t.test('a key set in memory: bad sets are refused at start-up', async (t) => {
  const ed = generateKeyPairSync('ed25519')
  const cases: Array<[string, AuthOptions, RegExp]> = [
    ['an empty set', { jwks: { keys: [] }, issuer: 'i', audience: 'a' }, /at least one key/],
    ['no keys array', { jwks: {} as never, issuer: 'i', audience: 'a' }, /at least one key/],
    ['a key without kid', { jwks: { keys: [{ ...ed.publicKey.export({ format: 'jwk' }) }] }, issuer: 'i', audience: 'a' }, /every key needs a kid/],
    ['an empty kid', { jwks: { keys: [jwkOf(ed.publicKey, '')] }, issuer: 'i', audience: 'a' }, /every key needs a kid/],
    ['not a key', { jwks: { keys: [{ kid: 'x', kty: 'nope' }] }, issuer: 'i', audience: 'a' }, /key x is not a public JWK/],
    ['with a secret too', { jwks: { keys: [jwkOf(ed.publicKey, 'k')] }, secret: 'x'.repeat(32), issuer: 'i', audience: 'a' }, /exactly one of/]
  ]
  for (const [name, auth, message] of cases) {
    const fastify = Fastify()
    t.teardown(() => fastify.close())
    await t.rejects(async () => { await fastify.register(multitenantPlugin, { provider, auth }).ready() }, { code: 'MT_INVALID_OPTION', message }, name)
  }
})
