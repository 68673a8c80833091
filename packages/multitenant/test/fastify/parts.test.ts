// Parts handed to the plugin (yours to close), migrations in the background, and the migrator
// following purges and feed resets — against a real registry process and a real PostgreSQL.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { multitenantPlugin } from '../../src/fastify/plugin.ts'
import { loadMigrations, TenantMigrator } from '../../src/migrations.ts'
import { clusterEnvName, clustersFromEnv, TenantDb } from '../../src/pg/index.ts'
import { RegistryClient } from '../../src/registry-client.ts'
import { startTestRegistry } from '../fixtures/registry.ts'
import { suffix } from '../pg/fixtures.ts'

const tid = (name: string): string => `parts-${name}-${suffix}`

async function migrationsDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mt-parts-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, '0001_items.sql'), 'create table items (id int primary key);')
  return dir
}

async function until (check: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return true
}

t.test('a client and a database you pass in stay yours; migrations may run in the background', async (t) => {
  const r = await startTestRegistry(t)
  const first = tid('bg')
  t.equal((await r.admin('POST', '/v1/tenants', { id: first, name: 'bg' })).status, 201)
  const client = new RegistryClient({ url: r.url, token: r.serviceToken })
  const db = new TenantDb({ url: r.serviceDatabaseUrl, max: 4 })
  t.teardown(async () => {
    await client.close()
    await db.close()
  })
  const app = Fastify()
  await app.register(multitenantPlugin, { registry: client, db, migrations: { dir: await migrationsDir(t), wait: false, concurrency: 2 } })
  app.get('/items', async () => await app.tenantDb.query('select count(*)::int as n from items'))
  await app.ready()
  t.equal(app.tenantRegistry, client)
  t.equal(app.tenantDb, db)
  t.same((await app.inject({ url: '/items', headers: { 'x-tenant-id': first } })).json(), [{ n: 0 }], 'a request waits for its own tenant if the background run has not reached it')
  t.ok(app.tenantMigrator.isCurrent({ id: first, database: 'default' }))
  await app.close()
  t.same(await db.query('select 1 as one', [], { tenant: first }), [{ one: 1 }], 'the database you passed is still open after the app closed')
  t.equal((await client.getTenant(first))?.id, first, 'so is the client')
})

t.test('a change feed that never answers bounds the start instead of holding ready() forever', async (t) => {
  const r = await startTestRegistry(t)
  const db = new TenantDb({ url: r.serviceDatabaseUrl, max: 2 })
  t.teardown(() => db.close())
  // A client of a registry that is gone: its feed never makes first contact.
  const free = (await import('node:net')).createServer()
  await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve))
  const port = (free.address() as { port: number }).port
  free.close()
  const gone = new RegistryClient({ url: `http://127.0.0.1:${port}`, token: r.serviceToken, retries: 0 })
  t.teardown(() => gone.close())
  const app = Fastify()
  app.register(multitenantPlugin, { registry: gone, db, migrations: { dir: await migrationsDir(t), feedTimeout: 200 } })
  const started = performance.now()
  await t.rejects(async () => { await app.ready() }, { code: 'MT_REGISTRY_UNREACHABLE' }, 'the listing then fails the start, naming the registry')
  t.ok(performance.now() - started < 3000, `after ${Math.round(performance.now() - started)} ms`)
})

t.test('the migrator forgets purged tenants and re-reads everything after a feed reset', async (t) => {
  const r = await startTestRegistry(t)
  const client = new RegistryClient({ url: r.url, token: r.serviceToken, followWait: 1 })
  const db = new TenantDb({ url: r.serviceDatabaseUrl, max: 4 })
  const migrator = new TenantMigrator({ migrations: await loadMigrations(await migrationsDir(t)), pool: (cluster) => db.pool(cluster) })
  t.teardown(async () => {
    await migrator.close()
    await client.close()
    await db.close()
  })
  t.equal(migrator.migrations.length, 1)
  migrator.follow(client)
  migrator.follow(client) // once is enough; a second call changes nothing
  await client.following
  const id = tid('cycle')
  const registrySql = postgres(r.registryDatabaseUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => registrySql.end())
  const hasItems = async (): Promise<boolean> => (await registrySql`select 1 from pg_tables where schemaname = ${`tenant_${id.replaceAll('-', '_')}`} and tablename = 'items'`).length === 1

  t.equal((await r.admin('POST', '/v1/tenants', { id, name: 'cycle' })).status, 201)
  t.ok(await until(hasItems), 'created: migrated from the feed')
  t.ok(migrator.isCurrent({ id, database: 'default' }))
  t.equal((await r.admin('DELETE', `/v1/tenants/${id}?purge=true&confirm=${id}`)).status, 204)
  t.ok(await until(async () => !migrator.isCurrent({ id, database: 'default' })), 'purged: forgotten')
  t.equal((await r.admin('POST', '/v1/tenants', { id, name: 'again' })).status, 201)
  t.ok(await until(hasItems), 're-created with the same id: migrated again')
  t.match(await migrator.migrateAll(client), { total: 0 }, 'a second run skips tenants known to be current')

  // A trial tenant is served, so migrated; an announcement for a tenant that is gone or not
  // served migrates nothing.
  const trial = tid('trial')
  t.equal((await r.admin('POST', '/v1/tenants', { id: trial, name: 'trial', status: 'trial' })).status, 201)
  t.ok(await until(async () => migrator.isCurrent({ id: trial, database: 'default' })), 'a trial tenant is migrated when announced')
  const held = tid('held')
  t.equal((await r.admin('POST', '/v1/tenants', { id: held, name: 'held' })).status, 201)
  await until(async () => migrator.isCurrent({ id: held, database: 'default' }))
  t.equal((await r.admin('POST', `/v1/tenants/${held}/suspend`)).status, 200)
  t.equal((await r.admin('DELETE', `/v1/tenants/${held}?purge=true&confirm=${held}`)).status, 204)
  await until(async () => !migrator.isCurrent({ id: held, database: 'default' }))
  client.emit('tenant.created', { seq: 0, tenantId: tid('ghost'), type: 'tenant.created', at: '' })
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.notOk(migrator.isCurrent({ id: tid('ghost'), database: 'default' }), 'an announced tenant that is not there is not migrated')

  // The registry's log is replaced: the migrator cannot know what it missed and re-reads all.
  await registrySql`truncate tenant_changes`
  await until(async () => client.stats().feedResets === 1, 5000)
  t.ok(await until(async () => migrator.isCurrent({ id, database: 'default' })), 'after the reset every tenant is current again')
  await migrator.close()
  await migrator.close()
  t.pass('closing twice is fine')
})

t.test('clusters from the environment, matched the way their variables are named', async (t) => {
  t.same(clustersFromEnv({ DATABASE_URL: 'postgres://a', DATABASE_URL_EU_1: ' postgres://b ', DATABASE_URL_EMPTY: '', OTHER: 'x' }), { default: 'postgres://a', eu_1: 'postgres://b' })
  t.equal(clusterEnvName('default'), 'DATABASE_URL')
  t.equal(clusterEnvName('eu-1'), 'DATABASE_URL_EU_1')
  const r = await startTestRegistry(t)
  const id = tid('eu')
  t.equal((await r.admin('POST', '/v1/tenants', { id, name: 'eu', database: 'eu-1' })).status, 201)
  const db = new TenantDb({ clusters: { ...clustersFromEnv({ DATABASE_URL: r.serviceDatabaseUrl, DATABASE_URL_EU_1: r.serviceDatabaseUrl }) } })
  t.teardown(() => db.close())
  const tenant = await new RegistryClient({ url: r.url, token: r.serviceToken, follow: false }).getTenant(id)
  t.equal(tenant?.database, 'eu-1')
  t.same(await db.query('select 1 as one', [], { tenant: tenant ?? id }), [{ one: 1 }], 'a tenant on "eu-1" reaches DATABASE_URL_EU_1 (stored as "eu_1")')
})
