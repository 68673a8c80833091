// The platform admin view: per-tenant counts and queue depth from one table and the queue (a
// tenant token gets 403, a tenant role cannot read the table), and one tenant's messages read in
// that tenant's scope.
import t from 'tap'
import { request } from 'undici'
import { startPlatform, tid } from './fixtures.ts'
import { settled, startComm, until } from './helpers.ts'

t.test('admin stats and a tenant\'s messages: platform-admin only, counts per tenant, queue depth', async (t) => {
  const p = await startPlatform(t)
  const a = tid('st-a')
  const b = tid('st-b')
  const c = tid('st-c')
  for (const id of [a, b, c]) await p.createTenant(id)
  const { call, url, app } = await startComm(t, p)
  const sms = { channel: 'sms', to: '+15550100', body: 'hi' }
  for (let i = 0; i < 3; i++) {
    const res = await call('POST', '/v1/messages', a, sms)
    await settled(call, a, res.body.id)
  }
  const one = await call('POST', '/v1/messages', b, sms)
  await settled(call, b, one.body.id)
  const later = await call('POST', '/v1/messages', b, { ...sms, scheduledAt: new Date(Date.now() + 3_600_000).toISOString() })
  t.equal((await call('POST', `/v1/messages/${later.body.id as string}/cancel`, b)).status, 200)
  // C's messages wait in the queue: an API-only instance and no worker... except this one's, so
  // queue them while its worker cannot keep up: it is stopped first.
  const api = await startComm(t, p, { role: 'api' })
  await app.close()
  for (let i = 0; i < 2; i++) t.equal((await api.call('POST', '/v1/messages', c, sms)).status, 202)

  const admin = p.sign({ sub: 'ops@platform', roles: ['platform-admin'], scope: 'tenants:read' })
  const get = async (path: string, token = admin): Promise<{ status: number, body: any }> => {
    const res = await request(api.url + path, { headers: { authorization: `Bearer ${token}` } })
    return { status: res.statusCode, body: await res.body.json() }
  }
  let stats: any
  await until(async () => {
    stats = (await get('/v1/admin/stats')).body
    const byId = new Map((stats.tenants as Array<{ tenant: string }>).map((s) => [s.tenant, s]))
    return (byId.get(a) as any)?.counts.sent === 3 && (byId.get(c) as any)?.counts.queued === 2
  }, 10_000, 'the counts to be flushed')
  const byId = new Map((stats.tenants as Array<{ tenant: string }>).map((s) => [s.tenant, s]))
  t.same(byId.get(a), { tenant: a, counts: { queued: 3, sent: 3, delivered: 0, failed: 0, bounced: 0, canceled: 0 }, queue: { depth: 0, oldestSeconds: 0 } })
  t.match(byId.get(b), { counts: { queued: 2, sent: 1, canceled: 1 }, queue: { depth: 0 } })
  t.match(byId.get(c), { counts: { queued: 2, sent: 0 }, queue: { depth: 2 } })
  const oldest = (byId.get(c) as any).queue.oldestSeconds as number
  t.ok(oldest >= 0 && oldest < 60, `the oldest job's age (${oldest} s)`)
  t.ok(stats.totals.queued >= 7, 'totals add up')
  t.equal(stats.windowHours, 24)

  for (const [who, token] of [['a tenant owner', p.sign({ sub: 'u', tenant: a, roles: ['owner'], scope: 'messages:read messages:send config:write templates:write' })], ['a platform token without the role', p.sign({ sub: 'svc', roles: [], scope: 'tenants:read' })]] as const) {
    const res = await get('/v1/admin/stats', token)
    t.equal(res.status, 403, `${who} gets 403`)
    t.equal(res.body.code, 'FORBIDDEN')
  }
  t.equal((await request(`${api.url}/v1/admin/stats`)).statusCode, 401, 'no token: 401')

  // One tenant's messages, in that tenant's scope only.
  const listed = await get(`/v1/admin/tenants/${c}/messages`)
  t.equal(listed.status, 200)
  t.equal(listed.body.items.length, 2)
  t.ok(listed.body.items.every((m: { body?: string, to: string }) => m.to === '+15550100'))
  const ofA = await get(`/v1/admin/tenants/${a}/messages?limit=2`)
  t.equal(ofA.body.items.length, 2)
  t.type(ofA.body.next, 'string', 'paged')
  const page2 = await get(`/v1/admin/tenants/${a}/messages?limit=2&cursor=${encodeURIComponent(ofA.body.next as string)}`)
  t.equal(page2.body.items.length, 1, 'the second page')
  t.match(await get(`/v1/admin/tenants/${a}/messages?cursor=garbage`), { status: 400, body: { code: 'VALIDATION_FAILED' } })
  t.match(await get(`/v1/admin/tenants/${tid('ghost')}/messages`), { status: 404, body: { code: 'TENANT_NOT_FOUND' } })
  t.match(await get('/v1/admin/tenants/Bad_Id/messages'), { status: 400 })
  t.match(await get(`/v1/admin/tenants/${a}/messages`, p.sign({ sub: 'u', tenant: a, roles: ['owner'], scope: 'messages:read' })), { status: 403 }, 'not for tenant tokens, even their own tenant')

  // No tenant role can read or write the table.
  await t.rejects(api.app.tenantDb.query('select * from pgboss.comm_tenant_hourly', [], { tenant: a }), { code: '42501' })
  await t.rejects(api.app.tenantDb.query('insert into pgboss.comm_tenant_hourly values ($1, now(), $2, 1000)', [b, 'sent'], { tenant: a }), { code: '42501' })
  t.ok(url.startsWith('http://'))
})

t.test('the stats recorder keeps its counts while the database is away', async (t) => {
  const p = await startPlatform(t)
  const { DeliveryQueue } = await import('../src/queue/boss.ts')
  const { StatsRecorder } = await import('../src/stats.ts')
  const queue = new DeliveryQueue({ url: p.serviceDatabaseUrl, max: 1 })
  await queue.start()
  const recorder = new StatsRecorder(() => queue, { flushMs: 60_000 })
  await recorder.install()
  recorder.count('x', 'sent')
  recorder.count('x', 'sent')
  await queue.stop()
  await recorder.flush()
  t.equal(recorder.pending, 2, 'kept for the next flush')
  await recorder.close()
})
