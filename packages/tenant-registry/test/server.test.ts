import { generateKeyPairSync } from 'node:crypto'
import postgres from 'postgres'
import t from 'tap'
import { request } from 'undici'
import { buildApp } from '../src/app.ts'
import { migrateRegistry } from '../src/db/migrate.ts'
import { createLogger, startRegistryServer } from '../src/server.ts'
import { tokenIssuer } from '../src/tokens.ts'
import { createRegistryDatabase, bearer, SECRET, startRegistry, tid } from './fixtures/registry.ts'

t.test('a listening server: health, ready, docs, metrics, graceful close with a waiting long poll', async (t) => {
  const db = await createRegistryDatabase(t)
  const server = await startRegistryServer({
    config: { databaseUrl: db.url, jwt: { secret: SECRET }, baseDomain: 'example.com', port: 0, host: '127.0.0.1', logLevel: 'silent' },
    logger: createLogger('silent', false),
    poolSize: 4
  })
  t.teardown(server.close)
  const admin = tokenIssuer({ secret: SECRET })({ sub: 'ops', roles: ['platform-admin'], scope: 'tenants:read tenants:write' })
  const get = async (path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string, type: string }> => {
    const res = await request(server.url + path, { headers })
    return { status: res.statusCode, body: await res.body.text(), type: String(res.headers['content-type']) }
  }

  t.same(JSON.parse((await get('/health')).body), { status: 'ok' })
  t.same(JSON.parse((await get('/ready')).body), { status: 'ready' })

  const openapi = JSON.parse((await get('/docs/json')).body) as { openapi: string, paths: Record<string, Record<string, { security?: unknown, summary?: string }>> }
  t.equal(openapi.openapi, '3.1.0')
  for (const path of ['/v1/tenants', '/v1/tenants/{id}', '/v1/tenants/{id}/suspend', '/v1/tenants/{id}/activate', '/v1/tenants/{id}/domains', '/v1/tenants/{id}/domains/{domain}', '/v1/resolve', '/v1/changes', '/health', '/ready']) {
    t.ok(openapi.paths[path], `OpenAPI documents ${path}`)
  }
  t.same(openapi.paths['/v1/tenants']?.post?.security, [{ bearer: [] }])
  t.notOk(openapi.paths['/metrics'], '/metrics is not an API route')
  const ui = await get('/docs')
  t.equal(ui.status, 200)
  t.match(ui.type, /text\/html/)

  const id = tid('metered')
  const created = await request(server.url + '/v1/tenants', { method: 'POST', headers: { ...bearer(admin), 'content-type': 'application/json' }, body: JSON.stringify({ id, name: 'Metered' }) })
  t.equal(created.statusCode, 201)
  await created.body.dump()
  const again = await request(server.url + '/v1/tenants', { method: 'POST', headers: { ...bearer(admin), 'content-type': 'application/json' }, body: JSON.stringify({ id, name: 'Metered' }) })
  t.equal(again.statusCode, 409)
  await again.body.dump()
  await get(`/v1/tenants/${id}`, bearer(admin))
  t.equal((await get('/no/such/route')).status, 404)
  const metrics = await get('/metrics')
  t.match(metrics.type, /text\/plain/)
  t.match(metrics.body, /registry_http_request_duration_seconds_count\{method="GET",route="\/v1\/tenants\/:id",status="200"\} 1/)
  t.match(metrics.body, /registry_tenants_provisioned_total\{outcome="created"\} 1/)
  t.match(metrics.body, /registry_tenants_provisioned_total\{outcome="conflict"\} 1/)
  t.match(metrics.body, /registry_tenants\{status="active"\} 1/)
  t.match(metrics.body, /registry_tenant_provision_duration_seconds_count 1/)
  t.match(metrics.body, /process_cpu_user_seconds_total/)
  t.match(metrics.body, /route="unmatched",status="404"/)

  // A follower waiting on the feed is answered when the server closes, so shutdown is not held.
  const poll = request(`${server.url}/v1/changes?after=1000000&wait=60`, { headers: bearer(admin) })
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.match(await get('/metrics'), { body: /registry_change_feed_waiters 1/ })
  const closed = server.close()
  const answer = await poll
  t.equal(answer.statusCode, 200)
  t.same(await answer.body.json(), { items: [], next: 1000000, head: 1 })
  await closed
  await t.rejects(request(server.url + '/health'), 'the server is closed')
})

t.test('ready is 503 when the database is gone', async (t) => {
  const r = await startRegistry(t)
  await r.sql.end()
  const res = await r.app.inject('/ready')
  t.equal(res.statusCode, 503)
  t.same(res.json(), { status: 'unavailable' })
})

t.test('a superuser login is refused unless allowed; weaker guarantees are logged', async (t) => {
  const db = await createRegistryDatabase(t)
  const config = { databaseUrl: db.superUrl, jwt: { secret: SECRET }, baseDomain: undefined, port: 0, host: '127.0.0.1', logLevel: 'silent' }
  await t.rejects(startRegistryServer({ config, logger: createLogger('silent', false) }), { name: 'ConfigError', variable: 'DATABASE_URL', message: /superuser/ })
  // Allowed explicitly, on a database where PUBLIC still holds what the setup revokes.
  const root = postgres(db.superUrl, { max: 1 })
  await root.unsafe('grant execute on function set_config(text, text, boolean) to public')
  await root.end()
  const warnings: string[] = []
  const logger = createLogger('warn', false)
  const warn = logger.warn.bind(logger)
  logger.warn = ((obj: unknown, msg?: string) => { warnings.push(String(msg)); warn(obj as object, msg) }) as typeof logger.warn
  const running = await startRegistryServer({ config: { ...config, allowSuperuser: true }, logger })
  t.teardown(() => running.close())
  t.ok(warnings.some((w) => /set_config/.test(w)), 'the weaker guarantee is logged at start')
  t.equal((await request(`${running.url}/health`)).statusCode, 200)
})

t.test('a start that cannot reach the database fails and leaves nothing open', async (t) => {
  await t.rejects(startRegistryServer({
    config: { databaseUrl: 'postgres://nobody:x@127.0.0.1:1/none', jwt: { secret: SECRET }, baseDomain: undefined, port: 0, host: '127.0.0.1', logLevel: 'silent' },
    logger: createLogger('silent', false)
  }), { code: 'ECONNREFUSED' })
})

t.test('a port in use fails the start and closes what it opened', async (t) => {
  const db = await createRegistryDatabase(t)
  const config = { databaseUrl: db.url, jwt: { secret: SECRET }, baseDomain: undefined, port: 0, host: '127.0.0.1', logLevel: 'silent' }
  const first = await startRegistryServer({ config, logger: createLogger('silent', false), poolSize: 2 })
  t.teardown(first.close)
  const port = Number(new URL(first.url).port)
  await t.rejects(startRegistryServer({ config: { ...config, port }, logger: createLogger('silent', false), poolSize: 2 }), { code: 'EADDRINUSE' })
})

t.test('a tenant whose role another database of the cluster already has is a conflict', async (t) => {
  const one = await startRegistry(t)
  const two = await startRegistry(t)
  const id = tid('twice')
  t.equal((await one.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(one.admin), payload: { id, name: id } })).statusCode, 201)
  const again = await two.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(two.admin), payload: { id, name: id } })
  t.equal(again.statusCode, 409)
  t.match(again.json(), { code: 'CONFLICT', message: /schema or role already exists in this cluster/ })
})

t.test('tokens signed with a key pair (ES256)', async (t) => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
  const r = await startRegistry(t, { config: { jwt: { publicKey, privateKey }, baseDomain: 'example.com' } })
  const good = tokenIssuer({ publicKey, privateKey })({ sub: 'svc', scope: 'tenants:read' })
  t.match(good.split('.')[0], /^eyJ/)
  t.equal(JSON.parse(Buffer.from(good.split('.')[0] as string, 'base64url').toString()).alg, 'ES256')
  t.equal((await r.app.inject({ url: '/v1/tenants', headers: bearer(good) })).statusCode, 200)
  const forged = tokenIssuer({ secret: SECRET })({ sub: 'svc', scope: 'tenants:read' })
  t.equal((await r.app.inject({ url: '/v1/tenants', headers: bearer(forged) })).statusCode, 401, 'an HS256 token is refused when keys are configured')
  t.throws(() => tokenIssuer({ publicKey }), /JWT_PRIVATE_KEY/)

  // A service that only verifies gets the public key alone.
  const db = await createRegistryDatabase(t)
  const sql = postgres(db.url, { max: 2, onnotice: () => {} })
  t.teardown(() => sql.end())
  await migrateRegistry(sql)
  const app = await buildApp({ config: { jwt: { publicKey } }, sql, processMetrics: false })
  t.teardown(() => app.close())
  t.equal((await app.inject({ url: '/v1/tenants', headers: bearer(good) })).statusCode, 200)
})
