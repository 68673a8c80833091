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

// The review's DoS: a made-up kid started a cooldown shared by every kid, and valid tokens whose
// kid was not cached yet (first use, after the TTL, a second published key) were refused during it.
async function keyServer (t: Test, initial: Array<[string, KeyObject]>): Promise<{ url: string, keys: Array<[string, KeyObject]>, fetches: () => number, fail: (on: boolean) => void }> {
  const keys = [...initial]
  let fetches = 0
  let failing = false
  const idp = Fastify()
  idp.get('/certs', async (_request, reply) => {
    fetches++
    if (failing) return await reply.code(503).send({ error: 'down' })
    return { keys: keys.map(([kid, key]) => jwkOf(key, kid, 'EdDSA')) }
  })
  await idp.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => idp.close())
  return { url: `http://127.0.0.1:${(idp.server.address() as { port: number }).port}/certs`, keys, fetches: () => fetches, fail: (on) => { failing = on } }
}
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

t.test('JWKS by URL: made-up kids sent without pause never refuse a token whose kid is in the set', async (t) => {
  const one = generateKeyPairSync('ed25519')
  const two = generateKeyPairSync('ed25519')
  const stranger = generateKeyPairSync('ed25519')
  const idp = await keyServer(t, [['key-1', one.publicKey], ['key-2', two.publicKey]])
  // A long cooldown: the made-up kids' window lasts the whole test; no token cache, every request verifies.
  const a = await app(t, { jwksUrl: idp.url, jwksCooldown: 60_000, cache: 0, issuer: 'tenant-registry', audience: 'platform' })
  const junk = (i: number): string => signer(stranger.privateKey, 'EdDSA', `junk-${i}`)(claims)
  t.equal(await status(a, junk(0)), 401, 'the first request, a made-up kid, fetches the set and is refused')
  let refused = 0
  for (let i = 1; i <= 40; i++) {
    t.equal(await status(a, junk(i)), 401)
    // key-2 is first used here, inside the window the made-up kids started (refused before the fix).
    if (await status(a, signer(i % 2 === 0 ? one.privateKey : two.privateKey, 'EdDSA', i % 2 === 0 ? 'key-1' : 'key-2')(claims)) !== 200) refused++
  }
  t.equal(refused, 0, 'every valid token accepted beside 41 made-up kids')
  t.equal(idp.fetches(), 1, '41 made-up kids and 40 valid tokens cost one fetch')
  t.equal(await status(a, signer(stranger.privateKey, 'EdDSA', 'key-1')(claims)), 401, 'a known kid with another key\'s signature')
})

t.test('JWKS by URL: a key published while made-up kids flow is picked up after one window; a stale set still serves', async (t) => {
  const one = generateKeyPairSync('ed25519')
  const stranger = generateKeyPairSync('ed25519')
  const idp = await keyServer(t, [['key-1', one.publicKey]])
  const a = await app(t, { jwksUrl: idp.url, jwksCooldown: 300, jwksTtl: 600, cache: 0, issuer: 'tenant-registry', audience: 'platform' })
  const junk = (i: number): string => signer(stranger.privateKey, 'EdDSA', `junk-${i}`)(claims)
  t.equal(await status(a, signer(one.privateKey, 'EdDSA', 'key-1')(claims)), 200)
  t.equal(idp.fetches(), 1)
  // Rotation under attack: made-up kids every 20 ms, before and after the new key is published.
  const started = Date.now()
  let i = 0
  t.equal(await status(a, junk(i++)), 401, 'a made-up kid starts a window')
  const three = generateKeyPairSync('ed25519')
  idp.keys.push(['key-3', three.publicKey])
  const fresh = (): string => signer(three.privateKey, 'EdDSA', 'key-3')(claims)
  const early = await status(a, fresh())
  // Made-up kids during the window do not extend it: past it, the next fetch (anyone's) brings key-3.
  while (Date.now() - started < 400) { t.equal(await status(a, junk(i++)), 401); await sleep(20) }
  t.equal(await status(a, fresh()), 200, `the new key is accepted once the window has passed (inside it: ${early})`)
  t.equal(await status(a, signer(one.privateKey, 'EdDSA', 'key-1')(claims)), 200, 'the old key still works while published')
  t.ok(idp.fetches() <= 4, `${i} made-up kids over ${Date.now() - started} ms cost ${idp.fetches() - 1} fetch(es)`)

  // Past the TTL, with the provider down: known kids are still served from the last set while the
  // refresh runs (and fails) in the background; an unknown kid is refused.
  idp.fail(true)
  await sleep(650)
  const before = idp.fetches()
  t.equal(await status(a, fresh()), 200, 'a stale set serves its keys')
  while (idp.fetches() === before) await sleep(10) // the background refresh
  t.equal(await status(a, signer(one.privateKey, 'EdDSA', 'key-1')(claims)), 200, 'the failed refresh keeps the last set')
  await sleep(350)
  t.equal(await status(a, junk(i++)), 401, 'an unknown kid while the provider is down')
  t.equal(await status(a, fresh()), 200)

  // Back up, key-1 withdrawn: served from the stale set until the refresh replaces it, then refused.
  idp.fail(false)
  idp.keys.splice(0, 1)
  await sleep(650)
  const withdrawn = signer(one.privateKey, 'EdDSA', 'key-1')(claims)
  t.equal(await status(a, withdrawn), 200, 'key-1 still serves from the stale set while it refreshes')
  while (await status(a, withdrawn) === 200) await sleep(10)
  t.equal(await status(a, withdrawn), 401, 'key-1 withdrawn: refused once the refreshed set lacks it')
  t.equal(await status(a, fresh()), 200)
})

t.test('JWKS by URL: odd key sets and concurrent first requests', async (t) => {
  const ed = generateKeyPairSync('ed25519')
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  let fetches = 0
  let body: unknown = { nokeys: true }
  const idp = Fastify()
  idp.get('/certs', async () => { fetches++; return body })
  await idp.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => idp.close())
  const a = await app(t, { jwksUrl: `http://127.0.0.1:${(idp.server.address() as { port: number }).port}/certs`, jwksCooldown: 0, cache: 0, issuer: 'tenant-registry', audience: 'platform' })
  t.equal(await status(a, signer(ed.privateKey, 'EdDSA', 'ed')(claims)), 401, 'a response without a keys array')
  body = {
    keys: [
      { ...ed.publicKey.export({ format: 'jwk' }), alg: 'EdDSA' }, // no kid
      { ...jwkOf(ed.publicKey, 'enc', 'EdDSA'), use: 'enc' },
      { kty: 'oct', k: 'c2VjcmV0', kid: 'oct' },
      null,
      jwkOf(rsa.publicKey, 'ed'), // a second key under the same kid, another algorithm
      jwkOf(ed.publicKey, 'ed', 'EdDSA')
    ]
  }
  const calls = await Promise.all([1, 2, 3].map(async () => await status(a, signer(ed.privateKey, 'EdDSA', 'ed')(claims))))
  t.same(calls, [200, 200, 200], 'concurrent first requests')
  t.equal(fetches, 2, 'they shared one fetch')
  t.equal(await status(a, signer(rsa.privateKey, 'RS256', 'ed')(claims)), 200, 'the kid\'s other key, by algorithm')
  t.equal(await status(a, signer(ed.privateKey, 'EdDSA', 'enc')(claims)), 401, 'an encryption key is not a signing key')
  t.equal(await status(a, signer('c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0', 'HS256', 'oct')(claims)), 401, 'a symmetric key is not published for verification')
})
