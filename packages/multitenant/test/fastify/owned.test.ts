// The plugin owning its parts, against a real registry process and a real PostgreSQL, as a
// service would run it: registry client, TenantDb, migrations, auth — nothing else in the app.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { multitenantPlugin, platformErrorHandler, withTenant } from '../../src/fastify/plugin.ts'
import { startTestRegistry, type TestRegistry } from '../fixtures/registry.ts'
import { suffix } from '../pg/fixtures.ts'

const tid = (name: string): string => `own-${name}-${suffix}`

async function migrationsDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mt-owned-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, '0001_notes.sql'), 'create table notes (id bigint generated always as identity primary key, body text not null);')
  await writeFile(join(dir, '0002_tags.sql'), 'alter table notes add column tag text;')
  return dir
}

/** The whole service: the plugin and two routes. */
async function service (t: Test, r: TestRegistry, dir: string, lines: Array<Record<string, unknown>>, retryFailedAfter?: number): Promise<FastifyInstance> {
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
      callback()
    }
  })
  const app = Fastify({ logger: { level: 'info', stream } })
  app.setErrorHandler(platformErrorHandler())
  await app.register(multitenantPlugin, {
    registry: { url: r.url, token: r.serviceToken },
    db: { url: r.serviceDatabaseUrl, max: 4 },
    migrations: { dir, ...(retryFailedAfter === undefined ? {} : { retryFailedAfter }) },
    auth: { secret: r.secret, issuer: 'tenant-registry', audience: 'platform' }
  })
  app.get('/notes', { config: { auth: { scope: 'notes:read' } } }, withTenant(async (request) => {
    const rows = await app.tenantDb.query<{ body: string }>('select body from notes order by id')
    return { tenant: request.tenant.id, notes: rows.map((row) => row.body) }
  }))
  app.post<{ Body: { body: string } }>('/notes', {
    config: { auth: { scope: 'notes:write' } },
    schema: { body: { type: 'object', required: ['body'], properties: { body: { type: 'string' } } } }
  }, withTenant(async (request, reply) => {
    await app.tenantDb.query('insert into notes (body) values ($1)', [request.body.body])
    return await reply.code(201).send({ ok: true })
  }))
  t.teardown(() => app.close())
  await app.ready()
  return app
}

t.test('a tenant created through the registry is served, tables migrated, within two seconds', async (t) => {
  const r = await startTestRegistry(t)
  const dir = await migrationsDir(t)
  const before = tid('before')
  t.equal((await r.admin('POST', '/v1/tenants', { id: before, name: 'Before' })).status, 201)
  const lines: Array<Record<string, unknown>> = []
  const app = await service(t, r, dir, lines)
  const token = (tenant: string, scope = 'notes:read notes:write'): string => r.sign({ sub: 'u', tenant, roles: ['member'], scope })
  const registrySql = postgres(r.registryDatabaseUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => registrySql.end())
  const hasNotes = async (id: string): Promise<boolean> =>
    (await registrySql`select 1 from pg_tables where schemaname = ${`tenant_${id.replaceAll('-', '_')}`} and tablename = 'notes'`).length === 1

  t.ok(await hasNotes(before), 'a tenant that existed at start was migrated before ready()')
  t.ok(lines.some((l) => l.msg === 'tenant migrations at start' && l.total === 1), 'the start-up run is logged with its summary')

  // Created after start: announced by the feed, migrated without any request.
  const created = tid('created')
  const started = performance.now()
  t.equal((await r.admin('POST', '/v1/tenants', { id: created, name: 'Created' })).status, 201)
  while (!(await hasNotes(created)) && performance.now() - started < 2000) await new Promise((resolve) => setTimeout(resolve, 20))
  const migratedIn = performance.now() - started
  t.ok(await hasNotes(created), `migrated from the change feed, no request needed (${Math.round(migratedIn)} ms)`)
  const post = await app.inject({ method: 'POST', url: '/notes', headers: { 'x-tenant-id': created, authorization: `Bearer ${token(created)}` }, payload: { body: 'first' } })
  t.equal(post.statusCode, 201, post.body)
  const servedIn = performance.now() - started
  t.ok(servedIn < 2000, `created → served in ${Math.round(servedIn)} ms (< 2 s)`)

  // A request that wins the race against the feed: its own tenant is migrated first, no 42P01.
  const racer = tid('racer')
  t.equal((await r.admin('POST', '/v1/tenants', { id: racer, name: 'Racer' })).status, 201)
  const raced = await app.inject({ url: '/notes', headers: { 'x-tenant-id': racer, authorization: `Bearer ${token(racer)}` } })
  t.equal(raced.statusCode, 200, raced.body)
  t.same(raced.json(), { tenant: racer, notes: [] })

  // Isolation through the plugin's own parts.
  const listed = await app.inject({ url: '/notes', headers: { 'x-tenant-id': before, authorization: `Bearer ${token(before)}` } })
  t.same(listed.json(), { tenant: before, notes: [] }, 'another tenant\'s note is not visible')
  const other = await app.inject({ url: '/notes', headers: { 'x-tenant-id': before, authorization: `Bearer ${token(created)}` } })
  t.equal(other.json().code, 'TENANT_MISMATCH', 'a token for one tenant cannot read another')
  t.equal((await app.inject({ url: '/notes', headers: { 'x-tenant-id': created, authorization: `Bearer ${token(created, 'notes:write')}` } })).json().code, 'FORBIDDEN', 'scopes are checked')
  t.equal((await app.inject({ url: '/notes', headers: { 'x-tenant-id': created } })).json().code, 'UNAUTHORIZED', 'a token is required')

  // Fastify's own request lines carry the tenant.
  const completed = lines.filter((l) => l.msg === 'request completed' && (l.res as { statusCode?: number } | undefined)?.statusCode === 201)
  t.equal(completed.at(-1)?.tenant, created, '"request completed" names the tenant')
  t.match(lines.find((l) => l.msg === 'tenant migrated' && l.tenant === created), { applied: ['0001_notes.sql', '0002_tags.sql'] })

  // Suspension reaches the service through the same feed.
  t.equal((await r.admin('POST', `/v1/tenants/${created}/suspend`)).status, 200)
  const waitUntil = performance.now() + 2000
  let code: string | undefined
  while (performance.now() < waitUntil) {
    code = (await app.inject({ url: '/notes', headers: { 'x-tenant-id': created, authorization: `Bearer ${token(created)}` } })).json().code
    if (code === 'TENANT_SUSPENDED') break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(code, 'TENANT_SUSPENDED')

  // close() closes what the plugin created: no connection of the service login is left.
  await app.close()
  const sessions = await registrySql`select count(*)::int as n from pg_stat_activity where usename = ${r.serviceUser}`
  t.equal(sessions[0]?.n, 0, 'the TenantDb was closed with the app')
})

t.test('a tenant whose migration fails gets 503 with Retry-After; the others are served', async (t) => {
  const r = await startTestRegistry(t)
  const dir = await migrationsDir(t)
  const good = tid('good')
  const bad = tid('bad')
  t.equal((await r.admin('POST', '/v1/tenants', { id: good, name: 'Good' })).status, 201)
  t.equal((await r.admin('POST', '/v1/tenants', { id: bad, name: 'Bad' })).status, 201)
  // The bad tenant already has a conflicting "notes" (a view, made by the registry, which owns the
  // schema) that the first migration cannot replace.
  const registrySql = postgres(r.registryDatabaseUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => registrySql.end())
  const schema = `tenant_${bad.replaceAll('-', '_')}`
  await registrySql.unsafe(`create view "${schema}".notes as select 1 as id`)
  const lines: Array<Record<string, unknown>> = []
  const app = await service(t, r, dir, lines, 300)
  t.match(lines.find((l) => l.msg === 'tenant migrations at start'), { total: 2, migrated: 1, failed: [{ tenant: bad, code: 'MT_MIGRATION_FAILED' }] })
  const token = (tenant: string): string => r.sign({ sub: 'u', tenant, roles: ['member'], scope: 'notes:read' })
  const res = await app.inject({ url: '/notes', headers: { 'x-tenant-id': bad, authorization: `Bearer ${token(bad)}` } })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'SERVICE_UNAVAILABLE')
  t.equal(res.headers['retry-after'], '5')
  t.notMatch(res.body, /notes|view|relation/, 'no SQL detail in the answer')
  t.equal((await app.inject({ url: '/notes', headers: { 'x-tenant-id': bad, authorization: `Bearer ${token(bad)}` } })).statusCode, 503)
  t.equal(lines.filter((l) => l.msg === 'tenant migration failed' && l.tenant === bad).length, 1, 'two requests, one attempt: the failure is held for a while')
  // The cause is fixed: after the hold, the next request migrates the tenant and is served.
  await registrySql.unsafe(`drop view "${schema}".notes`)
  await new Promise((resolve) => setTimeout(resolve, 350))
  t.equal((await app.inject({ url: '/notes', headers: { 'x-tenant-id': bad, authorization: `Bearer ${token(bad)}` } })).statusCode, 200, 'retried after the hold, and served')
  t.equal((await app.inject({ url: '/notes', headers: { 'x-tenant-id': good, authorization: `Bearer ${token(good)}` } })).statusCode, 200)
})
