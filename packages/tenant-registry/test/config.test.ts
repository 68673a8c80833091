import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.ts'

const SECRET = 's'.repeat(32)

t.test('defaults', async (t) => {
  t.same(loadConfig({ JWT_SECRET: SECRET }), {
    databaseUrl: undefined, jwt: { secret: SECRET }, baseDomain: undefined, port: 4000, host: '127.0.0.1', logLevel: 'info', allowSuperuser: false, clusters: ['default'], opsToken: undefined, docs: true
  })
  const full = loadConfig({ JWT_SECRET: SECRET, DATABASE_URL: 'postgres://u:p@db:5432/x', BASE_DOMAIN: 'Example.COM', PORT: '0', HOST: '0.0.0.0', LOG_LEVEL: 'debug' })
  t.match(full, { databaseUrl: 'postgres://u:p@db:5432/x', baseDomain: 'example.com', port: 0, host: '0.0.0.0', logLevel: 'debug' })
  t.same(loadConfig({}, { fallbackSecret: SECRET }).jwt, { secret: SECRET }, 'the dev stack supplies its own secret')
})

t.test('clusters, the operational token and docs', async (t) => {
  const config = loadConfig({ JWT_SECRET: SECRET, DATABASE_URL_EU_1: 'postgres://u:p@h/db', DATABASE_URL_US: ' ', DATABASE_URL_lower: 'postgres://x/y', OPS_TOKEN: 'an-ops-token-of-length', DOCS: 'off', REGISTRY_ALLOW_SUPERUSER: 'true' })
  t.same(config.clusters, ['default', 'eu_1'], 'DATABASE_URL_<NAME> adds a cluster; empty and lower-case names do not')
  t.equal(config.opsToken, 'an-ops-token-of-length')
  t.equal(config.docs, false)
  t.equal(config.allowSuperuser, true)
})

t.test('every bad value is refused with the variable named', async (t) => {
  const cases: Array<[NodeJS.ProcessEnv, string, RegExp]> = [
    [{}, 'JWT_SECRET', /required/],
    [{ JWT_SECRET: 'short' }, 'JWT_SECRET', /32 characters/],
    [{ JWT_SECRET: SECRET, JWT_PUBLIC_KEY: 'x' }, 'JWT_SECRET', /not both/],
    [{ JWT_PRIVATE_KEY: '-----BEGIN PRIVATE KEY-----' }, 'JWT_PUBLIC_KEY', /required with JWT_PRIVATE_KEY/],
    [{ JWT_PUBLIC_KEY: '/no/such/file.pem' }, 'JWT_PUBLIC_KEY', /PEM/],
    [{ JWT_SECRET: SECRET, DATABASE_URL: 'mysql://x' }, 'DATABASE_URL', /postgres:\/\//],
    [{ JWT_SECRET: SECRET, DATABASE_URL: 'not a url' }, 'DATABASE_URL', /postgres/],
    [{ JWT_SECRET: SECRET, BASE_DOMAIN: 'localhost' }, 'BASE_DOMAIN', /domain name/],
    [{ JWT_SECRET: SECRET, BASE_DOMAIN: 'bad_domain.com' }, 'BASE_DOMAIN', /domain name/],
    [{ JWT_SECRET: SECRET, PORT: 'eighty' }, 'PORT', /port number/],
    [{ JWT_SECRET: SECRET, PORT: '70000' }, 'PORT', /port number/],
    [{ JWT_SECRET: SECRET, HOST: 'no such host!' }, 'HOST', /IP address/],
    [{ JWT_SECRET: SECRET, LOG_LEVEL: 'loud' }, 'LOG_LEVEL', /one of/],
    [{ JWT_SECRET: SECRET, REGISTRY_ALLOW_SUPERUSER: 'yes' }, 'REGISTRY_ALLOW_SUPERUSER', /true or false/],
    [{ JWT_SECRET: SECRET, DATABASE_URL_EU: 'mysql://x' }, 'DATABASE_URL_EU', /postgres:\/\//],
    [{ JWT_SECRET: SECRET, OPS_TOKEN: 'short' }, 'OPS_TOKEN', /16 characters/],
    [{ JWT_SECRET: SECRET, DOCS: 'maybe' }, 'DOCS', /on or off/]
  ]
  for (const [env, variable, message] of cases) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', variable, message }, `${JSON.stringify(env)} → ${variable}`)
    try {
      loadConfig(env)
    } catch (err) {
      t.ok(err instanceof ConfigError && err.message.startsWith(`${variable}: `), 'the message starts with the variable')
    }
  }
})

t.test('key pairs, inline (with \\n escapes) or from files', async (t) => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
  const inline = loadConfig({ JWT_PUBLIC_KEY: publicKey.replaceAll('\n', '\\n') })
  t.same(inline.jwt, { publicKey, privateKey: undefined })
  const dir = await mkdtemp(join(tmpdir(), 'keys-'))
  t.teardown(async () => { const { rm } = await import('node:fs/promises'); await rm(dir, { recursive: true }) })
  await writeFile(join(dir, 'pub.pem'), publicKey)
  await writeFile(join(dir, 'priv.pem'), privateKey)
  t.same(loadConfig({ JWT_PUBLIC_KEY: join(dir, 'pub.pem'), JWT_PRIVATE_KEY: join(dir, 'priv.pem') }).jwt, { publicKey, privateKey })
})
