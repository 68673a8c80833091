import t from 'tap'
import { loadConfig } from '../src/config.ts'

const good = {
  REGISTRY_URL: 'http://tenant-registry:4000',
  SERVICE_TOKEN: 'token',
  DATABASE_URL: 'postgres://notes:pw@db:5432/platform',
  JWT_SECRET: 'a-secret-that-is-long-enough-0123456789'
}

t.test('the environment, checked, each mistake naming its variable', async (t) => {
  const config = loadConfig({ ...good, DATABASE_URL_EU_1: 'postgres://notes:pw@db-eu:5432/platform', PORT: '4100', BASE_DOMAIN: 'Platform.Example.com' })
  t.match(loadConfig({ ...good, HOST: '0.0.0.0', LOG_LEVEL: 'warn' }), { host: '0.0.0.0', logLevel: 'warn', port: 4100 })
  t.match(config, {
    port: 4100,
    host: '127.0.0.1',
    logLevel: 'info',
    multitenant: {
      registry: { url: good.REGISTRY_URL, token: 'token' },
      db: { clusters: { default: good.DATABASE_URL, eu_1: 'postgres://notes:pw@db-eu:5432/platform' } },
      auth: { secret: good.JWT_SECRET, issuer: 'tenant-registry', audience: 'platform' },
      baseDomain: 'platform.example.com'
    }
  })
  t.match(loadConfig({ ...good, JWT_SECRET: '', JWKS_URL: 'https://idp.example.com/certs', JWT_ISSUER: 'https://idp.example.com', JWT_AUDIENCE: 'notes', JWT_TENANT_CLAIM: 'org_id', JWT_ROLES_CLAIM: 'realm_access.roles' }).multitenant.auth,
    { jwksUrl: 'https://idp.example.com/certs', issuer: 'https://idp.example.com', audience: 'notes', claims: { tenant: 'org_id', roles: 'realm_access.roles' } })
  t.equal(loadConfig({ ...good, TENANT: 'acme' }).multitenant.fixedTenant, 'acme', 'dedicated mode')
  t.equal(config.comm, undefined, 'no COMM_URL: no notify')
  t.same(loadConfig({ ...good, COMM_URL: ' http://comm:4200 ' }).comm, { url: 'http://comm:4200/', exchange: { registry: good.REGISTRY_URL, credential: 'token' } }, 'COMM_URL: emails through the comm-service, tokens from the registry')
  const cases: Array<[string, Record<string, string>, string]> = [
    ['REGISTRY_URL', { REGISTRY_URL: '' }, 'REGISTRY_URL is required'],
    ['REGISTRY_URL', { REGISTRY_URL: 'tenant-registry:4000' }, 'REGISTRY_URL must be a http or https URL'],
    ['REGISTRY_URL', { REGISTRY_URL: 'not a url' }, 'REGISTRY_URL must be an absolute URL'],
    ['SERVICE_TOKEN', { SERVICE_TOKEN: ' ' }, 'SERVICE_TOKEN is required'],
    ['DATABASE_URL', { DATABASE_URL: '' }, 'DATABASE_URL is required'],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://x@y/z' }, 'DATABASE_URL must be a postgres or postgresql URL'],
    ['DATABASE_URL_EU', { DATABASE_URL_EU: 'nope' }, 'DATABASE_URL_EU must be an absolute URL'],
    ['JWT_SECRET', { JWT_SECRET: '' }, 'JWT_SECRET is required'],
    ['JWT_SECRET', { JWT_SECRET: 'short' }, 'at least 32 characters'],
    ['JWT_SECRET', { JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----' }, 'set one of'],
    ['JWT_PUBLIC_KEY', { JWT_SECRET: '', JWT_PUBLIC_KEY: 'abc' }, 'PEM'],
    ['BASE_DOMAIN', { BASE_DOMAIN: 'localhost' }, 'domain name'],
    ['TENANT', { TENANT: 'Acme!' }, 'tenant id'],
    ['PORT', { PORT: '99999' }, 'port number'],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }, 'one of'],
    ['COMM_URL', { COMM_URL: 'comm:4200' }, 'http\\(s\\) URL'],
    ['COMM_URL', { COMM_URL: 'not a url' }, 'http\\(s\\) URL']
  ]
  for (const [variable, patch, message] of cases) {
    t.throws(() => loadConfig({ ...good, ...patch }), { name: 'EnvError', code: 'MT_INVALID_ENV', variable, message: new RegExp(message) }, `${variable}: ${message}`)
  }
  t.throws(() => loadConfig({ ...good, DATABASE_URL: 'postgres://u:hunter2@db/x:bad' as string, REGISTRY_URL: 'x' }), { message: /^REGISTRY_URL/ })
  try {
    loadConfig({ ...good, DATABASE_URL: 'postgres//u:hunter2@db/x' })
  } catch (err) {
    t.notMatch((err as Error).message, /hunter2/, 'a password in a bad URL is not repeated')
  }
})
