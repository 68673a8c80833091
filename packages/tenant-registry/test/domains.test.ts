import t from 'tap'
import { bearer, startRegistry, tid } from './fixtures/registry.ts'

t.test('custom domains: lower-cased, port-free, unique across tenants, primary moves, removal', async (t) => {
  const r = await startRegistry(t)
  const a = tid('dom-a')
  const b = tid('dom-b')
  for (const id of [a, b]) t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: id } })).statusCode, 201)
  const add = async (id: string, domain: string, primary?: boolean): Promise<{ statusCode: number, json: () => any }> =>
    await r.app.inject({ method: 'POST', url: `/v1/tenants/${id}/domains`, headers: bearer(r.admin), payload: primary === undefined ? { domain } : { domain, primary } })

  const first = await add(a, `Mail.${a}.TEST:8443`)
  t.equal(first.statusCode, 201)
  t.same(first.json().domains, [{ domain: `mail.${a}.test`, primary: true }], 'the first domain is primary')
  t.same((await add(a, `www.${a}.test.`)).json().domains, [{ domain: `mail.${a}.test`, primary: true }, { domain: `www.${a}.test`, primary: false }])
  t.same((await add(a, `app.${a}.test`, true)).json().domains.filter((d: { primary: boolean }) => d.primary), [{ domain: `app.${a}.test`, primary: true }], 'primary moves')

  const taken = await add(b, `MAIL.${a}.test`)
  t.equal(taken.statusCode, 409)
  t.equal(taken.json().code, 'CONFLICT')
  t.same((await r.app.inject({ url: `/v1/tenants/${b}`, headers: bearer(r.admin) })).json().domains, [], 'b got nothing')
  t.equal((await add(a, `mail.${a}.test`)).statusCode, 409, 'the same domain twice on one tenant')
  t.equal((await add('no-such-tenant', 'x.example.org')).json().code, 'TENANT_NOT_FOUND')

  t.equal((await r.app.inject({ url: `/v1/resolve?host=WWW.${a}.test:443`, headers: bearer(r.service) })).json().id, a)

  const removed = await r.app.inject({ method: 'DELETE', url: `/v1/tenants/${a}/domains/www.${a}.test`, headers: bearer(r.admin) })
  t.equal(removed.statusCode, 200)
  t.same(removed.json().domains.map((d: { domain: string }) => d.domain), [`app.${a}.test`, `mail.${a}.test`])
  t.equal((await r.app.inject({ url: `/v1/resolve?host=www.${a}.test`, headers: bearer(r.service) })).statusCode, 404)
  const foreign = await r.app.inject({ method: 'DELETE', url: `/v1/tenants/${b}/domains/mail.${a}.test`, headers: bearer(r.admin) })
  t.equal(foreign.statusCode, 404, 'b cannot remove a\'s domain')
  t.equal(foreign.json().code, 'DOMAIN_NOT_FOUND')
  t.equal((await r.app.inject({ url: `/v1/resolve?host=mail.${a}.test`, headers: bearer(r.service) })).json().id, a, 'still a\'s')
  t.equal((await r.app.inject({ method: 'DELETE', url: `/v1/tenants/${a}/domains/mail.${a}.test`, headers: bearer(r.service) })).statusCode, 403, 'writes need the admin')

  // Concurrent claims of one domain by many tenants: exactly one wins.
  const ids = Array.from({ length: 6 }, (_, i) => tid(`claim-${i}`))
  for (const id of ids) await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: id } })
  const claims = await Promise.all(ids.map((id) => add(id, 'contested.example.org')))
  t.same(claims.map((c) => c.statusCode).sort(), [201, 409, 409, 409, 409, 409])
  t.equal((await r.sql`select count(*)::int as n from domains where domain = 'contested.example.org'`)[0]?.n, 1)
})
