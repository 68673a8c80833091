// Delivery through real peers: an SMTP server, an HTTP SMS API and a webhook receiver on loopback.
// Each tenant's message goes out with its own identity and configuration only; failures are
// classified (transient → retried with backoff and Retry-After; permanent → failed at once);
// exhausted messages are dead-lettered and an admin can redrive them.
import { Webhook } from 'standardwebhooks'
import t from 'tap'
import { tenantWebhookSecret } from '../src/delivery/providers/webhook.ts'
import { startPlatform, tid } from './fixtures.ts'
import { settled, sleep, startComm, until } from './helpers.ts'
import { httpPeer, smtpPeer } from './peers.ts'

const PLATFORM_SECRET = 'platform-webhook-secret-0123456789abcdef'

t.test('each tenant\'s message goes out through real peers with its own identity and configuration', async (t) => {
  const p = await startPlatform(t)
  const platformSmtp = await smtpPeer(t, { user: 'platform', password: 's3cret' })
  const ownSmtp = await smtpPeer(t)
  const sms = await httpPeer(t, '/sms')
  const hooks = await httpPeer(t, '/hook')
  const a = tid('pa')
  const b = tid('pb')
  await p.createTenant(a, { domains: ['acme.example.com'], config: { comm: { emailFrom: 'no-reply@acme.example.com', emailFromName: 'Acme', smsSenderId: 'ACME' } } })
  // B relays email through its own SMTP server and names its own sender.
  await p.createTenant(b, { domains: ['globex.example.com'], config: { comm: { emailFrom: 'hello@globex.example.com', smsSenderId: 'GLOBEX', smtp: { host: '127.0.0.1', port: ownSmtp.port } } } })
  const { call } = await startComm(t, p, {
    allowWebhookHosts: ['127.0.0.1'],
    providers: {
      email: 'smtp',
      sms: 'sms-http',
      smtp: { host: '127.0.0.1', port: platformSmtp.port, secure: false, user: 'platform', password: 's3cret' },
      // The loopback peer speaks plain SMTP: the platform allows its login without TLS.
      allowPlaintextSmtpAuth: true,
      smsHttp: { url: sms.url, token: 'sms-token' },
      webhookSecret: PLATFORM_SECRET,
      timeout: 5000
    }
  })

  const emailA = await call('POST', '/v1/messages', a, { channel: 'email', to: 'ann@example.com', subject: 'Your order', text: 'It shipped.', html: '<p>It shipped.</p>' })
  const emailB = await call('POST', '/v1/messages', b, { channel: 'email', to: 'bob@example.com', subject: 'Welcome', text: 'Hi Bob' })
  const smsA = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'Code 1234' })
  const hookA = await call('POST', '/v1/messages', a, { channel: 'webhook', to: hooks.url, body: '{"event":"order.shipped","id":7}' })
  t.same([emailA.status, emailB.status, smsA.status, hookA.status], [202, 202, 202, 202])
  for (const [tenant, id] of [[a, emailA.body.id], [b, emailB.body.id], [a, smsA.body.id], [a, hookA.body.id]]) {
    t.match(await settled(call, tenant, id), { status: 'sent', lastError: null }, `${tenant} ${id} sent`)
  }

  t.equal(platformSmtp.mails.length, 1, 'the platform relay saw A\'s email only')
  const [mailA] = platformSmtp.mails
  t.match(mailA, { from: 'no-reply@acme.example.com', to: ['ann@example.com'], user: 'platform' })
  t.match(mailA?.headers, { from: 'Acme <no-reply@acme.example.com>', to: 'ann@example.com', subject: 'Your order', 'message-id': `<${emailA.body.id}@acme.example.com>` })
  t.equal(ownSmtp.mails.length, 1, 'B\'s own relay saw B\'s email only')
  t.match(ownSmtp.mails[0], { from: 'hello@globex.example.com', to: ['bob@example.com'], user: undefined }, 'with B\'s sender and none of the platform\'s credentials')
  t.match(ownSmtp.mails[0]?.headers, { subject: 'Welcome', 'message-id': /^<[0-9a-f-]{36}@globex\.example\.com>$/ })
  const readA = await call('GET', `/v1/messages/${emailA.body.id}`, a)
  t.equal(readA.body.providerMessageId, `<${emailA.body.id}@acme.example.com>`, 'the provider\'s message id is recorded')

  t.equal(sms.received.length, 1)
  t.same(JSON.parse(sms.received[0]?.body as string), { to: '+15550100', from: 'ACME', body: 'Code 1234', reference: smsA.body.id })
  t.match(sms.received[0]?.headers, { authorization: 'Bearer sms-token', 'idempotency-key': smsA.body.id })
  t.equal((await call('GET', `/v1/messages/${smsA.body.id}`, a)).body.providerMessageId, 'sms-1')

  t.equal(hooks.received.length, 1)
  const hook = hooks.received[0] as { headers: Record<string, string>, body: string }
  t.same(new Webhook(tenantWebhookSecret(PLATFORM_SECRET, a)).verify(hook.body, hook.headers), { event: 'order.shipped', id: 7 }, 'signed with A\'s secret, verified by standardwebhooks')
  t.throws(() => new Webhook(tenantWebhookSecret(PLATFORM_SECRET, b)).verify(hook.body, hook.headers), 'B\'s secret does not verify A\'s webhook')
  t.equal(hook.headers['webhook-id'], `msg_${hookA.body.id}`)
})

t.test('failures: transient ones retried (Retry-After honoured), permanent ones fail at once, exhausted ones wait for a redrive', async (t) => {
  const p = await startPlatform(t)
  const smtp = await smtpPeer(t)
  const sms = await httpPeer(t, '/sms')
  const a = tid('fa')
  const b = tid('fb')
  await p.createTenant(a, { domains: ['acme.example.com'], config: { comm: { emailFrom: 'no-reply@acme.example.com', smsSenderId: 'ACME' } } })
  await p.createTenant(b, { config: { comm: { smsSenderId: 'GLOBEX' } } })
  const { call } = await startComm(t, p, {
    retry: { attempts: 3, baseMs: 100, maxMs: 400 },
    providers: { email: 'smtp', sms: 'sms-http', smtp: { host: '127.0.0.1', port: smtp.port, secure: false }, smsHttp: { url: sms.url }, timeout: 3000 }
  })

  // 503 with Retry-After: 2 → the next attempt waits at least 2 s (the backoff alone is ~0.1 s).
  sms.answer = { status: 503, headers: { 'retry-after': '2' } }
  const slow = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'one' })
  await until(() => sms.received.length === 1, 5000, 'the first attempt')
  await sleep(300)
  sms.answer = { status: 200 }
  const sent = await settled(call, a, slow.body.id)
  t.equal(sent.status, 'sent')
  t.equal(sent.attempts, 2)
  t.match(sent.history.map((h: { status: string }) => h.status), ['queued', 'sending', 'retrying', 'sending', 'sent'])
  t.match(sent.history[2].detail, /attempt 1 failed: sms-http answered 503; next attempt at/)
  const gap = (sms.received[1]?.at as number) - (sms.received[0]?.at as number)
  t.ok(gap >= 1900, `Retry-After honoured: the second attempt came ${gap} ms after the first`)

  // A 400 is permanent: failed after one attempt.
  sms.answer = { status: 400 }
  const rejected = await settled(call, a, (await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550101', body: 'two' })).body.id)
  t.match(rejected, { status: 'failed', attempts: 1, lastError: 'sms-http answered 400' })
  t.match(rejected.history.at(-1), { status: 'failed', detail: /^rejected:/ })

  // SMTP: a refused recipient (550) is permanent.
  smtp.reject.add('gone@example.com')
  const bounced = await settled(call, a, (await call('POST', '/v1/messages', a, { channel: 'email', to: 'gone@example.com', subject: 'x', text: 'y' })).body.id)
  t.match(bounced, { status: 'failed', attempts: 1, lastError: /550|No such user/ })
  // No sender identity (B has none, nor has the platform): permanent, never another tenant's.
  const emailB = await call('POST', '/v1/messages', b, { channel: 'email', to: 'x@example.com', subject: 'x', text: 'y' })
  t.match(await settled(call, b, emailB.body.id), { status: 'failed', attempts: 1, lastError: /emailFrom/ }, 'a tenant with no sender identity fails, never borrowing another\'s')

  // Always 500 → exhausted after 3 attempts → failed (dead letter).
  sms.answer = { status: 500 }
  const doomed = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550102', body: 'three' })
  const dead = await settled(call, a, doomed.body.id, ['failed'], 10_000)
  t.match(dead, { status: 'failed', attempts: 3, lastError: 'sms-http answered 500' })
  t.match(dead.history.at(-1), { status: 'failed', detail: /^gave up after 3 attempts/ })

  // Redrive: admin or owner only, the tenant's own message only, a failed one only.
  t.match(await call('POST', `/v1/messages/${doomed.body.id}/retry`, a), { status: 403, body: { code: 'FORBIDDEN' } }, 'a member may not redrive')
  t.match(await call('POST', `/v1/messages/${doomed.body.id}/retry`, b, undefined, { roles: ['owner'] }), { status: 404, body: { code: 'NOT_FOUND' } }, 'B\'s owner cannot see A\'s message')
  t.match(await call('POST', `/v1/messages/${slow.body.id}/retry`, a, undefined, { roles: ['admin'] }), { status: 409, body: { code: 'CONFLICT' } }, 'a sent message is not redriven')
  sms.answer = { status: 200 }
  const redriven = await call('POST', `/v1/messages/${doomed.body.id}/retry`, a, undefined, { roles: ['admin'] })
  t.match(redriven, { status: 200, body: { id: doomed.body.id, status: 'queued' } })
  const after = await settled(call, a, doomed.body.id)
  t.match(after, { status: 'sent', attempts: 4 })
  t.match(after.history.map((h: { status: string }) => h.status).slice(-3), ['queued', 'sending', 'sent'])
  t.equal(sms.received.filter((r) => JSON.parse(r.body).reference === doomed.body.id).length, 4, 'three failed attempts and the redriven one')
})

t.test('send limits: per minute and per day at accept time, exact across instances', async (t) => {
  const p = await startPlatform(t)
  const a = tid('ra')
  const d = tid('rd')
  const free = tid('rf')
  await p.createTenant(a, { limits: { messagesPerMinute: 3 } })
  await p.createTenant(d, { limits: { messagesPerDay: 7, messagesPerMinute: 1000 } })
  await p.createTenant(free)
  // The minute's window must not turn over in the middle of the test.
  const second = new Date().getSeconds()
  if (second > 40) await sleep((61 - second) * 1000)
  const one = await startComm(t, p, { role: 'api' })
  const two = await startComm(t, p, { role: 'api' })
  const sms = { channel: 'sms', to: '+15550100', body: 'hi' }

  const answers = []
  for (let i = 0; i < 4; i++) answers.push(await one.call('POST', '/v1/messages', a, sms))
  t.same(answers.map((r) => r.status), [202, 202, 202, 429])
  t.same(answers.map((r) => r.headers['x-ratelimit-remaining']), ['2', '1', '0', '0'])
  t.match(answers[3], { body: { code: 'RATE_LIMITED', statusCode: 429 }, headers: { 'x-ratelimit-limit': '3', 'retry-after': /^\d+$/ } })
  const reset = Number(answers[3]?.headers['retry-after'])
  t.ok(reset >= 1 && reset <= 60, `Retry-After is within the minute (${reset})`)
  t.equal((await one.call('GET', '/v1/messages', a)).body.items.length, 3, 'the refused message was not stored')
  // A replay of an accepted request is not counted again.
  const keyed = await one.call('POST', '/v1/messages', free, sms, { headers: { 'idempotency-key': 'k1' } })
  t.equal(keyed.headers['x-ratelimit-limit'], undefined, 'no headers for a tenant without limits')

  // 20 concurrent requests through two instances against a daily quota of 7: exactly 7 accepted.
  const burst = await Promise.all(Array.from({ length: 20 }, async (_, i) => await (i % 2 === 0 ? one : two).call('POST', '/v1/messages', d, sms)))
  t.equal(burst.filter((r) => r.status === 202).length, 7, 'exactly the daily quota, across instances')
  t.ok(burst.filter((r) => r.status !== 202).every((r) => r.status === 429 && r.body.code === 'RATE_LIMITED'), 'the rest are 429 RATE_LIMITED')
  t.equal((await two.call('GET', '/v1/messages?limit=100', d)).body.items.length, 7)
  t.equal((await two.call('POST', '/v1/messages', a, sms)).status, 429, 'the minute\'s count is shared too')
})
