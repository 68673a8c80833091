import t from 'tap'
import { mergePatch } from '../src/tenants.ts'
import { bearer, SECRET, startRegistry, tid } from './fixtures/registry.ts'

t.test('merge patch (RFC 7396)', async (t) => {
  t.same(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { b: { c: null, e: 4 }, f: [1] }), { a: 1, b: { d: 3, e: 4 }, f: [1] })
  t.same(mergePatch('scalar', { a: { b: 1 } }), { a: { b: 1 } }, 'an object replaces a non-object')
  t.same(mergePatch([1, 2], { a: 1 }), { a: 1 })
  t.same(mergePatch({ a: 1 }, [2]), [2], 'an array replaces')
})

t.test('PATCH: fields, JSON merge, If-Match forms, unknown tenant', async (t) => {
  const r = await startRegistry(t, { config: { jwt: { secret: SECRET }, baseDomain: 'example.com', clusters: ['default', 'eu-2'] } })
  const id = tid('patchy')
  const created = await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'Patchy', contactEmail: 'a@patchy.test', config: { comm: { emailFrom: `a@${id}.example.com`, smsSenderId: 'P' } }, metadata: { plan: 'x' }, limits: { messagesPerMinute: 10 } } })
  t.equal(created.statusCode, 201)
  const patch = async (payload: unknown, headers: Record<string, string> = {}, target = id): Promise<{ statusCode: number, json: () => any }> =>
    await r.app.inject({ method: 'PATCH', url: `/v1/tenants/${target}`, headers: { ...bearer(r.admin), ...headers }, payload: payload as object })

  const all = await patch({ name: 'Patchy Inc', tier: 'premium', database: 'eu-2', contactEmail: null, config: { comm: { smsSenderId: null, emailFromName: 'Patchy' } }, metadata: { plan: null, region: 'eu' }, limits: { messagesPerMinute: null, messagesPerDay: 100 } })
  t.equal(all.statusCode, 200)
  t.match(all.json(), { name: 'Patchy Inc', tier: 'premium', database: 'eu-2', contactEmail: null, metadata: { region: 'eu' }, limits: { messagesPerDay: 100 } })
  t.same(all.json().config, { comm: { emailFrom: `a@${id}.example.com`, emailFromName: 'Patchy' } })
  t.notOk('plan' in all.json().metadata)
  t.notOk('messagesPerMinute' in all.json().limits)
  const version = all.json().version as number

  t.equal((await patch({ name: 'Kept' }, { 'if-match': `"${id}.${version}"` })).statusCode, 200, 'the current version matches')
  for (const header of [`"${id}.${version}"`, 'W/"nonsense"', '*x', `"other-tenant.${version + 1}"`]) {
    const res = await patch({ name: 'Stale' }, { 'if-match': header })
    t.equal(res.statusCode, 412, `If-Match ${header}`)
    t.equal(res.json().code, 'PRECONDITION_FAILED')
  }
  t.equal((await r.app.inject({ url: `/v1/tenants/${id}`, headers: bearer(r.admin) })).json().name, 'Kept', 'no stale write landed')
  const unknown = await patch({ name: 'x' }, {}, tid('ghost'))
  t.equal(unknown.statusCode, 404)
  t.equal(unknown.json().code, 'TENANT_NOT_FOUND')
})

t.test('conditional GET, status transitions of unknown tenants, purge of unknown', async (t) => {
  const r = await startRegistry(t)
  const id = tid('cond')
  await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'Cond' } })
  const etag = (await r.app.inject({ url: `/v1/tenants/${id}`, headers: bearer(r.service) })).headers.etag as string
  for (const inm of [etag, `"x.1", ${etag}`, '*']) {
    t.equal((await r.app.inject({ url: `/v1/tenants/${id}`, headers: { ...bearer(r.service), 'if-none-match': inm } })).statusCode, 304, `If-None-Match ${inm}`)
  }
  t.equal((await r.app.inject({ url: `/v1/tenants/${id}`, headers: { ...bearer(r.service), 'if-none-match': '"x.1"' } })).statusCode, 200)
  const ghost = tid('ghost')
  for (const [method, url] of [['POST', `/v1/tenants/${ghost}/suspend`], ['POST', `/v1/tenants/${ghost}/activate`], ['DELETE', `/v1/tenants/${ghost}`], ['DELETE', `/v1/tenants/${ghost}?purge=true&confirm=${ghost}`], ['GET', `/v1/tenants/${ghost}`]] as const) {
    const res = await r.app.inject({ method, url, headers: bearer(r.admin) })
    t.equal(res.statusCode, 404, `${method} ${url}`)
    t.equal(res.json().code, 'TENANT_NOT_FOUND')
  }
  const unconfirmed = await r.app.inject({ method: 'DELETE', url: `/v1/tenants/${id}?purge=true&confirm=someone-else`, headers: bearer(r.admin) })
  t.equal(unconfirmed.statusCode, 400)
  t.equal((await r.app.inject({ url: `/v1/tenants/${id}`, headers: bearer(r.service) })).json().status, 'active', 'an unconfirmed purge did nothing')
  const wrongType = await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: { ...bearer(r.admin), 'content-type': 'application/xml' }, payload: '<id>x</id>' })
  t.equal(wrongType.statusCode, 415)
  t.equal(wrongType.json().code, 'UNSUPPORTED_MEDIA_TYPE')
  const badJson = await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: { ...bearer(r.admin), 'content-type': 'application/json' }, payload: '{"id":' })
  t.equal(badJson.statusCode, 400)
  t.equal(badJson.json().code, 'VALIDATION_FAILED')
})

t.test('a tenant token sees only its own tenant in lists and look-ups', async (t) => {
  const r = await startRegistry(t)
  const mine = tid('mine')
  const theirs = tid('theirs')
  await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id: mine, name: 'Mine', tier: 'free', domains: [`${mine}.org`] } })
  await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id: theirs, name: 'Theirs', domains: [`${theirs}.org`] } })
  const token = bearer(r.tokenFor({ sub: 'u', tenant: mine, roles: ['member'], scope: 'tenants:read' }))
  const list = async (query: string): Promise<string[]> => (await r.app.inject({ url: `/v1/tenants?${query}`, headers: token })).json().items.map((x: { id: string }) => x.id)
  t.same(await list(''), [mine])
  t.same(await list('tier=free'), [mine])
  t.same(await list('tier=premium'), [])
  t.same(await list('status=active'), [mine])
  t.same(await list('status=suspended'), [])
  t.same(await list('offset=1'), [])
  t.equal((await r.app.inject({ url: `/v1/resolve?host=${mine}.org`, headers: token })).json().id, mine)
  const other = await r.app.inject({ url: `/v1/resolve?host=${theirs}.org`, headers: token })
  t.equal(other.statusCode, 404, 'another tenant\'s host is not revealed')
  t.notMatch(other.body, theirs)
  const stranger = bearer(r.tokenFor({ sub: 'u', tenant: tid('gone'), roles: ['member'], scope: 'tenants:read' }))
  t.same((await r.app.inject({ url: '/v1/tenants', headers: stranger })).json(), { items: [], total: 0, limit: 50, offset: 0 })
})

t.test('PATCH with a tenant token: its own owner or admin with config:write changes its config, nothing else', async (t) => {
  const r = await startRegistry(t)
  const id = tid('selfcfg')
  const other = tid('othercfg')
  for (const tenant of [id, other]) t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id: tenant, name: tenant } })).statusCode, 201)
  const token = (claims: Record<string, unknown>): string => r.tokenFor({ sub: 'u', tenant: id, roles: ['owner'], scope: 'config:write', ...claims })
  const patch = async (tok: string, payload: unknown, target = id): Promise<{ statusCode: number, json: () => any }> =>
    await r.app.inject({ method: 'PATCH', url: `/v1/tenants/${target}`, headers: bearer(tok), payload: payload as object })
  const cases: Array<[string, string, unknown, string, number, string?]> = [
    ['owner, config:write, config only', token({}), { config: { comm: { emailFrom: `a@${id}.example.com` } } }, id, 200],
    ['admin, config:write', token({ roles: ['admin'] }), { config: { comm: { smsSenderId: 'SELF' } } }, id, 200],
    ['manager', token({ roles: ['manager'] }), { config: { comm: { emailFrom: `b@${id}.example.com` } } }, id, 403, 'FORBIDDEN'],
    ['member', token({ roles: ['member'] }), { config: { x: 1 } }, id, 403, 'FORBIDDEN'],
    ['no config:write', token({ scope: 'messages:send' }), { config: { x: 1 } }, id, 403, 'FORBIDDEN'],
    ['another tenant', token({}), { config: { x: 1 } }, other, 403, 'TENANT_MISMATCH'],
    ['limits', token({}), { limits: { messagesPerMinute: 1_000_000 } }, id, 403, 'FORBIDDEN'],
    ['tier', token({}), { tier: 'premium' }, id, 403, 'FORBIDDEN'],
    ['platform token without tenants:write', r.tokenFor({ sub: 'ops', roles: ['platform-admin'], scope: 'tenants:read' }), { name: 'x' }, id, 403, 'FORBIDDEN'],
    ['platform token without platform-admin', r.service, { name: 'x' }, id, 403, 'FORBIDDEN']
  ]
  for (const [name, tok, payload, target, status, code] of cases) {
    const res = await patch(tok, payload, target)
    t.equal(res.statusCode, status, name)
    if (code !== undefined) t.equal(res.json().code, code, `${name}: ${code}`)
  }
  const self = (await r.app.inject({ url: `/v1/tenants/${id}`, headers: bearer(r.admin) })).json()
  t.same(self.config, { comm: { emailFrom: `a@${id}.example.com`, smsSenderId: 'SELF' } }, 'only the allowed writes landed')
  t.equal(self.tier, 'standard')
  t.same(self.limits, {})
  t.same((await r.app.inject({ url: `/v1/tenants/${other}`, headers: bearer(r.admin) })).json().config, {}, 'the other tenant is untouched')
})
