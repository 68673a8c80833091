import t, { type Test } from 'tap'
import { LogProvider } from '../src/delivery/providers/log.ts'
import { startPlatform, tid, type Platform } from './fixtures.ts'
import { startComm, until } from './helpers.ts'

async function service (t: Test, p: Platform) {
  const provider = new LogProvider()
  const { app, call } = await startComm(t, p, {}, { provider })
  return { app, provider, call: async (method: string, path: string, tenant: string, body?: unknown, headers: Record<string, string> = {}, scope = 'messages:send messages:read') => await call(method, path, tenant, body, { headers, scope }) }
}

const email = { channel: 'email', to: 'ann@example.com', subject: 'Hello', text: 'Hi Ann' }

t.test('accept, deliver, read: the message lives in its tenant and nowhere else', async (t) => {
  const p = await startPlatform(t)
  const a = tid('a')
  const b = tid('b')
  await p.createTenant(a)
  await p.createTenant(b)
  const { provider, call } = await service(t, p)

  const accepted = await call('POST', '/v1/messages', a, email)
  t.equal(accepted.status, 202)
  t.match(accepted.body, { id: String, status: 'queued' })
  t.equal(accepted.headers.location, `/v1/messages/${accepted.body.id as string}`)
  const id = accepted.body.id as string
  await until(async () => (await call('GET', `/v1/messages/${id}`, a)).body.status === 'sent')
  const sent = await call('GET', `/v1/messages/${id}`, a)
  t.match(sent.body, { id, channel: 'email', to: 'ann@example.com', status: 'sent', attempts: 1, providerMessageId: String })
  t.same(sent.body.history.map((h: { status: string }) => h.status), ['queued', 'sending', 'sent'])
  t.match(provider.sent, [{ tenant: a, message: { id, to: 'ann@example.com', subject: 'Hello', text: 'Hi Ann' } }], 'delivered once, as A\'s')

  // B cannot read, list or cancel A's message.
  t.match(await call('GET', `/v1/messages/${id}`, b), { status: 404, body: { code: 'NOT_FOUND' } })
  t.match(await call('GET', '/v1/messages', b), { status: 200, body: { items: [], next: null } })
  t.match(await call('POST', `/v1/messages/${id}/cancel`, b), { status: 404 })
  t.match(await call('GET', '/v1/messages', a), { body: { items: [{ id }] } })
  t.match(await call('POST', `/v1/messages/${id}/cancel`, a), { status: 409, body: { code: 'CONFLICT', message: /sent/ } }, 'too late to cancel')

  // A scheduled message canceled while it waits is never sent.
  const later = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'later', scheduledAt: new Date(Date.now() + 60_000).toISOString() })
  t.equal(later.status, 202)
  t.match(await call('POST', `/v1/messages/${later.body.id as string}/cancel`, a), { status: 200, body: { status: 'canceled' } })
  t.match(await call('GET', '/v1/messages?status=canceled', a), { body: { items: [{ id: later.body.id }] } })
  t.match(await call('GET', '/v1/messages?channel=sms&to=%2B15550100', a), { body: { items: [{ id: later.body.id }] } })

  // Pages, newest first, with opaque cursors.
  for (let i = 0; i < 3; i++) t.equal((await call('POST', '/v1/messages', a, { ...email, subject: `n${i}` })).status, 202)
  const page = await call('GET', '/v1/messages?limit=2', a)
  t.equal(page.body.items.length, 2)
  const rest = await call('GET', `/v1/messages?limit=10&cursor=${page.body.next as string}`, a)
  t.equal(rest.body.items.length, 3)
  t.equal(rest.body.next, null)
  t.match(await call('GET', '/v1/messages?cursor=nonsense', a), { status: 400, body: { code: 'VALIDATION_FAILED' } })
})

t.test('idempotency: one key, one message and one delivery, per tenant', async (t) => {
  const p = await startPlatform(t)
  const a = tid('ia')
  const b = tid('ib')
  await p.createTenant(a)
  await p.createTenant(b)
  const { provider, call } = await service(t, p)
  const answers = await Promise.all(Array.from({ length: 50 }, async () => await call('POST', '/v1/messages', a, email, { 'idempotency-key': 'order-42' })))
  const ids = new Set(answers.map((r) => r.body.id as string))
  t.same(answers.map((r) => r.status).filter((s) => s !== 202), [], 'every one answered 202')
  t.equal(ids.size, 1, '50 concurrent POSTs with one key → one message')
  t.equal(answers.filter((r) => r.headers['idempotent-replayed'] === 'true').length, 49)
  const other = await call('POST', '/v1/messages', b, email, { 'idempotency-key': 'order-42' })
  t.equal(other.status, 202)
  t.not(other.body.id, [...ids][0], 'the same key in another tenant is another message')
  t.match(await call('POST', '/v1/messages', a, { ...email, subject: 'Changed' }, { 'idempotency-key': 'order-42' }), { status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } })
  t.match(await call('POST', '/v1/messages', a, email, { 'idempotency-key': 'bad key with spaces' }), { status: 400, body: { code: 'VALIDATION_FAILED' } })
  await until(async () => provider.sent.length >= 2)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(provider.sent.filter((s) => s.tenant === a).length, 1, 'one delivery for A')
  t.equal(provider.sent.filter((s) => s.tenant === b).length, 1, 'one for B')
})

t.test('malformed requests: 400 with a code, nothing stored', async (t) => {
  const p = await startPlatform(t)
  const a = tid('bad')
  await p.createTenant(a)
  const { call } = await service(t, p)
  const cases: Array<[string, unknown]> = [
    ['no channel', { to: 'a@b.co' }],
    ['unknown channel', { channel: 'fax', to: '1' }],
    ['email without @', { ...email, to: 'nobody' }],
    ['email with CR/LF', { ...email, to: 'a@b.co\r\nBcc: x@y.z' }],
    ['subject with a newline', { ...email, subject: 'Hi\r\nBcc: x@y.z' }],
    ['email without subject', { channel: 'email', to: 'a@b.co', text: 'x' }],
    ['email without content', { channel: 'email', to: 'a@b.co', subject: 'x' }],
    ['email with body', { ...email, body: 'x' }],
    ['sms to a non-E.164 number', { channel: 'sms', to: '5550100', body: 'x' }],
    ['sms without body', { channel: 'sms', to: '+15550100' }],
    ['sms too long', { channel: 'sms', to: '+15550100', body: 'x'.repeat(1601) }],
    ['sms with subject', { channel: 'sms', to: '+15550100', body: 'x', subject: 'y' }],
    ['webhook to metadata', { channel: 'webhook', to: 'http://169.254.169.254/latest', body: '{}' }],
    ['webhook to a private address', { channel: 'webhook', to: 'https://10.0.0.1/hook', body: '{}' }],
    ['webhook to IPv6 loopback', { channel: 'webhook', to: 'http://[::1]:8080/', body: '{}' }],
    ['webhook to localhost', { channel: 'webhook', to: 'http://localhost/hook', body: '{}' }],
    ['webhook not http', { channel: 'webhook', to: 'ftp://example.com/x', body: '{}' }],
    ['webhook not a URL', { channel: 'webhook', to: 'example.com/hook', body: '{}' }],
    ['webhook with credentials', { channel: 'webhook', to: 'https://u:p@example.com/hook', body: '{}' }],
    ['webhook without body', { channel: 'webhook', to: 'https://93.184.216.34/hook' }],
    ['scheduledAt in the past', { ...email, scheduledAt: '2020-01-01T00:00:00Z' }],
    ['scheduledAt too far', { ...email, scheduledAt: new Date(Date.now() + 40 * 86_400_000).toISOString() }],
    ['scheduledAt not a time', { ...email, scheduledAt: 'tomorrow' }],
    ['metadata not an object', { ...email, metadata: [1] }],
    ['metadata too big', { ...email, metadata: { blob: 'x'.repeat(5000) } }],
    ['unknown field', { ...email, from: 'ceo@other.test' }],
    ['numeric to', { ...email, to: 42 }],
    ['channel in capitals', { ...email, channel: 'EMAIL' }],
    ['email with a display name', { ...email, to: 'Ann <ann@example.com>' }],
    ['email with two addresses', { ...email, to: 'ann@example.com,bob@example.com' }],
    ['email with a bare LF', { ...email, to: 'ann@example.com\nX-Evil: 1' }],
    ['subject too long', { ...email, subject: 'x'.repeat(256) }],
    ['subject with a tab', { ...email, subject: 'a\tb' }],
    ['subject empty', { ...email, subject: '' }],
    ['html too long', { channel: 'email', to: 'a@b.co', subject: 'x', html: 'x'.repeat(256_001) }],
    ['sms with letters', { channel: 'sms', to: '+1555CALLME', body: 'x' }],
    ['sms number too long', { channel: 'sms', to: '+1234567890123456', body: 'x' }],
    ['sms with text', { channel: 'sms', to: '+15550100', body: 'x', text: 'y' }],
    ['webhook to 127.1', { channel: 'webhook', to: 'http://127.1/hook', body: '{}' }],
    ['webhook to 0.0.0.0', { channel: 'webhook', to: 'http://0.0.0.0/', body: '{}' }],
    ['webhook to IPv4-mapped loopback', { channel: 'webhook', to: 'http://[::ffff:127.0.0.1]/', body: '{}' }],
    ['webhook to a hex address', { channel: 'webhook', to: 'http://0x7f000001/', body: '{}' }],
    ['webhook to CGNAT', { channel: 'webhook', to: 'https://100.64.0.1/', body: '{}' }],
    ['webhook to 192.168', { channel: 'webhook', to: 'https://192.168.1.1/', body: '{}' }],
    ['webhook body too long', { channel: 'webhook', to: 'https://93.184.216.34/hook', body: 'x'.repeat(64_001) }],
    ['metadata too many keys', { ...email, metadata: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, i])) }],
    ['metadata null', { ...email, metadata: null }],
    ['scheduledAt a number', { ...email, scheduledAt: 1767225600000 }],
    ['scheduledAt without a zone', { ...email, scheduledAt: '2030-01-01 10:00' }],
    ['body an array', [email]],
    ['body a string', '"hello"'],
    ['to empty', { ...email, to: '' }]
  ]
  for (const [name, body] of cases) {
    const res = await call('POST', '/v1/messages', a, body)
    t.equal(res.status, 400, `${name}: ${JSON.stringify(res.body)}`)
    t.equal(res.body.code, 'VALIDATION_FAILED', name)
    t.notMatch(JSON.stringify(res.body), /select|insert|stack|at .*\.ts/i, `${name}: no internals`)
  }
  t.match(await call('POST', '/v1/messages', a, '{"channel":'), { status: 400, body: { code: 'VALIDATION_FAILED' } }, 'broken JSON')
  t.match(await call('POST', '/v1/messages', a, { ...email, text: 'x'.repeat(600_000) }), { status: 413, body: { code: 'PAYLOAD_TOO_LARGE' } })
  t.match(await call('GET', '/v1/messages/not-a-uuid', a), { status: 400 })
  t.match(await call('POST', '/v1/messages', a, 'channel=email', { 'content-type': 'application/x-www-form-urlencoded' }), { status: 415, body: { code: 'UNSUPPORTED_MEDIA_TYPE' } }, 'not JSON')
  t.match(await call('GET', '/v1/messages?limit=1000', a), { status: 400, body: { code: 'VALIDATION_FAILED' } }, 'limit out of range')
  t.match(await call('GET', '/v1/messages?status=lost', a), { status: 400, body: { code: 'VALIDATION_FAILED' } }, 'unknown status filter')
  t.match(await call('GET', '/v1/messages?sort=asc', a), { status: 400, body: { code: 'VALIDATION_FAILED' } }, 'unknown query parameter')
  t.match(await call('POST', '/v1/messages', a, email, {}, 'messages:read'), { status: 403, body: { code: 'FORBIDDEN' } })
  t.match(await call('GET', '/v1/messages', a), { body: { items: [] } }, 'nothing was stored')
})
