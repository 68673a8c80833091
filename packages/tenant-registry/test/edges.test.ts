// Registry edges an attacker or a careless client reaches: custom domains that would take over a
// tenant's subdomain, type coercion of bodies, hostile JSON, unknown clusters, what reaches the
// logs when a query fails, and the operational routes.
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { checkBody, MAX_BODY_DEPTH } from '../src/plugins/guard.ts'
import { bearer, SECRET, startRegistry, tid } from './fixtures/registry.ts'

t.test('a custom domain cannot be the base domain or under it', async (t) => {
  const r = await startRegistry(t)
  const a = tid('dom-a')
  const b = tid('dom-b')
  const post = async (url: string, body: unknown) => await r.app.inject({ method: 'POST', url, headers: bearer(r.admin), payload: body as Record<string, unknown> })
  t.equal((await post('/v1/tenants', { id: a, name: 'A' })).statusCode, 201)
  t.equal((await post('/v1/tenants', { id: b, name: 'B' })).statusCode, 201)
  for (const domain of ['example.com', `${b}.example.com`, `x.${b}.example.com`, `${b}.EXAMPLE.com.`]) {
    const res = await post(`/v1/tenants/${a}/domains`, { domain })
    t.equal(res.statusCode, 400, `${domain} refused`)
    t.equal(res.json().code, 'VALIDATION_FAILED')
  }
  t.equal((await post('/v1/tenants', { id: tid('dom-c'), name: 'C', domains: [`${a}.example.com`] })).statusCode, 400, 'at creation too')
  // A row written before this rule existed still cannot take B's subdomain over.
  await r.sql`insert into domains (domain, tenant_id) values (${`${b}.example.com`}, ${a})`
  const resolved = await r.app.inject({ url: `/v1/resolve?host=${b}.example.com`, headers: bearer(r.service) })
  t.equal(resolved.json().id, b, 'the subdomain answers, not the stray custom domain')
  t.equal((await post(`/v1/tenants/${a}/domains`, { domain: 'mail.a-corp.test' })).statusCode, 201, 'other domains are fine')
  for (const host of ['www.example.com', `x.${b}.example.com`]) {
    t.equal((await r.app.inject({ url: `/v1/resolve?host=${host}`, headers: bearer(r.service) })).statusCode, 404, `${host}: no tenant`)
  }
})

t.test('bodies are validated as sent: no coercion, no hostile JSON, no 500', async (t) => {
  const r = await startRegistry(t)
  const create = async (payload: string) => await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: { ...bearer(r.admin), 'content-type': 'application/json' }, payload })
  const cases: Array<[string, string]> = [
    ['numeric id', '{"id": 12, "name": "Twelve"}'],
    ['array id', '{"id": ["a"], "name": "A"}'],
    ['numeric name', `{"id": "${tid('n')}", "name": 5}`],
    ['boolean as string', `{"id": "${tid('b')}", "name": "B", "domains": "x.test"}`],
    ['NUL in the name', `{"id": "${tid('nul')}", "name": "a\\u0000b"}`],
    ['NUL in a config key', `{"id": "${tid('nulk')}", "name": "K", "config": {"a\\u0000": 1}}`],
    ['NUL deep in config', `{"id": "${tid('nuld')}", "name": "D", "config": {"comm": {"emailFrom": "x\\u0000@y.z"}}}`],
    ['huge integer limit', `{"id": "${tid('big')}", "name": "Big", "limits": {"messagesPerDay": 1e300}}`],
    ['integer past 2^53', `{"id": "${tid('big2')}", "name": "Big", "metadata": {"n": 9007199254740993}}`],
    ['deep nesting', `{"id": "${tid('deep')}", "name": "Deep", "config": ${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`],
    ['nesting just past the limit', `{"id": "${tid('deep2')}", "name": "Deep", "metadata": ${'{"a":'.repeat(MAX_BODY_DEPTH)}1${'}'.repeat(MAX_BODY_DEPTH)}}`]
  ]
  for (const [what, payload] of cases) {
    const res = await create(payload)
    t.equal(res.statusCode, 400, `${what}: 400`)
    t.equal(res.json().code, 'VALIDATION_FAILED', `${what}: VALIDATION_FAILED`)
    t.notMatch(res.body, /select|insert|postgres|at .*\.ts/i, `${what}: no internals`)
  }
  t.equal((await r.app.inject({ url: '/v1/tenants?limit=2', headers: bearer(r.admin) })).json().limit, 2, 'query strings are still read as numbers')
  const nul = await r.app.inject({ url: '/v1/tenants?q=a%00b', headers: bearer(r.admin) })
  t.same([nul.statusCode, nul.json().code], [400, 'VALIDATION_FAILED'], 'a value PostgreSQL refuses (a NUL in a query string) is 400')
  const feed = await r.app.inject({ url: '/v1/changes?after=100000000000000000000', headers: bearer(r.service) })
  t.equal(feed.statusCode, 400, 'a sequence past any integer is 400, not 500')
  t.equal((await r.app.inject({ url: `/v1/tenants/${tid('x')}`, method: 'PATCH', headers: { ...bearer(r.admin), 'if-match': `"${tid('x')}.99999999999999999999"` }, payload: { name: 'x' } })).statusCode < 500, true, 'an absurd If-Match is no 500')
  t.equal((await create(`{"id": "${tid('ok')}", "name": "Fine", "metadata": ${'{"a":'.repeat(MAX_BODY_DEPTH - 2)}1${'}'.repeat(MAX_BODY_DEPTH - 2)}}`)).statusCode, 201, 'nesting within the limit is fine')
  t.throws(() => checkBody({ a: Number.NaN }), { code: 'VALIDATION_FAILED' })
})

t.test('a tenant\'s database names a configured cluster', async (t) => {
  const r = await startRegistry(t, { config: { jwt: { secret: SECRET }, baseDomain: 'example.com', clusters: ['default', 'eu'] } })
  const id = tid('cl')
  const post = await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id: tid('cl-mars'), name: 'Mars', database: 'mars' } })
  t.equal(post.statusCode, 400)
  t.match(post.json().message, /configured cluster \(default, eu\)/)
  t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'EU', database: 'eu' } })).json().database, 'eu')
  const patch = await r.app.inject({ method: 'PATCH', url: `/v1/tenants/${id}`, headers: bearer(r.admin), payload: { database: 'mars' } })
  t.equal(patch.statusCode, 400)
  t.equal((await r.app.inject({ url: `/v1/tenants/${id}`, headers: bearer(r.admin) })).json().database, 'eu', 'nothing changed')
})

t.test('a failed query logs the driver\'s code and message, never its parameters', async (t) => {
  const lines: string[] = []
  const logger = pino({ level: 'error' }, new Writable({ write (chunk, _enc, done) { lines.push(String(chunk)); done() } }))
  const r = await startRegistry(t, { logger })
  const id = tid('log')
  t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'Logged' } })).statusCode, 201)
  // Make the next write fail inside PostgreSQL with the tenant's private values as parameters.
  await r.sql`alter table tenants add constraint no_secret check (contact_email is null or contact_email not like '%secret%')`
  const res = await r.app.inject({ method: 'PATCH', url: `/v1/tenants/${id}`, headers: bearer(r.admin), payload: { contactEmail: 'ceo@secret-corp.test', config: { mail: { smtpPassword: 'hunter2-hunter2' } } } })
  t.equal(res.statusCode, 500)
  t.same(Object.keys(res.json()).sort(), ['code', 'error', 'message', 'statusCode'])
  const logged = lines.join('')
  t.match(logged, /23514/, 'the driver\'s code is logged')
  t.notMatch(logged, /secret-corp|hunter2/, 'no parameter values in the logs')
  t.notMatch(logged, /update "tenants"/i, 'no SQL text either')
})

t.test('/metrics and /docs can be protected or turned off', async (t) => {
  const token = 'ops-token-long-enough'
  const r = await startRegistry(t, { config: { jwt: { secret: SECRET }, opsToken: token } })
  t.equal((await r.app.inject({ url: '/metrics' })).statusCode, 401)
  t.equal((await r.app.inject({ url: '/metrics', headers: bearer('wrong-token-of-same-len') })).statusCode, 401)
  t.equal((await r.app.inject({ url: '/metrics', headers: bearer(token) })).statusCode, 200)
  t.equal((await r.app.inject({ url: '/docs/json' })).statusCode, 401)
  t.equal((await r.app.inject({ url: '/docs/json', headers: bearer(token) })).statusCode, 200)
  t.equal((await r.app.inject({ url: '/health' })).statusCode, 200, 'liveness stays open')
  const off = await startRegistry(t, { config: { jwt: { secret: SECRET }, docs: false } })
  t.equal((await off.app.inject({ url: '/docs/json' })).statusCode, 404)
})

t.test('odd-shaped claims on a well-signed token are refused', async (t) => {
  const r = await startRegistry(t)
  const base = { sub: 'ops', scope: 'tenants:read tenants:write' }
  // A string role would pass an admin check as a substring; a non-string scope or a bad tenant id
  // would be half-read.
  for (const claims of [{ ...base, roles: 'not-platform-admin' }, { ...base, roles: ['platform-admin'], scope: ['tenants:write'] }, { ...base, tenant: 'Not An Id' }]) {
    const res = await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.tokenFor(claims)), payload: { id: tid('odd'), name: 'Odd' } })
    t.equal(res.statusCode, 401, JSON.stringify(claims))
  }
  const noSub = r.tokenFor({ roles: ['platform-admin'], scope: 'tenants:read' })
  t.equal((await r.app.inject({ url: '/v1/tenants', headers: bearer(noSub) })).statusCode, 401, 'a token without sub')
})

t.test('a failure that is not the database\'s is logged by name only; a purge whose role is gone still purges', async (t) => {
  const lines: string[] = []
  const logger = pino({ level: 'error' }, new Writable({ write (chunk, _enc, done) { lines.push(String(chunk)); done() } }))
  const r = await startRegistry(t, { logger, store: { beforeActivate: (id) => { if (id.startsWith('boom')) throw new Error('provisioning hook failed') } } })
  const res = await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id: tid('boom'), name: 'Boom' } })
  t.equal(res.statusCode, 500)
  t.equal(res.json().message, 'Internal error')
  t.match(lines.join(''), /provisioning hook failed/)

  const id = tid('orphan')
  t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'Orphan' } })).statusCode, 201)
  const schema = `tenant_${id.replaceAll('-', '_')}`
  // Someone dropped the role by hand (the schema went with it).
  await r.sql.begin(async (tx) => {
    await tx.unsafe(`drop schema "${schema}" cascade`)
    await tx.unsafe(`drop role "${schema}"`)
  })
  t.equal((await r.app.inject({ method: 'DELETE', url: `/v1/tenants/${id}?purge=true&confirm=${id}`, headers: bearer(r.admin) })).statusCode, 204)
  t.equal((await r.app.inject({ url: `/v1/tenants/${id}`, headers: bearer(r.admin) })).statusCode, 404)
})
