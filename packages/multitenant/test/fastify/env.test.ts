import t from 'tap'
import { EnvError, multitenantOptionsFromEnv } from '../../src/fastify/plugin.ts'
import { optionalPeer } from '../../src/fastify/peers.ts'

const good = {
  REGISTRY_URL: 'http://tenant-registry:4000',
  SERVICE_TOKEN: 'token',
  JWT_SECRET: 'a-secret-that-is-long-enough-0123456789'
}

t.test('multitenantOptionsFromEnv: the platform\'s variables, each mistake named', async (t) => {
  t.same(multitenantOptionsFromEnv(good), {
    registry: { url: good.REGISTRY_URL, token: 'token' },
    auth: { secret: good.JWT_SECRET, issuer: 'tenant-registry', audience: 'platform' }
  }, 'no database variables: no db')
  t.match(multitenantOptionsFromEnv({ ...good, DATABASE_URL: 'postgres://s@db/p', DATABASE_URL_EU_1: 'postgresql://s@db-eu/p', BASE_DOMAIN: 'Example.COM', TENANT: 'acme' }), {
    db: { clusters: { default: 'postgres://s@db/p', eu_1: 'postgresql://s@db-eu/p' } },
    baseDomain: 'example.com',
    fixedTenant: 'acme'
  })
  t.match(multitenantOptionsFromEnv({ ...good, JWT_SECRET: '', JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----', JWT_ISSUER: 'me', JWT_AUDIENCE: 'you', JWT_SCOPE_CLAIM: 'scp' }).auth,
    { publicKey: /BEGIN PUBLIC KEY/, issuer: 'me', audience: 'you', claims: { scope: 'scp' } })
  t.match(multitenantOptionsFromEnv({ ...good, JWT_SECRET: undefined, JWKS_URL: 'https://idp.test/certs', JWT_TENANT_CLAIM: 'org', JWT_ROLES_CLAIM: 'groups' }, { issuer: 'https://idp.test', audience: 'svc' }).auth,
    { jwksUrl: 'https://idp.test/certs', issuer: 'https://idp.test', audience: 'svc', claims: { tenant: 'org', roles: 'groups' } }, 'defaults for issuer and audience can come from the service')
  const cases: Array<[string, Record<string, string | undefined>, RegExp]> = [
    ['REGISTRY_URL', { REGISTRY_URL: undefined }, /is required/],
    ['REGISTRY_URL', { REGISTRY_URL: 'ftp://x' }, /http or https/],
    ['SERVICE_TOKEN', { SERVICE_TOKEN: '' }, /tenants:read/],
    ['DATABASE_URL', { DATABASE_URL_EU: 'postgres://s@db/p' }, /required when DATABASE_URL_<NAME>/],
    ['DATABASE_URL', { DATABASE_URL: 'postgres//user:secret@db' }, /absolute URL/],
    ['JWT_SECRET', { JWT_SECRET: undefined }, /is required/],
    ['JWT_SECRET', { JWKS_URL: 'https://idp/certs' }, /set one of/],
    ['JWT_SECRET', { JWT_SECRET: 'short' }, /32 characters/],
    ['JWT_PUBLIC_KEY', { JWT_SECRET: undefined, JWT_PUBLIC_KEY: 'abc' }, /PEM/],
    ['JWKS_URL', { JWT_SECRET: undefined, JWKS_URL: 'idp/certs' }, /absolute URL/],
    ['BASE_DOMAIN', { BASE_DOMAIN: 'nodots' }, /domain name/],
    ['TENANT', { TENANT: 'Not An Id' }, /tenant id/]
  ]
  for (const [variable, patch, message] of cases) {
    t.throws(() => multitenantOptionsFromEnv({ ...good, ...patch }), { name: 'EnvError', code: 'MT_INVALID_ENV', variable, message }, `${variable} ${String(message)}`)
  }
  try {
    multitenantOptionsFromEnv({ ...good, DATABASE_URL: 'postgres//user:secret@db' })
  } catch (err) {
    t.ok(err instanceof EnvError)
    t.notMatch((err as Error).message, /secret@/, 'the password is not repeated')
  }
})

t.test('optionalPeer: a missing package is an option error; anything else is passed on', async (t) => {
  const missing = Object.assign(new Error('Cannot find package \'undici\' imported from /x.js'), { code: 'ERR_MODULE_NOT_FOUND' })
  await t.rejects(optionalPeer('registry', 'undici', async () => { throw missing }), { code: 'MT_INVALID_OPTION', message: /registry needs the optional peer dependency "undici" \("undici" not installed\): npm install undici/ })
  await t.rejects(optionalPeer('db', ['postgres', 'drizzle-orm'], async () => { throw Object.assign(new Error('Cannot find module "drizzle-orm"'), { code: 'MODULE_NOT_FOUND' }) }),
    { message: /db needs the optional peer dependencies "postgres" and "drizzle-orm" \("drizzle-orm" not installed\): npm install postgres drizzle-orm/ })
  const other = Object.assign(new Error('Cannot find package \'something-else\''), { code: 'ERR_MODULE_NOT_FOUND' })
  await t.rejects(optionalPeer('registry', 'undici', async () => { throw other }), other, 'a missing package that is not the peer is not disguised')
  const broken = new SyntaxError('bad')
  await t.rejects(optionalPeer('registry', 'undici', async () => { throw broken }), broken)
  t.equal(await optionalPeer('x', 'y', async () => 42), 42)
})
