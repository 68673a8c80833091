import t from 'tap'
import { request } from 'undici'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { startNotesServer, type RunningNotes } from '../src/server.ts'
import { notesEnv, startPlatform, tid, type Platform } from './fixtures.ts'

interface Answer { status: number, body: any, headers: Record<string, unknown> }

function client (service: RunningNotes, p: Platform) {
  const token = (tenant: string, scope = 'notes:read notes:write', sub = `user@${tenant}`): string => p.sign({ sub, tenant, roles: ['member'], scope })
  return async (method: string, path: string, tenant: string, body?: unknown, options: { token?: string, headers?: Record<string, string> } = {}): Promise<Answer> => {
    const res = await request(service.url + path, {
      method: method as 'GET',
      headers: {
        'x-tenant-id': tenant,
        authorization: `Bearer ${options.token ?? token(tenant)}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...options.headers
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await res.body.text()
    return { status: res.statusCode, body: text === '' ? null : JSON.parse(text), headers: res.headers }
  }
}

t.test('notes: CRUD, validation with codes, pagination, and one tenant never sees another\'s', async (t) => {
  const p = await startPlatform(t)
  const acme = tid('acme')
  const globex = tid('globex')
  await p.createTenant(acme)
  await p.createTenant(globex)
  const service = await startNotesServer(loadConfig(notesEnv(p)))
  t.teardown(() => service.close())
  const call = client(service, p)

  const created = await call('POST', '/v1/notes', acme, { title: 'Plan', body: 'Ship it', tags: ['work'] })
  t.equal(created.status, 201)
  t.match(created.body, { id: Number, title: 'Plan', body: 'Ship it', tags: ['work'], author: `user@${acme}` })
  t.equal(created.headers.location, `/v1/notes/${created.body.id as number}`)
  const id = created.body.id as number

  t.match(await call('GET', `/v1/notes/${id}`, acme), { status: 200, body: { title: 'Plan' } })
  t.match(await call('GET', `/v1/notes/${id}`, globex), { status: 404, body: { code: 'NOT_FOUND' } }, 'globex cannot read acme\'s note by id')
  t.match(await call('PATCH', `/v1/notes/${id}`, globex, { title: 'Mine now' }), { status: 404 }, 'nor change it')
  t.match(await call('DELETE', `/v1/notes/${id}`, globex), { status: 404 }, 'nor delete it')
  t.match(await call('GET', '/v1/notes', globex), { status: 200, body: { items: [], next: null } })
  t.match(await call('PATCH', `/v1/notes/${id}`, acme, { title: 'Plan B' }), { status: 200, body: { title: 'Plan B', body: 'Ship it' } })

  // Validation at the edge, with a code on every 400.
  for (const [name, body] of [
    ['no title', { body: 'x' }],
    ['an empty title', { title: '' }],
    ['a title with a newline', { title: 'a\nb' }],
    ['a numeric title', { title: 42 }],
    ['an unknown field', { title: 'x', owner: 'globex' }],
    ['a bad tag', { title: 'x', tags: ['Bad Tag'] }],
    ['repeated tags', { title: 'x', tags: ['a', 'a'] }]
  ] as const) {
    t.match(await call('POST', '/v1/notes', acme, body), { status: 400, body: { code: 'VALIDATION_FAILED' } }, name)
  }
  t.match(await call('PATCH', `/v1/notes/${id}`, acme, {}), { status: 400, body: { code: 'VALIDATION_FAILED' } }, 'an empty patch')
  t.match(await call('GET', '/v1/notes/abc', acme), { status: 400, body: { code: 'VALIDATION_FAILED' } }, 'an id that is not one')
  t.match(await call('GET', '/v1/notes/1%20or%201=1', acme), { status: 400 }, 'injection in the id')
  t.match(await call('GET', '/v1/notes?cursor=AAAA', acme), { status: 400, body: { code: 'VALIDATION_FAILED' } }, 'a made-up cursor')
  t.match(await call('GET', '/v1/notes?limit=1000', acme), { status: 400 }, 'a limit beyond 100')
  t.match(await call('GET', '/v1/notes?tag=x\'%20or%20true--', acme), { status: 400 }, 'injection in a filter')

  // Auth and tenant agreement come from the library.
  t.match(await call('GET', '/v1/notes', acme, undefined, { token: 'junk' }), { status: 401, body: { code: 'UNAUTHORIZED' } })
  t.match(await call('GET', '/v1/notes', acme, undefined, { token: p.sign({ sub: 'u', tenant: globex, roles: ['member'], scope: 'notes:read' }) }), { status: 403, body: { code: 'TENANT_MISMATCH' } })
  t.match(await call('POST', '/v1/notes', acme, { title: 'x' }, { token: p.sign({ sub: 'u', tenant: acme, roles: ['member'], scope: 'notes:read' }) }), { status: 403, body: { code: 'FORBIDDEN' } })
  t.match(await call('GET', '/v1/notes', tid('nobody'), undefined, { token: p.sign({ sub: 'u', tenant: tid('nobody'), roles: ['member'], scope: 'notes:read' }) }), { status: 404, body: { code: 'TENANT_NOT_FOUND' } })

  // Pagination: newest first, opaque cursors, filters.
  for (let i = 1; i <= 5; i++) t.equal((await call('POST', '/v1/notes', acme, { title: `n${i}`, tags: i % 2 === 0 ? ['even'] : [] })).status, 201)
  const first = await call('GET', '/v1/notes?limit=4', acme)
  t.same(first.body.items.map((n: { title: string }) => n.title), ['n5', 'n4', 'n3', 'n2'])
  t.type(first.body.next, 'string')
  const second = await call('GET', `/v1/notes?limit=4&cursor=${first.body.next as string}`, acme)
  t.same(second.body.items.map((n: { title: string }) => n.title), ['n1', 'Plan B'])
  t.equal(second.body.next, null)
  t.same((await call('GET', '/v1/notes?tag=even', acme)).body.items.map((n: { title: string }) => n.title), ['n4', 'n2'])
  t.equal((await call('DELETE', `/v1/notes/${id}`, acme)).status, 204)
  t.equal((await call('GET', `/v1/notes/${id}`, acme)).status, 404)

  t.match(await request(`${service.url}/health`).then(async (r) => await r.body.json()), { status: 'ok' })
  t.match(await request(`${service.url}/ready`).then(async (r) => await r.body.json()), { status: 'ready', registry: true, database: true })
})

t.test('concurrent writers in two tenants: each sees exactly its own; the per-tenant limit holds', async (t) => {
  const p = await startPlatform(t)
  const a = tid('conc-a')
  const b = tid('conc-b')
  await p.createTenant(a)
  await p.createTenant(b, { config: { notes: { maxNotes: 7 } } })
  const service = await startNotesServer(loadConfig(notesEnv(p)))
  t.teardown(() => service.close())
  const call = client(service, p)
  const writes = await Promise.all(Array.from({ length: 60 }, async (_, i) => {
    const tenant = i % 2 === 0 ? a : b
    return [tenant, (await call('POST', '/v1/notes', tenant, { title: `${tenant}:${i}` })).status] as const
  }))
  t.equal(writes.filter(([tenant, status]) => tenant === a && status === 201).length, 30, 'every write of A landed')
  t.equal(writes.filter(([tenant, status]) => tenant === b && status === 201).length, 7, 'B stopped at its configured limit under concurrency')
  t.equal(writes.filter(([tenant, status]) => tenant === b && status === 409).length, 23)
  for (const [tenant, expected] of [[a, 30], [b, 7]] as const) {
    const page = await call('GET', '/v1/notes?limit=100', tenant)
    t.equal(page.body.items.length, expected)
    t.ok(page.body.items.every((n: { title: string }) => n.title.startsWith(`${tenant}:`)), `${tenant} sees only its own notes`)
  }
  t.match(await call('GET', '/v1/settings', b), { status: 200, body: { maxNotes: 7, maxBodyLength: 20000 } })
})

t.test('a tenant created after start is served with its tables within two seconds; bad settings fall back once', async (t) => {
  const p = await startPlatform(t)
  const service = await startNotesServer(loadConfig(notesEnv(p)))
  t.teardown(() => service.close())
  const call = client(service, p)
  const fresh = tid('fresh')
  const started = performance.now()
  await p.createTenant(fresh, { config: { notes: { maxBodyLength: -1 } } })
  let res: Answer
  do {
    res = await call('POST', '/v1/notes', fresh, { title: 'hello', body: 'x'.repeat(30) })
  } while (res.status !== 201 && performance.now() - started < 2000)
  const ms = performance.now() - started
  t.equal(res.status, 201, JSON.stringify(res.body))
  t.ok(ms < 2000, `created → first note stored in ${Math.round(ms)} ms`)
  t.match(await call('GET', '/v1/settings', fresh), { body: { maxBodyLength: 20000 } }, 'an invalid stored setting: the defaults apply')
  t.match(await call('POST', '/v1/notes', fresh, { title: 'long', body: 'x'.repeat(20_001) }), { status: 400, body: { code: 'VALIDATION_FAILED', message: /20000/ } })
})

t.test('the app without a server, a port in use, and readiness when the registry is gone', async (t) => {
  const p = await startPlatform(t)
  const odd = tid('odd')
  await p.createTenant(odd, { config: { notes: { maxNotes: 1.5 } } })
  const app = await buildApp({ multitenant: loadConfig(notesEnv(p)).multitenant })
  t.teardown(() => app.close())
  const token = p.sign({ sub: 'u', tenant: odd, roles: ['member'], scope: 'notes:read notes:write' })
  const settings = await app.inject({ url: '/v1/settings', headers: { 'x-tenant-id': odd, authorization: `Bearer ${token}` } })
  t.same(settings.json(), { maxNotes: 10000, maxBodyLength: 20000 }, 'maxNotes 1.5 is not valid: the defaults apply')
  const created = await app.inject({ method: 'POST', url: '/v1/notes', headers: { 'x-tenant-id': odd, authorization: `Bearer ${token}` }, payload: { title: 't' } })
  t.equal(created.statusCode, 201)
  const tooLong = await app.inject({ method: 'PATCH', url: `/v1/notes/${created.json().id as number}`, headers: { 'x-tenant-id': odd, authorization: `Bearer ${token}` }, payload: { body: 'x'.repeat(20_001) } })
  t.match(tooLong.json(), { code: 'VALIDATION_FAILED', message: /20000/ }, 'a patch is held to the tenant\'s limit too')

  const running = await startNotesServer(loadConfig(notesEnv(p)))
  t.teardown(() => running.close())
  const port = new URL(running.url).port
  await t.rejects(startNotesServer(loadConfig(notesEnv(p, { PORT: port }))), { code: 'EADDRINUSE' }, 'a port in use fails the start (and closes what it opened)')

  await p.stopRegistry()
  await app.tenantRegistry.listTenants().catch(() => undefined) // the client notices
  const ready = await app.inject({ url: '/ready' })
  t.equal(ready.statusCode, 503)
  t.same(ready.json(), { status: 'unavailable', registry: false, database: true })
})
