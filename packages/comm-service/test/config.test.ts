import t from 'tap'
import { loadConfig } from '../src/config.ts'

const good = {
  REGISTRY_URL: 'http://tenant-registry:4000',
  SERVICE_TOKEN: 'token',
  DATABASE_URL: 'postgres://comm:pw@db:5432/platform',
  JWT_SECRET: 'a-secret-that-is-long-enough-0123456789'
}

t.test('the environment, checked, each mistake naming its variable', async (t) => {
  t.match(loadConfig(good), { role: 'all', port: 4200, host: '127.0.0.1', logLevel: 'info', queueUrl: good.DATABASE_URL, concurrency: { local: 16, perTenant: 4 }, allowWebhookHosts: [] })
  t.match(loadConfig({ ...good, COMM_ROLE: 'worker', PORT: '0', HOST: '0.0.0.0', LOG_LEVEL: 'warn', COMM_CONCURRENCY: '32', COMM_TENANT_CONCURRENCY: '2', COMM_WEBHOOK_ALLOW_HOSTS: 'localhost, hooks.test' }),
    { role: 'worker', port: 0, host: '0.0.0.0', logLevel: 'warn', concurrency: { local: 32, perTenant: 2 }, allowWebhookHosts: ['localhost', 'hooks.test'] })
  t.equal(loadConfig(good).opsToken, undefined, 'no OPS_TOKEN: the operational routes stay open')
  t.equal(loadConfig({ ...good, OPS_TOKEN: ' an-ops-token-of-length ' }).opsToken, 'an-ops-token-of-length')
  t.same(loadConfig(good).multitenant.auth?.audience, ['platform', 'comm'], 'tokens exchanged for the comm audience are accepted')
  t.same(loadConfig({ ...good, JWT_AUDIENCE: 'comm' }).multitenant.auth?.audience, ['comm'])
  const cases: Array<[string, Record<string, string>]> = [
    ['DATABASE_URL', { DATABASE_URL: '' }],
    ['COMM_ROLE', { COMM_ROLE: 'both' }],
    ['PORT', { PORT: '70000' }],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }],
    ['COMM_CONCURRENCY', { COMM_CONCURRENCY: '0' }],
    ['COMM_TENANT_CONCURRENCY', { COMM_TENANT_CONCURRENCY: 'many' }],
    ['REGISTRY_URL', { REGISTRY_URL: '' }],
    ['OPS_TOKEN', { OPS_TOKEN: 'short' }]
  ]
  for (const [variable, patch] of cases) t.throws(() => loadConfig({ ...good, ...patch }), { code: 'MT_INVALID_ENV', variable }, variable)
})
