// Registered services through the API (with the development-only shared secret, as the dev stack
// runs today): register, list, read, change, rotate and revoke credentials, revoke and register
// again; only platform admins; bad input refused; the drizzle schema matches the migration.
import { createDecoder } from 'fast-jwt'
import { getTableConfig } from 'drizzle-orm/pg-core'
import t from 'tap'
import { serviceCredentials, services } from '../src/db/schema.ts'
import { bearer, startRegistry, tid } from './fixtures/registry.ts'

const decode = createDecoder()

t.test('register, read, change, rotate, revoke, register again', async (t) => {
  const r = await startRegistry(t)
  const call = async (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown, token = r.admin): Promise<{ status: number, body: Record<string, unknown>, headers: Record<string, unknown> }> => {
    const res = await r.app.inject({ method, url, headers: bearer(token), ...(body === undefined ? {} : { payload: body as Record<string, unknown> }) })
    return { status: res.statusCode, body: res.json(), headers: res.headers }
  }

  const created = await call('POST', '/v1/services', { name: 'orders', scopes: ['messages:send', 'messages:read'], audiences: ['comm'], expiresIn: 3600 })
  t.equal(created.status, 201)
  t.equal(created.headers.location, '/v1/services/orders')
  t.match(created.body, { name: 'orders', scopes: ['messages:read', 'messages:send'], audiences: ['comm'], status: 'active', revokedAt: null, version: 1 })
  const first = created.body.credential as { token: string, id: string, expiresAt: string }
  const claims = decode(first.token) as Record<string, number | string>
  t.match(claims, { sub: 'svc:orders', roles: ['service'], scope: 'tokens:exchange tenants:read', jti: first.id })
  t.equal((claims.exp as number) - (claims.iat as number), 3600, 'the lifetime asked for')
  t.ok(Math.abs(Date.parse(first.expiresAt) - (claims.exp as number) * 1000) < 5000, 'the recorded expiry matches the token\'s')
  t.same((created.body.credentials as unknown[]).length, 1)

  t.match(await call('POST', '/v1/services', { name: 'orders', scopes: [], audiences: [] }), { status: 409, body: { code: 'CONFLICT' } }, 'registered once')
  await call('POST', '/v1/services', { name: 'billing', scopes: [], audiences: ['orders'] })
  t.same(((await call('GET', '/v1/services')).body.items as Array<{ name: string }>).map((s) => s.name), ['billing', 'orders'])
  t.match(await call('GET', '/v1/services/orders'), { status: 200, body: { name: 'orders', credentials: [{ id: first.id, revokedAt: null }] } })
  t.match(await call('GET', '/v1/services/nobody'), { status: 404, body: { code: 'NOT_FOUND' } })

  t.match(await call('PATCH', '/v1/services/orders', { audiences: ['comm', 'notes'] }), { status: 200, body: { audiences: ['comm', 'notes'], scopes: ['messages:read', 'messages:send'], version: 2 } })
  t.match(await call('PATCH', '/v1/services/orders', { scopes: ['messages:send'] }), { status: 200, body: { scopes: ['messages:send'], version: 3 } })
  t.match(await call('PATCH', '/v1/services/nobody', { scopes: [] }), { status: 404 })

  // Rotation: a second credential, then the first revoked; both stay listed.
  const rotated = await call('POST', '/v1/services/orders/credentials')
  t.equal(rotated.status, 201)
  const second = rotated.body as { token: string, id: string }
  t.not(second.id, first.id)
  const revokedOne = await call('DELETE', `/v1/services/orders/credentials/${first.id}`)
  t.match(revokedOne.body, { status: 'active', credentials: [{ id: first.id, revokedAt: String }, { id: second.id, revokedAt: null }] })
  t.match(await call('DELETE', '/v1/services/orders/credentials/00000000-0000-4000-8000-000000000000'), { status: 404, body: { code: 'NOT_FOUND', message: 'Credential not found' } })
  t.match(await call('DELETE', `/v1/services/nobody/credentials/${first.id}`), { status: 404, body: { message: 'Service not found' } })
  t.match(await call('POST', '/v1/services/nobody/credentials', {}), { status: 404 })

  // A credential reads tenants (tenants:read) while it is live.
  const acme = tid('sacme')
  t.equal((await call('POST', '/v1/tenants', { id: acme, name: 'Acme' })).status, 201)
  t.equal((await call('GET', `/v1/tenants/${acme}`, undefined, second.token)).status, 200)

  // Revoking the service revokes every credential; the row stays; it can be registered again.
  const revoked = await call('DELETE', '/v1/services/orders')
  t.match(revoked.body, { status: 'revoked', revokedAt: String, credentials: [{ revokedAt: String }, { revokedAt: String }] })
  t.equal((await call('GET', `/v1/tenants/${acme}`, undefined, second.token)).status, 401, 'a revoked credential is refused at once')
  t.match(await call('DELETE', '/v1/services/orders'), { status: 200, body: { revokedAt: revoked.body.revokedAt } }, 'revoking twice keeps the first time')
  t.match(await call('DELETE', '/v1/services/nobody'), { status: 404 })
  t.match(await call('PATCH', '/v1/services/orders', { scopes: [] }), { status: 409, body: { code: 'CONFLICT' } }, 'a revoked service is not changed')
  t.match(await call('POST', '/v1/services/orders/credentials', { expiresIn: 600 }), { status: 409 }, 'nor given credentials')
  const again = await call('POST', '/v1/services', { name: 'orders', scopes: ['messages:read'], audiences: ['comm'] })
  t.match(again.body, { status: 'active', scopes: ['messages:read'], version: 4 }, 'registered again')
  t.equal((await call('GET', `/v1/tenants/${acme}`, undefined, second.token)).status, 401, 'old credentials stay revoked')
  t.equal((await call('GET', `/v1/tenants/${acme}`, undefined, (again.body.credential as { token: string }).token)).status, 200, 'the new one works')
})

t.test('platform admins only; bad input refused', async (t) => {
  const r = await startRegistry(t)
  const owner = r.tokenFor({ sub: 'alice', tenant: tid('own'), roles: ['owner'], scope: 'tenants:read tenants:write' })
  const cases: Array<[string, string | undefined, 'GET' | 'POST', string, unknown, number, string]> = [
    ['no token', undefined, 'GET', '/v1/services', undefined, 401, 'UNAUTHORIZED'],
    ['a tenant owner', owner, 'GET', '/v1/services', undefined, 403, 'FORBIDDEN'],
    ['a service token', r.service, 'GET', '/v1/services', undefined, 403, 'FORBIDDEN'],
    ['an admin without tenants:write', r.tokenFor({ sub: 'ops', roles: ['platform-admin'], scope: 'tenants:read' }), 'POST', '/v1/services', { name: 'x', scopes: [], audiences: [] }, 403, 'FORBIDDEN'],
    ['a bad name', r.admin, 'POST', '/v1/services', { name: 'Orders!', scopes: [], audiences: [] }, 400, 'VALIDATION_FAILED'],
    ['a name with SQL', r.admin, 'POST', '/v1/services', { name: "x'; drop table services;--", scopes: [], audiences: [] }, 400, 'VALIDATION_FAILED'],
    ['a scope that is not a word:word', r.admin, 'POST', '/v1/services', { name: 'x', scopes: ['platform-admin'], audiences: [] }, 400, 'VALIDATION_FAILED'],
    ['the exchange scope itself', r.admin, 'POST', '/v1/services', { name: 'x', scopes: ['tokens:exchange'], audiences: [] }, 400, 'VALIDATION_FAILED'],
    ['a bad audience', r.admin, 'POST', '/v1/services', { name: 'x', scopes: [], audiences: ['Comm Service'] }, 400, 'VALIDATION_FAILED'],
    ['no audiences', r.admin, 'POST', '/v1/services', { name: 'x', scopes: [] }, 400, 'VALIDATION_FAILED'],
    ['an unknown field', r.admin, 'POST', '/v1/services', { name: 'x', scopes: [], audiences: [], roles: ['platform-admin'] }, 400, 'VALIDATION_FAILED'],
    ['a lifetime too long', r.admin, 'POST', '/v1/services', { name: 'x', scopes: [], audiences: [], expiresIn: 10 ** 9 }, 400, 'VALIDATION_FAILED']
  ]
  for (const [label, token, method, url, body, status, code] of cases) {
    const res = await r.app.inject({ method, url, headers: token === undefined ? {} : bearer(token), ...(body === undefined ? {} : { payload: body as Record<string, unknown> }) })
    t.same([res.statusCode, res.json().code], [status, code], label)
  }
  const badId = await r.app.inject({ method: 'DELETE', url: '/v1/services/x/credentials/nope', headers: bearer(r.admin) })
  t.equal(badId.json().code, 'VALIDATION_FAILED', 'a credential id that is not a UUID')
})

t.test('the OpenAPI document: operation ids, tags, the shared error schema', async (t) => {
  const r = await startRegistry(t)
  const doc = (await r.app.inject({ url: '/docs/json' })).json() as { paths: Record<string, Record<string, { operationId?: string, tags?: string[], security?: unknown[], responses: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }> }>> }
  const expected: Array<[string, string, string]> = [
    ['/v1/services', 'post', 'services'], ['/v1/services', 'get', 'services'], ['/v1/services/{name}', 'get', 'services'], ['/v1/services/{name}', 'patch', 'services'],
    ['/v1/services/{name}', 'delete', 'services'], ['/v1/services/{name}/credentials', 'post', 'services'], ['/v1/services/{name}/credentials/{id}', 'delete', 'services'],
    ['/v1/token', 'post', 'tokens'], ['/.well-known/jwks.json', 'get', 'tokens']
  ]
  for (const [path, method, tag] of expected) {
    const op = doc.paths[path]?.[method]
    t.ok(op?.operationId, `${method} ${path}: operationId ${String(op?.operationId)}`)
    t.same(op?.tags, [tag], `${method} ${path}: tag`)
    const errors = Object.keys(op?.responses ?? {}).filter((s) => /^[45]/.test(s))
    t.ok(errors.length > 0 && errors.every((s) => op?.responses[s]?.content?.['application/json']?.schema?.$ref === '#/components/schemas/PlatformError'), `${method} ${path}: errors are PlatformError`)
  }
  t.same(doc.paths['/.well-known/jwks.json']?.get?.security, [], 'the key set is open')
  t.same(doc.paths['/v1/token']?.post?.security, [{ bearer: [] }])
})

t.test('the drizzle schema matches what 0004_services.sql creates', async (t) => {
  const r = await startRegistry(t)
  for (const table of [services, serviceCredentials]) {
    const config = getTableConfig(table)
    const rows = await r.sql<Array<{ column_name: string, is_nullable: string }>>`
      select column_name, is_nullable from information_schema.columns where table_schema = 'public' and table_name = ${config.name} order by column_name`
    t.same(rows.map((c) => [c.column_name, c.is_nullable === 'NO']), config.columns.map((c) => [c.name, c.notNull]).sort(), `${config.name}: columns and nullability`)
    const indexes = await r.sql<Array<{ indexname: string }>>`select indexname from pg_indexes where schemaname = 'public' and tablename = ${config.name}`
    for (const index of config.indexes) t.ok(indexes.some((i) => i.indexname === index.config.name), `${config.name}: index ${index.config.name ?? ''}`)
    for (const fk of config.foreignKeys) {
      const ref = fk.reference()
      t.same([getTableConfig(ref.foreignTable).name, ref.foreignColumns.map((c) => c.name)], ['services', ['name']], `${config.name}: foreign key to services.name`)
    }
  }
  const fks = await r.sql<Array<{ def: string }>>`select pg_get_constraintdef(oid) as def from pg_constraint where conrelid = 'public.service_credentials'::regclass and contype = 'f'`
  t.same(fks.map((f) => f.def), ['FOREIGN KEY (service) REFERENCES services(name) ON DELETE CASCADE'])
})
