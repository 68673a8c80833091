// The registry's keys: the ring built from configuration (algorithms, key ids, rotation, every
// misconfiguration named), the dev stack's Ed25519 key kept under a directory, and a registry
// during a rotation (two published keys, tokens of either accepted) or without a private key.
import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDecoder } from 'fast-jwt'
import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { createKeyRing, ensureSigningKey, pemBlocks, thumbprint, type PublishedKey } from '../src/keys.ts'
import { tokenIssuer } from '../src/tokens.ts'
import { bearer, createRegistryDatabase, startRegistry, tid } from './fixtures/registry.ts'

const pair = (type: 'ed25519' | 'rsa' | 'ec', options: Record<string, unknown> = {}): { publicKey: string, privateKey: string } =>
  generateKeyPairSync(type as 'ed25519', { ...options, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } }) as unknown as { publicKey: string, privateKey: string }
const decode = createDecoder({ complete: true })

t.test('the key ring: algorithms, key ids, rotation', async (t) => {
  const ed = pair('ed25519')
  const rsa = pair('rsa', { modulusLength: 2048 })
  const p256 = pair('ec', { namedCurve: 'P-256' })
  const p384 = pair('ec', { namedCurve: 'P-384' })
  const ring = createKeyRing({ publicKey: ed.publicKey + rsa.publicKey + p256.publicKey + p384.publicKey, privateKey: ed.privateKey })
  t.same(ring.jwks.keys.map((k) => [k.kty, k.alg]), [['OKP', 'EdDSA'], ['RSA', 'RS256'], ['EC', 'ES256'], ['EC', 'ES384']])
  t.equal(ring.signing?.kid, ring.jwks.keys[0]?.kid, 'the signing key is published under its kid')
  t.equal(ring.signing?.alg, 'EdDSA')
  t.equal(ring.jwks.keys[0]?.kid, thumbprint(ring.jwks.keys[0] as PublishedKey), 'default kid: the RFC 7638 thumbprint')
  t.ok(ring.jwks.keys.every((k) => !('d' in k)), 'nothing private')
  // RFC 7638 §3.1's example key and thumbprint.
  t.equal(thumbprint({ kty: 'RSA', e: 'AQAB', n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw', alg: 'RS256', kid: '2011-04-29' }), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs')

  const named = createKeyRing({ publicKey: rsa.publicKey + ed.publicKey, privateKey: ed.privateKey, keyId: '2026-12' })
  t.same(named.jwks.keys.map((k) => k.kid), [thumbprint(named.jwks.keys[0] as PublishedKey), '2026-12'], 'JWT_KEY_ID names the signing key only')
  const verifyOnly = createKeyRing({ publicKey: ed.publicKey })
  t.equal(verifyOnly.signing, undefined)
  t.same(createKeyRing({ secret: 's'.repeat(32) }).jwks, { keys: [] }, 'a secret is never published')
  t.throws(() => tokenIssuer(verifyOnly), /JWT_PRIVATE_KEY is needed/)
  t.same(pemBlocks('junk'), [])
})

t.test('every bad key configuration is refused, naming the variable', async (t) => {
  const ed = pair('ed25519')
  const other = pair('ed25519')
  const small = pair('rsa', { modulusLength: 1024 })
  const k1 = pair('ec', { namedCurve: 'secp256k1' })
  const x25519 = generateKeyPairSync('x25519').publicKey.export({ type: 'spki', format: 'pem' }) as string
  const cases: Array<[string, Parameters<typeof createKeyRing>[0], string, RegExp]> = [
    ['no PEM at all', { publicKey: 'not a key' }, 'JWT_PUBLIC_KEY', /PEM public keys/],
    ['a broken PEM', { publicKey: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----' }, 'JWT_PUBLIC_KEY', /not a PEM public key/],
    ['RSA below 2048 bits', { publicKey: small.publicKey }, 'JWT_PUBLIC_KEY', /2048 bits/],
    ['an unsupported curve', { publicKey: k1.publicKey }, 'JWT_PUBLIC_KEY', /curve secp256k1/],
    ['a key that cannot sign', { publicKey: x25519 }, 'JWT_PUBLIC_KEY', /x25519 keys are not supported/],
    ['the same key twice', { publicKey: ed.publicKey + ed.publicKey }, 'JWT_PUBLIC_KEY', /twice/],
    ['a private key that is not one', { publicKey: ed.publicKey, privateKey: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----' }, 'JWT_PRIVATE_KEY', /not a PEM private key/],
    ['a private key whose public half is not listed', { publicKey: ed.publicKey, privateKey: other.privateKey }, 'JWT_PUBLIC_KEY', /must include the public key of JWT_PRIVATE_KEY/],
    ['a key id without a private key', { publicKey: ed.publicKey, keyId: 'k1' }, 'JWT_KEY_ID', /with JWT_PRIVATE_KEY/],
    ['a key id with odd characters', { publicKey: ed.publicKey, privateKey: ed.privateKey, keyId: 'a b' }, 'JWT_KEY_ID', /letters, digits/],
    ['a key id taken by another key', { publicKey: ed.publicKey + other.publicKey, privateKey: ed.privateKey, keyId: createKeyRing({ publicKey: other.publicKey }).jwks.keys[0]?.kid as string }, 'JWT_KEY_ID', /another public key/]
  ]
  for (const [label, keys, variable, message] of cases) t.throws(() => createKeyRing(keys), { name: 'ConfigError', variable, message }, label)

  t.same(loadConfig({ JWT_PUBLIC_KEY: ed.publicKey, JWT_PRIVATE_KEY: ed.privateKey, JWT_KEY_ID: 'k-2026' }).jwt, { publicKey: ed.publicKey.trim(), privateKey: ed.privateKey.trim(), keyId: 'k-2026' }, 'JWT_KEY_ID is read')
  t.throws(() => loadConfig({ JWT_SECRET: 's'.repeat(32), JWT_KEY_ID: 'k' }), { name: 'ConfigError', variable: 'JWT_KEY_ID' })
})

t.test('ensureSigningKey: an Ed25519 pair made once under a directory, then reused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'registry-devkey-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const keyDir = join(dir, '.data')
  const [made, racing] = await Promise.all([ensureSigningKey(keyDir), ensureSigningKey(keyDir)])
  t.equal([made, racing].filter((k) => k.created).length, 1, 'two starts at once: one makes the key')
  t.equal(made.privateKey, racing.privateKey, 'and both use it')
  t.equal((await stat(made.privateKeyPath)).mode & 0o777, 0o600, 'the private key is readable by its owner only')
  t.equal(await readFile(made.publicKeyPath, 'utf8'), made.publicKey)
  t.equal(createKeyRing({ publicKey: made.publicKey, privateKey: made.privateKey }).signing?.alg, 'EdDSA')
  await writeFile(made.publicKeyPath, 'stale')
  const again = await ensureSigningKey(keyDir)
  t.same([again.created, again.privateKey, again.publicKey], [false, made.privateKey, made.publicKey], 'kept across restarts')
  t.equal(await readFile(made.publicKeyPath, 'utf8'), made.publicKey, 'a stale public file is rewritten from the private key')
  t.same(loadConfig({ JWT_PUBLIC_KEY: made.publicKeyPath, JWT_PRIVATE_KEY: made.privateKeyPath }).jwt, { publicKey: made.publicKey, privateKey: made.privateKey }, 'the files are what JWT_PUBLIC_KEY and JWT_PRIVATE_KEY name')
})

t.test('a registry during a rotation, and one that only verifies', async (t) => {
  const old = pair('rsa', { modulusLength: 2048 })
  const next = pair('ed25519')
  const db = await createRegistryDatabase(t)
  const r = await startRegistry(t, { config: { jwt: { publicKey: next.publicKey + old.publicKey, privateKey: next.privateKey }, exchangeTtl: 60, jwksMaxAge: 60 } }, db.url)
  const oldAdmin = tokenIssuer({ publicKey: old.publicKey, privateKey: old.privateKey })({ sub: 'ops', roles: ['platform-admin'], scope: 'tenants:read tenants:write' })
  const jwks = await r.app.inject({ url: '/.well-known/jwks.json' })
  t.equal(jwks.headers['cache-control'], 'public, max-age=60')
  t.same(jwks.json().keys.map((k: { alg: string }) => k.alg), ['EdDSA', 'RS256'], 'both keys published')
  const acme = tid('racme')
  t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(oldAdmin), payload: { id: acme, name: 'Acme' } })).statusCode, 201, 'a token signed with the retiring key still verifies')
  const created = await r.app.inject({ method: 'POST', url: '/v1/services', headers: bearer(r.admin), payload: { name: 'orders', scopes: ['messages:send'], audiences: ['comm'] } })
  const credential = created.json().credential.token as string
  t.equal(decode(credential).header.alg, 'EdDSA', 'new tokens are signed with the new key')
  const exchanged = await r.app.inject({ method: 'POST', url: '/v1/token', headers: bearer(credential), payload: { tenant: acme, audience: 'comm' } })
  t.equal(exchanged.json().expires_in, 60, 'a shorter exchanged lifetime when configured')
  const { payload } = decode(exchanged.json().access_token as string) as { payload: { exp: number, iat: number } }
  t.equal(payload.exp - payload.iat, 60)

  // The same database behind a registry holding only the public keys: it verifies, never signs.
  const verifier = await buildApp({ config: { jwt: { publicKey: next.publicKey + old.publicKey } }, sql: r.sql, processMetrics: false })
  t.teardown(() => verifier.close())
  t.equal(verifier.issuer, null)
  t.equal((await verifier.inject({ url: `/v1/tenants/${acme}`, headers: bearer(r.admin) })).statusCode, 200)
  t.match((await verifier.inject({ method: 'POST', url: '/v1/token', headers: bearer(credential), payload: { tenant: acme, audience: 'comm' } })).json(), { statusCode: 403, code: 'FORBIDDEN', message: /no signing key/ })
  t.match((await verifier.inject({ method: 'POST', url: '/v1/services', headers: bearer(r.admin), payload: { name: 'x', scopes: [], audiences: [] } })).json(), { code: 'FORBIDDEN' })
  t.match((await verifier.inject({ method: 'POST', url: '/v1/services/orders/credentials', headers: bearer(r.admin) })).json(), { code: 'FORBIDDEN' })

  for (const exchangeTtl of [0, 301, 1.5]) {
    await t.rejects(buildApp({ config: { jwt: { secret: 's'.repeat(32) }, exchangeTtl }, sql: r.sql, processMetrics: false }), { name: 'RangeError', message: /exchangeTtl must be 1 to 300/ }, `exchangeTtl ${exchangeTtl}`)
  }
})
