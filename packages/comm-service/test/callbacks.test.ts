// Provider callbacks: forged, unsigned, replayed and cross-tenant receipts are refused and change
// nothing; a valid bounce marks exactly that tenant's message bounced; repeats are no-ops; an
// out-of-order receipt never moves a message backwards.
import { randomBytes, randomUUID } from 'node:crypto'
import { request } from 'undici'
import t from 'tap'
import { Webhook } from 'standardwebhooks'
import { startPlatform, tid } from './fixtures.ts'
import { settled, startComm } from './helpers.ts'
import { httpPeer } from './peers.ts'

const SMS_SECRET = `whsec_${randomBytes(32).toString('base64')}`
const SMTP_SECRET = `whsec_${randomBytes(32).toString('base64')}`

t.test('callbacks: verified before read, tenant-bound, idempotent, never backwards', async (t) => {
  const p = await startPlatform(t)
  const a = tid('cb-a')
  const b = tid('cb-b')
  await p.createTenant(a, { config: { comm: { providers: { sms: 'sms-http' } } } })
  await p.createTenant(b, { config: { comm: { providers: { sms: 'sms-http' } } } })
  const sms = await httpPeer(t, '/sms')
  const { call, url } = await startComm(t, p, {
    callbackSecrets: { 'sms-http': SMS_SECRET, smtp: SMTP_SECRET },
    providers: { sms: 'sms-http', smsHttp: { url: sms.url }, smsSenderId: 'PLAT' }
  })
  const sendSms = async (tenant: string): Promise<string> => {
    const res = await call('POST', '/v1/messages', tenant, { channel: 'sms', to: '+15550100', body: 'hi' })
    t.equal((await settled(call, tenant, res.body.id)).status, 'sent')
    return res.body.id as string
  }
  const ma = await sendSms(a)
  const mb = await sendSms(b)

  const post = async (provider: string, body: unknown, options: { secret?: string | null, id?: string, at?: Date, headers?: Record<string, string>, raw?: string } = {}): Promise<{ status: number, body: any }> => {
    const payload = options.raw ?? JSON.stringify(body)
    const id = options.id ?? `evt_${randomUUID()}`
    const headers: Record<string, string> = { 'content-type': 'application/json', ...options.headers }
    const at = options.at ?? new Date()
    if (options.secret !== null) Object.assign(headers, { 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(options.secret ?? SMS_SECRET).sign(id, at, payload) })
    const res = await request(`${url}/v1/webhooks/${provider}`, { method: 'POST', headers, body: payload })
    return { status: res.statusCode, body: await res.body.json() }
  }
  const statusOf = async (tenant: string, id: string): Promise<string> => (await call('GET', `/v1/messages/${id}`, tenant)).body.status
  const bounceA = { type: 'bounced', tenant: a, messageId: ma, detail: 'mailbox unavailable' }

  // Refused before anything is read, and nothing changes.
  const refusals: Array<[string, Promise<{ status: number, body: any }>, number, string]> = [
    ['unsigned', post('sms-http', bounceA, { secret: null }), 401, 'UNAUTHORIZED'],
    ['signed with another secret', post('sms-http', bounceA, { secret: `whsec_${randomBytes(32).toString('base64')}` }), 401, 'UNAUTHORIZED'],
    ['signed for the other provider', post('sms-http', bounceA, { secret: SMTP_SECRET }), 401, 'UNAUTHORIZED'],
    ['replayed: ten minutes old', post('sms-http', bounceA, { at: new Date(Date.now() - 600_000) }), 401, 'UNAUTHORIZED'],
    ['from the future', post('sms-http', bounceA, { at: new Date(Date.now() + 600_000) }), 401, 'UNAUTHORIZED'],
    ['cross-tenant: B named, A\'s message', post('sms-http', { ...bounceA, tenant: b }), 404, 'NOT_FOUND'],
    ['header names another tenant than the signed body', post('sms-http', bounceA, { headers: { 'x-tenant-id': b } }), 403, 'TENANT_MISMATCH'],
    ['unknown tenant', post('sms-http', { ...bounceA, tenant: tid('nobody') }), 404, 'TENANT_NOT_FOUND'],
    ['unknown provider', post('carrier-pigeon', bounceA), 400, 'VALIDATION_FAILED'],
    ['malformed webhook-id', post('sms-http', bounceA, { id: 'has space' }), 401, 'UNAUTHORIZED'],
    ['malformed timestamp', post('sms-http', bounceA, { secret: null, headers: { 'webhook-id': 'x', 'webhook-timestamp': 'soon', 'webhook-signature': 'v1,x' } }), 401, 'UNAUTHORIZED'],
    ['signed garbage', post('sms-http', null, { raw: '{"type":' }), 400, 'VALIDATION_FAILED'],
    ['signed, bad type', post('sms-http', { ...bounceA, type: 'sent' }), 400, 'VALIDATION_FAILED'],
    ['signed, injected tenant', post('sms-http', { ...bounceA, tenant: 'a"; drop table messages; --' }), 400, 'VALIDATION_FAILED'],
    ['signed, __proto__ field', post('sms-http', null, { raw: `{"type":"bounced","tenant":"${a}","messageId":"${ma}","__proto__":{"x":1}}` }), 400, 'VALIDATION_FAILED']
  ]
  for (const [name, pending, status, code] of refusals) {
    const res = await pending
    t.equal(res.status, status, name)
    t.equal(res.body.code, code, `${name}: ${code}`)
  }
  t.equal(await statusOf(a, ma), 'sent', 'A\'s message unchanged')
  t.equal(await statusOf(b, mb), 'sent', 'B\'s message unchanged')

  // A valid bounce: exactly A's message.
  const bounce = await post('sms-http', bounceA, { id: 'evt-bounce-1' })
  t.equal(bounce.status, 200)
  t.same(bounce.body, { messageId: ma, status: 'bounced', applied: true, duplicate: false })
  t.equal(await statusOf(a, ma), 'bounced')
  t.equal(await statusOf(b, mb), 'sent', 'B\'s message still sent')
  const repeat = await post('sms-http', bounceA, { id: 'evt-bounce-1' })
  t.same(repeat.body, { messageId: ma, status: 'bounced', applied: false, duplicate: true }, 'a repeat changes nothing')
  const history = (await call('GET', `/v1/messages/${ma}`, a)).body.history as Array<{ status: string, detail?: string }>
  t.equal(history.filter((h) => h.status === 'bounced').length, 1, 'one bounce in the history')
  t.match(history.at(-1), { status: 'bounced', detail: /mailbox unavailable/ })

  // Out of order: a delivery receipt after the bounce does not move it back.
  const late = await post('sms-http', { type: 'delivered', tenant: a, messageId: ma })
  t.same(late.body, { messageId: ma, status: 'bounced', applied: false, duplicate: false })
  t.equal(await statusOf(a, ma), 'bounced')

  // Delivered by the provider's own id; an SMTP receipt does not apply to an SMS.
  const providerId = (await call('GET', `/v1/messages/${mb}`, b)).body.providerMessageId as string
  const wrongChannel = await post('smtp', { type: 'delivered', tenant: b, providerMessageId: providerId }, { secret: SMTP_SECRET })
  t.same(wrongChannel.body, { messageId: mb, status: 'sent', applied: false, duplicate: false })
  const delivered = await post('sms-http', { type: 'delivered', tenant: b, providerMessageId: providerId })
  t.same(delivered.body, { messageId: mb, status: 'delivered', applied: true, duplicate: false })
  t.equal(await statusOf(b, mb), 'delivered')
  t.equal((await post('sms-http', { type: 'delivered', tenant: b, messageId: mb })).body.applied, false, 'delivered twice: no change')
  t.equal((await post('sms-http', { type: 'bounced', tenant: b, messageId: mb })).body.status, 'bounced', 'a bounce after delivery is later news and applies')

  // A queued (not yet sent) message is not marked delivered.
  const scheduled = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'later', scheduledAt: new Date(Date.now() + 3_600_000).toISOString() })
  t.same((await post('sms-http', { type: 'delivered', tenant: a, messageId: scheduled.body.id })).body, { messageId: scheduled.body.id, status: 'queued', applied: false, duplicate: false })

  const empty = await request(`${url}/v1/webhooks/sms-http`, { method: 'POST', headers: { 'webhook-id': 'x', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,x' } })
  t.equal(empty.statusCode, 401, 'no body')
  await empty.body.dump()

  // A provider without a configured secret has no callbacks.
  const { url: bare } = await startComm(t, p)
  const none = await request(`${bare}/v1/webhooks/sms-http`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(none.statusCode, 404)
  t.equal((await none.body.json() as { code: string }).code, 'NOT_FOUND')
})
