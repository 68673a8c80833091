// API and worker apart (COMM_ROLE): what the API accepts, a worker started later delivers; a
// canceled message is never sent; a suspended tenant's messages wait; an archived one's are dropped.
import t, { type Test } from 'tap'
import { request } from 'undici'
import { buildApp, type CommRole } from '../src/app.ts'
import { LogProvider } from '../src/delivery/providers/log.ts'
import { SECRET, startPlatform, tid, type Platform } from './fixtures.ts'

async function start (t: Test, p: Platform, role: CommRole, provider?: LogProvider) {
  const app = await buildApp({
    multitenant: { registry: { url: p.registryUrl, token: p.serviceToken, ttl: 100 }, db: { url: p.serviceDatabaseUrl, max: 4 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' } },
    queueUrl: p.serviceDatabaseUrl,
    retry: { suspendedMs: 500 },
    role
  }, provider === undefined ? {} : { provider })
  t.teardown(() => app.close())
  return { app, provider: provider as LogProvider, url: await app.listen({ port: 0, host: '127.0.0.1' }) }
}

async function post (url: string, p: Platform, tenant: string, body: unknown): Promise<{ status: number, id: string }> {
  const res = await request(`${url}/v1/messages`, { method: 'POST', headers: { 'x-tenant-id': tenant, authorization: `Bearer ${p.sign({ sub: 'u', tenant, roles: ['member'], scope: 'messages:send messages:read' })}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const json = await res.body.json() as { id: string }
  return { status: res.statusCode, id: json.id }
}

async function status (url: string, p: Platform, tenant: string, id: string): Promise<string> {
  const res = await request(`${url}/v1/messages/${id}`, { headers: { 'x-tenant-id': tenant, authorization: `Bearer ${p.sign({ sub: 'u', tenant, roles: ['member'], scope: 'messages:read messages:send' })}` } })
  return ((await res.body.json()) as { status: string }).status
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('the API alone queues; a worker alone delivers', async (t) => {
  const p = await startPlatform(t)
  const a = tid('wa')
  const held = tid('held')
  const gone = tid('gone')
  for (const id of [a, held, gone]) await p.createTenant(id)
  const api = await start(t, p, 'api')
  const sms = { channel: 'sms', to: '+15550100', body: 'hi' }
  const first = await post(api.url, p, a, sms)
  const canceled = await post(api.url, p, a, sms)
  const waiting = await post(api.url, p, held, sms)
  const dropped = await post(api.url, p, gone, sms)
  t.same([first.status, canceled.status, waiting.status, dropped.status], [202, 202, 202, 202])
  const cancel = await request(`${api.url}/v1/messages/${canceled.id}/cancel`, { method: 'POST', headers: { 'x-tenant-id': a, authorization: `Bearer ${p.sign({ sub: 'u', tenant: a, roles: ['member'], scope: 'messages:send' })}` } })
  t.equal(cancel.statusCode, 200)
  await sleep(700)
  t.equal(await status(api.url, p, a, first.id), 'queued', 'no worker in an API-only process')

  // The held tenant is suspended, the gone one archived, before the worker starts.
  const admin = p.sign({ sub: 'admin', roles: ['platform-admin'], scope: 'tenants:read tenants:write' })
  t.equal((await request(`${p.registryUrl}/v1/tenants/${held}/suspend`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } })).statusCode, 200)
  t.equal((await request(`${p.registryUrl}/v1/tenants/${gone}`, { method: 'DELETE', headers: { authorization: `Bearer ${admin}` } })).statusCode, 200)

  const worker = await start(t, p, 'worker', new LogProvider({ keep: 2 }))
  t.equal((await request(`${worker.url}/v1/messages`, { method: 'POST' })).statusCode, 404, 'no API in a worker-only process')
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline && await status(api.url, p, a, first.id) !== 'sent') await sleep(50)
  t.equal(await status(api.url, p, a, first.id), 'sent', 'the worker delivered what the API accepted')
  await sleep(700)
  t.equal(await status(api.url, p, a, canceled.id), 'canceled', 'a canceled message is never sent')
  t.same(worker.provider.sent.map((s) => s.message.id), [first.id], 'the provider saw only the message that was due')

  // The suspended tenant's message waits, and goes out once it is active again.
  t.equal((await request(`${p.registryUrl}/v1/tenants/${held}/activate`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } })).statusCode, 200)
  const later = Date.now() + 15_000
  while (Date.now() < later && !worker.provider.sent.some((s) => s.message.id === waiting.id)) await sleep(100)
  t.ok(worker.provider.sent.some((s) => s.message.id === waiting.id), 'delivered after the tenant was activated')
  t.notOk(worker.provider.sent.some((s) => s.message.id === dropped.id), 'the archived tenant\'s message is dropped')
  t.ok(worker.provider.sent.length <= 2, 'the log provider keeps only the last ones')
})
