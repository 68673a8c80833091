// There is no Docker engine where the tests run: check the compose file by parsing it.
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { parse } from 'yaml'
import { loadConfig } from '../src/config.ts'

t.test('docker-compose.yml: a registry on PostgreSQL with a configuration the registry accepts', async (t) => {
  const compose = parse(await readFile(new URL('../../../docker-compose.yml', import.meta.url), 'utf8')) as {
    services: Record<string, { environment?: Record<string, string>, depends_on?: Record<string, { condition: string }>, command?: string[], ports?: string[] }>
    volumes: Record<string, unknown>
  }
  t.same(Object.keys(compose.services).sort(), ['db-setup', 'postgres', 'tenant-registry'])
  const registry = compose.services['tenant-registry']
  const env = registry?.environment ?? {}
  const config = loadConfig(env)
  t.match(config, { port: 4000, host: '0.0.0.0', baseDomain: 'platform.localhost' })
  const db = new URL(config.databaseUrl as string)
  t.equal(db.hostname, 'postgres', 'the registry reaches the postgres service by name')
  const pg = compose.services.postgres?.environment ?? {}
  const setup = compose.services['db-setup']
  const setupEnv = setup?.environment ?? {}
  // The setup runs as the superuser; the registry as the login the setup creates, never the superuser.
  const superUrl = new URL(setupEnv.DATABASE_URL as string)
  t.same([superUrl.username, superUrl.password, superUrl.pathname.slice(1)], [pg.POSTGRES_USER, pg.POSTGRES_PASSWORD, pg.POSTGRES_DB])
  t.equal(db.username, 'platform_registry')
  t.not(db.username, pg.POSTGRES_USER, 'the registry does not connect as the superuser')
  t.equal(db.password, setupEnv.REGISTRY_DB_PASSWORD)
  t.equal(db.pathname, superUrl.pathname)
  const script = setup?.command?.join(' ') ?? ''
  t.match(script, /setup-database --registry-user platform_registry/)
  t.match(script, /service-login platform_service/)
  t.ok((setupEnv.SERVICE_DB_PASSWORD ?? '').length >= 12)
  t.same(setup?.depends_on, { postgres: { condition: 'service_healthy' } })
  t.same(registry?.depends_on, { 'db-setup': { condition: 'service_completed_successfully' } })
  t.match(registry?.command?.join(' '), /packages\/tenant-registry\/src\/bin\.ts serve/)
  t.ok(registry?.ports?.includes(`${config.port}:${config.port}`))
  t.ok('pgdata' in compose.volumes)
})
