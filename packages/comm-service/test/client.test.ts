// The typed client other services use: inside a tenant scope it sends through the library's
// outgoing-call support with a token exchanged for that tenant (the testkit's stand-in for the
// registry's POST /v1/token, same contract), and its types match the OpenAPI document the
// service publishes. Also: who sent each message (sentBy) for services and users.
import { runAsTenant } from '@platform/multitenant'
import { startTokenIssuer } from '@platform/testkit/token-issuer'
import { createServer } from 'node:http'
import t from 'tap'
import { Agent, request } from 'undici'
import { tenantPropagation } from '@platform/multitenant/http'
import { createCommClient, type Accepted, type Channel, type MessageDetail, type MessageRequest, type MessageStatus } from '../src/client.ts'
import { SECRET, startPlatform, tid } from './fixtures.ts'
import { startComm } from './helpers.ts'

// Each object literal must name every key of its type and no other (checked by tsc), so the
// runtime key lists below are the types' keys, compared with the published schemas.
const REQUEST_KEYS = { channel: true, to: true, subject: true, text: true, html: true, body: true, metadata: true, scheduledAt: true, template: true } satisfies Record<keyof MessageRequest, true>
const REQUIRED_REQUEST_KEYS = ['channel', 'to'] satisfies Array<{ [K in keyof MessageRequest]-?: undefined extends MessageRequest[K] ? never : K }[keyof MessageRequest]>
const DETAIL_KEYS = {
  id: true,
  channel: true,
  to: true,
  subject: true,
  status: true,
  metadata: true,
  scheduledAt: true,
  attempts: true,
  lastError: true,
  providerMessageId: true,
  createdAt: true,
  updatedAt: true,
  template: true,
  sentBy: true,
  history: true
} satisfies Record<keyof MessageDetail, true>
const ACCEPTED_KEYS = { id: true, status: true } satisfies Record<keyof Accepted, true>
const CHANNELS = { email: true, sms: true, webhook: true } satisfies Record<Channel, true>
const STATUSES = { queued: true, sending: true, sent: true, delivered: true, failed: true, bounced: true, canceled: true } satisfies Record<MessageStatus, true>

const NOTES_CREDENTIAL = 'notes-service-credential'

t.test('a service sends for a tenant with an exchanged token; messages record who sent them', async (t) => {
  const p = await startPlatform(t)
  const a = tid('cl-a')
  const b = tid('cl-b')
  const held = tid('cl-held')
  for (const id of [a, b, held]) await p.createTenant(id)
  const issuer = await startTokenIssuer({
    secret: SECRET,
    services: { [NOTES_CREDENTIAL]: { name: 'notes', scopes: ['messages:send', 'messages:read'], audiences: ['comm'] } },
    tenant: (id) => id === held ? 'suspended' : 'active'
  })
  t.teardown(() => issuer.close())
  // The comm-service accepts the platform's tokens and those issued for its own audience.
  const { url, call } = await startComm(t, p, {
    role: 'api',
    multitenant: { registry: { url: p.registryUrl, token: p.serviceToken, ttl: 200 }, db: { url: p.serviceDatabaseUrl, max: 8 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: ['platform', 'comm'] } }
  })
  const comm = createCommClient({ url, exchange: { registry: issuer.url, credential: NOTES_CREDENTIAL } })
  t.teardown(() => comm.close())

  const accepted = await runAsTenant(a, () => comm.send({ channel: 'email', to: 'ann@example.com', subject: 'Your note', text: 'It is saved.' }))
  t.match(accepted, { id: /^[0-9a-f-]{36}$/, status: 'queued' })
  const seen = await runAsTenant(a, () => comm.get(accepted.id))
  t.match(seen, { id: accepted.id, channel: 'email', to: 'ann@example.com', sentBy: 'svc:notes', history: [{ status: 'queued' }] })
  t.same(issuer.issued.map((x) => [x.service, x.tenant, x.audience]), [['notes', a, 'comm']], 'one exchange for the tenant and the comm audience')
  // A user of the tenant sees the same record; the user's own message carries the user's sub.
  t.match(await call('GET', `/v1/messages/${accepted.id}`, a), { status: 200, body: { sentBy: 'svc:notes' } })
  const mine = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'from a user' })
  t.match(await call('GET', `/v1/messages/${mine.body.id as string}`, a), { status: 200, body: { sentBy: 'u' } })
  const listed = await runAsTenant(a, () => comm.list({ limit: 10 }))
  t.same(listed.items.map((m) => m.sentBy), ['u', 'svc:notes'], 'the list shows who sent each, newest first')
  t.equal(listed.next, null)

  // An idempotency key: given, a repeat gets the first answer; not given, each send is new.
  const key = `order-${tid('k')}`
  const first = await runAsTenant(a, () => comm.send({ channel: 'sms', to: '+15550100', body: 'once', idempotencyKey: key }))
  const again = await runAsTenant(a, () => comm.send({ channel: 'sms', to: '+15550100', body: 'once', idempotencyKey: key }))
  t.equal(again.id, first.id)
  const x = await runAsTenant(a, () => comm.send({ channel: 'sms', to: '+15550100', body: 'twice' }))
  const y = await runAsTenant(a, () => comm.send({ channel: 'sms', to: '+15550100', body: 'twice' }))
  t.not(x.id, y.id, 'a fresh key for each send')
  t.match(await runAsTenant(a, () => comm.cancel(x.id)), { id: x.id, status: 'canceled', sentBy: 'svc:notes' })

  // Tenants stay apart: B's client sees nothing of A's, and A's message is a 404 for B.
  const ofB = await runAsTenant(b, async () => {
    await comm.send({ channel: 'sms', to: '+15550199', body: 'for b' })
    return await comm.list()
  })
  t.same(ofB.items.map((m) => m.to), ['+15550199'])
  await t.rejects(runAsTenant(b, () => comm.get(accepted.id)), { code: 'NOT_FOUND', statusCode: 404 })
  t.equal(issuer.issued.length, 2, 'one exchange per tenant')

  // Refusals: no tenant scope; a suspended tenant (the exchange says so); the comm-service's own.
  await t.rejects(comm.send({ channel: 'sms', to: '+15550100', body: 'x' }), { code: 'TENANT_REQUIRED' })
  await t.rejects(runAsTenant(held, () => comm.send({ channel: 'sms', to: '+15550100', body: 'x' })), { code: 'TENANT_SUSPENDED', statusCode: 403 })
  await t.rejects(runAsTenant(a, () => comm.send({ channel: 'sms', to: 'not a number', body: 'x' })), { code: 'VALIDATION_FAILED', statusCode: 400, name: 'CommError' })

  // A dispatcher of the caller's, shared with its other calls.
  const shared = new Agent().compose(tenantPropagation({ origins: [{ origin: url, audience: 'comm', scope: 'messages:read' }], exchange: { registry: issuer.url, credential: NOTES_CREDENTIAL } }))
  t.teardown(() => (shared as unknown as Agent).close())
  const reader = createCommClient({ url: `${url}/`, dispatcher: shared })
  t.equal((await runAsTenant(a, () => reader.get(accepted.id))).sentBy, 'svc:notes')
  await t.rejects(runAsTenant(a, () => reader.send({ channel: 'sms', to: '+15550100', body: 'x' })), { code: 'FORBIDDEN', statusCode: 403 }, 'a token without messages:send')
  await reader.close()
  t.throws(() => createCommClient({ url }), { name: 'TypeError' })
})

t.test('a service\'s own token acts for no tenant; a tenant-bound one does, for its tenant only', async (t) => {
  const p = await startPlatform(t)
  const a = tid('svc-a')
  const b = tid('svc-b')
  await p.createTenant(a)
  await p.createTenant(b)
  const { url } = await startComm(t, p, { role: 'api' })
  const as = async (token: string, tenant: string, method: 'GET' | 'POST' = 'POST'): Promise<{ status: number, body: any }> => {
    const res = await request(`${url}/v1/messages`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'x-tenant-id': tenant, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      ...(method === 'POST' ? { body: JSON.stringify({ channel: 'sms', to: '+15550100', body: 'hi' }) } : {})
    })
    return { status: res.statusCode, body: await res.body.json() }
  }
  // Issue 18: a tenantless service token with messages:send and X-Tenant-ID used to act as the tenant.
  const own = p.sign({ sub: 'svc:orders', roles: ['service'], scope: 'messages:send messages:read' })
  t.match(await as(own, a), { status: 403, body: { code: 'FORBIDDEN' } })
  t.match(await as(own, a, 'GET'), { status: 403, body: { code: 'FORBIDDEN' } })
  // What the token exchange issues (minted here with the test secret, as the registry would sign it).
  const bound = p.sign({ sub: 'svc:orders', tenant: a, roles: ['service'], scope: 'messages:send messages:read', act: { sub: 'svc:orders' } })
  const sent = await as(bound, a)
  t.match(sent, { status: 202, body: { status: 'queued' } })
  const read = await request(`${url}/v1/messages/${sent.body.id as string}`, { headers: { authorization: `Bearer ${bound}` } })
  t.match(await read.body.json(), { sentBy: 'svc:orders' })
  t.match(await as(bound, b), { status: 403, body: { code: 'TENANT_MISMATCH' } })
  const noSend = p.sign({ sub: 'svc:orders', tenant: a, roles: ['service'], scope: 'messages:read' })
  t.match(await as(noSend, a), { status: 403, body: { code: 'FORBIDDEN' } }, 'the scope still applies')
  const templates = await request(`${url}/v1/templates`, { headers: { authorization: `Bearer ${bound}` } })
  t.equal(templates.statusCode, 403, 'a service reads messages, not the tenant\'s templates')
  await templates.body.dump()
})

t.test('answers that are not the platform\'s error shape still fail clearly', async (t) => {
  const issuer = await startTokenIssuer({ secret: SECRET, services: { [NOTES_CREDENTIAL]: { name: 'notes', scopes: ['messages:send'], audiences: ['comm'] } } })
  t.teardown(() => issuer.close())
  const proxy = createServer((req, res) => {
    res.statusCode = req.url?.startsWith('/gateway/') === true ? 502 : 404
    if (res.statusCode === 404) res.setHeader('content-type', 'application/json')
    res.end(res.statusCode === 404 ? '{"statusCode":404,"error":"Not Found"}' : 'Bad Gateway')
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => proxy.close(resolve)))
  const origin = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`
  const behind = createCommClient({ url: `${origin}/gateway`, exchange: { registry: issuer.url, credential: NOTES_CREDENTIAL } })
  t.teardown(() => behind.close())
  await t.rejects(runAsTenant('acme', () => behind.send({ channel: 'sms', to: '+15550100', body: 'x' })), { code: 'HTTP_502', statusCode: 502, message: /answered HTTP 502/ })
  const elsewhere = createCommClient({ url: origin, exchange: { registry: issuer.url, credential: NOTES_CREDENTIAL } })
  t.teardown(() => elsewhere.close())
  await t.rejects(runAsTenant('acme', () => elsewhere.list({ status: 'queued' })), { code: 'HTTP_404', statusCode: 404 })
})

t.test('the client\'s types match the OpenAPI document the service publishes', async (t) => {
  const p = await startPlatform(t)
  const { url } = await startComm(t, p, { role: 'api' })
  const docs = await (await request(`${url}/docs/json`)).body.json() as { paths: Record<string, Record<string, any>>, components?: { schemas?: Record<string, any> } }
  const post = docs.paths['/v1/messages']?.post
  const body = post.requestBody.content['application/json'].schema
  t.same(Object.keys(body.properties).sort(), Object.keys(REQUEST_KEYS).sort(), 'the request body\'s fields')
  t.same([...body.required].sort(), [...REQUIRED_REQUEST_KEYS].sort(), 'its required fields')
  t.same([...body.properties.channel.enum].sort(), Object.keys(CHANNELS).sort(), 'the channels')
  t.same(Object.keys(body.properties.template.properties).sort(), ['data', 'locale', 'name', 'version'], 'a template reference')
  const accepted = post.responses['202'].content['application/json'].schema
  t.same(Object.keys(accepted.properties).sort(), Object.keys(ACCEPTED_KEYS).sort())
  const detail = docs.paths['/v1/messages/{id}']?.get.responses['200'].content['application/json'].schema
  t.same(Object.keys(detail.properties).sort(), Object.keys(DETAIL_KEYS).sort(), 'a message\'s fields, sentBy among them')
  t.same([...detail.properties.status.enum].sort(), Object.keys(STATUSES).sort(), 'the statuses')
  t.same(detail.properties.sentBy.type, ['string', 'null'])
  const page = docs.paths['/v1/messages']?.get.responses['200'].content['application/json'].schema
  t.same(Object.keys(page.properties).sort(), ['items', 'next'])
  t.same(Object.keys(page.properties.items.items.properties).sort(), Object.keys(DETAIL_KEYS).filter((k) => k !== 'history').sort())
})
