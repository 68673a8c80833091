import t from 'tap'
import postgres from 'postgres'
import { createSigner } from 'fast-jwt'
import { migrateTenant } from '@platform/multitenant/migrations'
import { createServiceLogin, loginUrl } from '@platform/multitenant/pg'
import { bearer, SECRET, startRegistry, tid } from './fixtures/registry.ts'

t.test('create, read with ETag, patch with If-Match, suspend, activate', async (t) => {
  const r = await startRegistry(t)
  const id = tid('acme')
  const created = await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'Acme', domains: ['Mail.Acme.IO'], config: { comm: { emailFrom: 'a@mail.acme.io' } } } })
  t.equal(created.statusCode, 201)
  t.match(created.json(), { id, status: 'active', schema: `tenant_${id.replaceAll('-', '_')}`, domains: [{ domain: 'mail.acme.io', primary: true }], version: 2 })
  const got = await r.app.inject({ url: `/v1/tenants/${id}`, headers: bearer(r.service) })
  t.equal(got.statusCode, 200)
  const etag = got.headers.etag as string
  t.equal((await r.app.inject({ url: `/v1/tenants/${id}`, headers: { ...bearer(r.service), 'if-none-match': etag } })).statusCode, 304)
  const patched = await r.app.inject({ method: 'PATCH', url: `/v1/tenants/${id}`, headers: { ...bearer(r.admin), 'if-match': etag }, payload: { config: { comm: { smsSenderId: 'ACME' } } } })
  t.equal(patched.statusCode, 200)
  t.same(patched.json().config, { comm: { emailFrom: 'a@mail.acme.io', smsSenderId: 'ACME' } })
  const stale = await r.app.inject({ method: 'PATCH', url: `/v1/tenants/${id}`, headers: { ...bearer(r.admin), 'if-match': etag }, payload: { name: 'X' } })
  t.equal(stale.statusCode, 412)
  t.equal((await r.app.inject({ method: 'POST', url: `/v1/tenants/${id}/suspend`, headers: bearer(r.admin) })).json().status, 'suspended')
  t.equal((await r.app.inject({ method: 'POST', url: `/v1/tenants/${id}/activate`, headers: bearer(r.admin) })).json().status, 'active')
  const resolved = await r.app.inject({ url: '/v1/resolve?host=mail.acme.io:443', headers: bearer(r.service) })
  t.equal(resolved.json().id, id)
  t.equal((await r.app.inject({ url: `/v1/resolve?host=${id}.example.com`, headers: bearer(r.service) })).json().id, id)
  t.equal((await r.app.inject({ url: '/v1/resolve?host=nobody.example.org', headers: bearer(r.service) })).json().code, 'TENANT_NOT_FOUND')
  const list = await r.app.inject({ url: '/v1/tenants?limit=10&q=acme', headers: bearer(r.service) })
  t.match(list.json(), { total: 1, limit: 10, offset: 0, items: [{ id }] })
})

t.test('20 concurrent creates of one id: one 201, nineteen 409, nothing orphaned', async (t) => {
  const r = await startRegistry(t)
  const id = tid('race')
  const answers = await Promise.all(Array.from({ length: 20 }, () =>
    r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'Race' } })))
  const codes = answers.map((a) => a.statusCode).sort()
  t.same(codes, [201, ...Array(19).fill(409)])
  t.ok(answers.filter((a) => a.statusCode === 409).every((a) => a.json().code === 'CONFLICT'))
  const schema = `tenant_${id.replaceAll('-', '_')}`
  t.equal((await r.sql`select count(*)::int as n from pg_namespace where nspname = ${schema}`)[0]?.n, 1)
  t.equal((await r.sql`select count(*)::int as n from pg_roles where rolname = ${schema}`)[0]?.n, 1)
})

t.test('a failure midway through provisioning leaves nothing behind; a retry succeeds', async (t) => {
  let fail = true
  const r = await startRegistry(t, { store: { beforeActivate: () => { if (fail) throw new Error('disk full') } } })
  const id = tid('flaky')
  const schema = `tenant_${id.replaceAll('-', '_')}`
  const first = await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'Flaky', domains: ['flaky.example.org'] } })
  t.equal(first.statusCode, 500)
  t.notMatch(first.body, /disk full/)
  t.same(await r.sql`select id from tenants where id = ${id}`, [])
  t.same(await r.sql`select 1 from domains where domain = 'flaky.example.org'`, [])
  t.same(await r.sql`select 1 from pg_namespace where nspname = ${schema}`, [])
  t.same(await r.sql`select 1 from pg_roles where rolname = ${schema}`, [])
  fail = false
  t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'Flaky' } })).statusCode, 201)
})

t.test('tenant roles own nothing and cannot read each other; purge drops schema, tables and role', async (t) => {
  const r = await startRegistry(t)
  const a = tid('aa')
  const b = tid('bb')
  for (const id of [a, b]) {
    t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: id } })).statusCode, 201)
  }
  const sa = `tenant_${a.replaceAll('-', '_')}`
  const sb = `tenant_${b.replaceAll('-', '_')}`
  t.same(await r.sql`select nspname as schema, nspowner::regrole::text as owner from pg_namespace where nspname in (${sa}, ${sb}) order by 1`,
    [{ schema: sa, owner: r.user }, { schema: sb, owner: r.user }], 'the registry owns the schemas it provisions')
  await t.rejects(r.sql.begin(async (tx) => {
    await tx.unsafe(`set local role "${sa}"`)
    await tx.unsafe(`create table "${sa}".mine (body text)`)
  }), { code: '42501' }, 'a tenant role cannot create in its own schema')
  // A service login migrates the tables, as the owner role; the tenant role gets DML.
  const user = `svc_${tid('m').replaceAll('-', '_')}`
  await createServiceLogin(r.sql, { user, password: 'service-password-1' })
  const service = postgres(loginUrl(r.url, { user, password: 'service-password-1' }), { max: 1, onnotice: () => {} })
  t.teardown(() => service.end())
  for (const [id, s] of [[a, sa], [b, sb]] as const) {
    await migrateTenant(service, id, [{ name: '0001_notes.sql', checksum: 'x', sql: `create table notes (body text); insert into notes values ('secret of ${s}')` }])
  }
  await t.rejects(r.sql.begin(async (tx) => {
    await tx.unsafe(`set local role "${sa}"`)
    await tx.unsafe(`select * from "${sb}".notes`)
  }), { code: '42501' }, 'permission denied')
  const own = await r.sql.begin(async (tx) => {
    await tx.unsafe(`set local role "${sa}"`)
    return await tx.unsafe(`select body from "${sa}".notes`)
  })
  t.same([...own], [{ body: `secret of ${sa}` }])
  t.equal((await r.app.inject({ method: 'DELETE', url: `/v1/tenants/${b}?purge=true`, headers: bearer(r.admin) })).json().code, 'VALIDATION_FAILED')
  t.equal((await r.app.inject({ method: 'DELETE', url: `/v1/tenants/${b}?purge=true&confirm=${b}`, headers: bearer(r.admin) })).statusCode, 204)
  t.same(await r.sql`select 1 from pg_namespace where nspname = ${sb}`, [])
  t.same(await r.sql`select 1 from pg_roles where rolname = ${sb}`, [])
  t.equal((await r.app.inject({ method: 'DELETE', url: `/v1/tenants/${a}`, headers: bearer(r.admin) })).json().status, 'archived')

  // A tenant provisioned when tenant roles owned their schema and tables is purged all the same.
  const old = tid('old')
  const so = `tenant_${old.replaceAll('-', '_')}`
  t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id: old, name: old } })).statusCode, 201)
  await r.sql.begin(async (tx) => {
    await tx.unsafe(`alter schema "${so}" owner to "${so}"`)
    await tx.unsafe(`set local role "${so}"`)
    await tx.unsafe(`create table "${so}".notes (body text)`)
  })
  t.equal((await r.app.inject({ method: 'DELETE', url: `/v1/tenants/${old}?purge=true&confirm=${old}`, headers: bearer(r.admin) })).statusCode, 204)
  t.same(await r.sql`select 1 from pg_namespace where nspname = ${so} union all select 1 from pg_roles where rolname = ${so}`, [], 'schema and role gone')
})

t.test('a change on one instance reaches a follower long-polling another in under a second', async (t) => {
  const leader = await startRegistry(t)
  const follower = await startRegistry(t, {}, leader.url)
  const after = (await follower.app.inject({ url: '/v1/changes', headers: bearer(follower.service) })).json().next as number
  const started = Date.now()
  const poll = follower.app.inject({ url: `/v1/changes?after=${after}&wait=10`, headers: bearer(follower.service) })
  setTimeout(() => {
    leader.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(leader.admin), payload: { id: tid('feed'), name: 'Feed' } }).catch(() => {})
  }, 100)
  const res = await poll
  const elapsed = Date.now() - started - 100
  t.match(res.json(), { items: [{ tenantId: tid('feed'), type: 'tenant.created' }] })
  t.ok(elapsed < 1000, `arrived ${elapsed} ms after the change`)
})

t.test('token failures and malformed input', async (t) => {
  const r = await startRegistry(t)
  const id = tid('guard')
  await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'Guard' } })
  const other = postgres(r.url, { max: 1 })
  t.teardown(() => other.end())
  const expired = r.app.jwt.sign({ sub: 'x', scope: 'tenants:read' }, { clockTimestamp: Date.now() - 2 * 3600_000 } as never)
  const tenantToken = r.tokenFor({ sub: 'u', tenant: id, roles: ['owner'], scope: 'tenants:read tenants:write' })
  const cases: Array<[string, Record<string, string>, string, number, string]> = [
    ['none', {}, `/v1/tenants/${id}`, 401, 'UNAUTHORIZED'],
    ['garbage', { authorization: 'Bearer not.a.token' }, `/v1/tenants/${id}`, 401, 'UNAUTHORIZED'],
    ['expired', bearer(expired), `/v1/tenants/${id}`, 401, 'UNAUTHORIZED'],
    ['wrong signature', bearer(r.admin.slice(0, -4) + 'AAAA'), `/v1/tenants/${id}`, 401, 'UNAUTHORIZED'],
    ['wrong scope', bearer(r.tokenFor({ sub: 'x', scope: 'messages:send' })), `/v1/tenants/${id}`, 403, 'FORBIDDEN'],
    ['tenant token, other tenant', bearer(tenantToken), '/v1/tenants/someone-else', 403, 'TENANT_MISMATCH'],
    ['other issuer', bearer(createSigner({ key: SECRET, iss: 'someone-else', aud: 'platform' })({ sub: 'x', scope: 'tenants:read' })), `/v1/tenants/${id}`, 401, 'UNAUTHORIZED'],
    ['other audience', bearer(createSigner({ key: SECRET, iss: 'tenant-registry', aud: 'elsewhere' })({ sub: 'x', scope: 'tenants:read' })), `/v1/tenants/${id}`, 401, 'UNAUTHORIZED']
  ]
  for (const [label, headers, url, status, code] of cases) {
    const res = await r.app.inject({ url, headers })
    t.equal(res.statusCode, status, label)
    t.equal(res.json().code, code, label)
  }
  const adminOnly = await r.app.inject({ method: 'POST', url: `/v1/tenants/${id}/suspend`, headers: bearer(tenantToken) })
  t.equal(adminOnly.json().code, 'FORBIDDEN', 'tenant tokens cannot use admin routes')
  const noRole = await r.app.inject({ method: 'POST', url: `/v1/tenants/${id}/suspend`, headers: bearer(r.tokenFor({ sub: 'x', scope: 'tenants:write' })) })
  t.equal(noRole.statusCode, 403, 'the write scope without platform-admin is not enough')
  t.equal((await r.app.inject({ url: '/v1/changes', headers: bearer(tenantToken) })).json().code, 'FORBIDDEN', 'the change feed is for services')
  t.equal((await r.app.inject({ url: `/v1/tenants/${id}`, headers: bearer(tenantToken) })).statusCode, 200, 'own tenant is readable')

  const bad: Array<[string, string, unknown]> = [
    ['POST', '/v1/tenants', { id: 'Bad Id', name: 'x' }],
    ['POST', '/v1/tenants', { id: "x'; drop table tenants;--", name: 'x' }],
    ['POST', '/v1/tenants', { id: 'admin', name: 'x' }],
    ['POST', '/v1/tenants', { id: 'a'.repeat(57), name: 'x' }],
    ['POST', '/v1/tenants', { id: 'ok-id' }],
    ['POST', '/v1/tenants', { id: 'ok-id', name: '' }],
    ['POST', '/v1/tenants', { id: 'ok-id', name: 'x', tier: 'gold' }],
    ['POST', '/v1/tenants', { id: 'ok-id', name: 'x', extra: 1 }],
    ['POST', '/v1/tenants', { id: 'ok-id', name: 'x', domains: ['not a domain'] }],
    ['POST', '/v1/tenants', { id: 'ok-id', name: 'x', contactEmail: 'nope' }],
    ['POST', '/v1/tenants', { id: 'ok-id', name: 'x', limits: { messagesPerMinute: -1 } }],
    ['POST', '/v1/tenants', { id: 'ok-id', name: 'x', status: 'suspended' }],
    ['POST', '/v1/tenants', { id: 'ok-id', name: 'x', database: 'DROP TABLE' }],
    ['POST', '/v1/tenants', { id: { x: 1 }, name: 'x' }],
    ['POST', '/v1/tenants', 'not json at all'],
    ['POST', '/v1/tenants', [1, 2]],
    ['PATCH', `/v1/tenants/${id}`, {}],
    ['PATCH', `/v1/tenants/${id}`, { id: 'new-id' }],
    ['PATCH', `/v1/tenants/${id}`, { tier: 7 }],
    ['PATCH', '/v1/tenants/Bad', { name: 'x' }],
    ['GET', '/v1/tenants?limit=0', undefined],
    ['GET', '/v1/tenants?limit=100000', undefined],
    ['GET', '/v1/tenants?offset=-1', undefined],
    ['GET', '/v1/tenants?status=weird', undefined],
    ['GET', '/v1/tenants?tier=gold', undefined],
    ['GET', '/v1/tenants?unknown=1', undefined],
    ['GET', '/v1/tenants/..%2Fetc', undefined],
    ['GET', '/v1/tenants/UPPER', undefined],
    ['GET', '/v1/resolve', undefined],
    ['GET', '/v1/resolve?host=a%20b', undefined],
    ['GET', '/v1/changes?after=-5', undefined],
    ['GET', '/v1/changes?wait=1000', undefined],
    ['POST', `/v1/tenants/${id}/domains`, { domain: '../../etc' }],
    ['POST', `/v1/tenants/${id}/domains`, {}],
    ['DELETE', `/v1/tenants/${id}?purge=maybe`, undefined]
  ]
  t.ok(bad.length >= 30)
  for (const [method, url, payload] of bad) {
    const res = await r.app.inject({ method: method as 'GET', url, headers: { ...bearer(r.admin), ...(typeof payload === 'string' ? { 'content-type': 'application/json' } : {}) }, ...(payload === undefined ? {} : { payload: payload as string }) })
    t.equal(res.statusCode, 400, `${method} ${url} ${JSON.stringify(payload)?.slice(0, 40)}`)
    t.ok(['VALIDATION_FAILED', 'TENANT_INVALID'].includes(res.json().code), `${method} ${url} → ${res.json().code}`)
    t.notMatch(res.body, /select|insert|postgres|at \w+ \(/i)
  }
  t.same(await other`select id from tenants order by id`, [{ id }], 'nothing was created by bad input')
})
