// The webhook provider against a real receiver on loopback; signatures checked with an
// independent implementation (the `standardwebhooks` package).
import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import { Webhook } from 'standardwebhooks'
import t from 'tap'
import { pinAddresses } from '../src/delivery/address.ts'
import { signWebhook, WebhookProvider } from '../src/delivery/providers/webhook.ts'
import { makeContext } from './tenant.ts'

const secret = `whsec_${randomBytes(24).toString('base64')}`
const message = (to: string, body = '{"event":"order.paid","id":42}') => ({ id: 'c0ffee00-0000-4000-8000-000000000001', channel: 'webhook' as const, to, subject: null, text: null, html: null, body, metadata: {} })

t.test('signed deliveries, verified independently; failures classified', async (t) => {
  const received: Array<{ headers: Record<string, string>, body: string }> = []
  let answer = 204
  const receiver = Fastify()
  receiver.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => done(null, body))
  receiver.post('/hook', async (request, reply) => {
    received.push({ headers: request.headers as Record<string, string>, body: request.body as string })
    if (answer === 429) reply.header('retry-after', '7')
    return await reply.code(answer).send()
  })
  await receiver.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => receiver.close())
  const url = `http://localhost:${(receiver.server.address() as { port: number }).port}/hook`
  const provider = new WebhookProvider({ secrets: () => [secret], allowHosts: ['localhost'], timeout: 2000 })
  t.teardown(() => provider.close())

  const result = await provider.send(message(url), makeContext('acme'))
  t.equal(result.providerMessageId, 'msg_c0ffee00-0000-4000-8000-000000000001')
  const [first] = received
  t.same(new Webhook(secret).verify(first?.body as string, first?.headers as Record<string, string>), { event: 'order.paid', id: 42 }, 'the signature verifies with standardwebhooks')
  t.throws(() => new Webhook(`whsec_${randomBytes(24).toString('base64')}`).verify(first?.body as string, first?.headers as Record<string, string>), 'and not with another secret')

  answer = 500
  await t.rejects(provider.send(message(url), makeContext('acme')), { code: 'PROVIDER_TRANSIENT', message: /500/, retryAfterMs: undefined })
  answer = 429
  await t.rejects(provider.send(message(url), makeContext('acme')), { code: 'PROVIDER_TRANSIENT', retryAfterMs: 7000 })
  answer = 410
  await t.rejects(provider.send(message(url), makeContext('acme')), { code: 'PROVIDER_REJECTED', message: /410/ })

  // Connect-time check: the same name is refused when not allowed (it resolves to loopback).
  const strict = new WebhookProvider({ secrets: () => [secret] })
  t.teardown(() => strict.close())
  await t.rejects(strict.send(message(url), makeContext('acme')), { code: 'PROVIDER_REJECTED', message: /non-public address/ })
  await receiver.close()
  await t.rejects(provider.send(message(url), makeContext('acme')), { code: 'PROVIDER_TRANSIENT', message: /unreachable/ })
})

t.test('the signature and the lookup on their own', async (t) => {
  t.equal(signWebhook(Buffer.from('key').toString('base64'), 'id', 1, 'b'), signWebhook(`whsec_${Buffer.from('key').toString('base64')}`, 'id', 1, 'b'), 'the whsec_ prefix is optional')
  await t.rejects(pinAddresses('localhost', 80), { code: 'EBLOCKED' })
  const allowed = await pinAddresses('localhost', 80, { allow: ['localhost'] })
  t.ok(allowed.every((a) => /^(127\.0\.0\.1|::1)$/.test(a)), 'an allowed name answers its addresses')
  await t.rejects(pinAddresses('no-such-host.invalid', 80), { code: 'ENOTFOUND' })
})
