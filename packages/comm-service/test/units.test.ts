// The parts that need no server: validation rules, fingerprints, cursors, the queue's setup and
// its adapter, the log provider.
import postgres from 'postgres'
import { createTestDatabase } from '@platform/testkit'
import t from 'tap'
import { LogProvider } from '../src/delivery/providers/log.ts'
import { decodeCursor, encodeCursor, fingerprint } from '../src/messages/store.ts'
import { isPublicAddress } from '../src/delivery/address.ts'
import { checkMessage, checkWebhookTarget } from '../src/messages/validate.ts'
import { setupQueueSchema } from '../src/queue/setup.ts'
import { makeContext } from './tenant.ts'

t.test('webhook targets: public addresses only, unless a development host is allowed', async (t) => {
  for (const address of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1']) {
    t.notOk(isPublicAddress(address), `${address} is refused`)
  }
  for (const address of ['93.184.216.34', '2606:4700::1111']) t.ok(isPublicAddress(address), `${address} is public`)
  t.equal((await checkWebhookTarget('http://localhost:8080/hook', ['localhost'])).host, 'localhost:8080', 'allowed for development')
  t.equal((await checkWebhookTarget('https://93.184.216.34/hook')).hostname, '93.184.216.34')
  await t.rejects(checkWebhookTarget('https://no-such-host.invalid/hook'), { message: /does not resolve/ })
  await t.rejects(checkMessage({ channel: 'sms', to: '+15550100', body: '' }), { message: /body is required/ })
  await t.rejects(checkMessage({ channel: 'sms', to: '+15550100', body: 'x', text: 'y' }), { message: /sms takes body only/ })
  await t.rejects(checkMessage({ channel: 'webhook', to: 'https://93.184.216.34/', body: '{}', html: '<p>' }), { message: /webhook takes body only/ })
  t.ok(await checkMessage({ channel: 'email', to: 'a@b.co', subject: 's', html: '<p>x</p>', scheduledAt: new Date(60_000).toISOString() }, { now: 0 }))
  t.ok(await checkMessage({ channel: 'webhook', to: 'http://localhost:9/x', body: '{}' }, { allowHosts: ['localhost'] }))
})

t.test('fingerprints ignore key order; cursors are opaque and checked', async (t) => {
  t.equal(fingerprint({ channel: 'sms', to: '+1555', body: 'x', metadata: { a: 1, b: [1, { c: 2, d: 3 }] } }), fingerprint({ metadata: { b: [1, { d: 3, c: 2 }], a: 1 }, body: 'x', to: '+1555', channel: 'sms' }))
  t.not(fingerprint({ channel: 'sms', to: '+1555', body: 'x' }), fingerprint({ channel: 'sms', to: '+1555', body: 'y' }))
  const id = '0b9f2c1e-1111-4222-8333-444455556666'
  t.same(decodeCursor(encodeCursor({ created_at: '2026-11-24T00:00:00.123456+00:00', id })), ['2026-11-24T00:00:00.123456+00:00', id])
  for (const bad of ['nonsense', Buffer.from('[1,2]').toString('base64url'), Buffer.from('["not a time","x"]').toString('base64url'), Buffer.from(`["2026-01-01T00:00:00Z","${'z'.repeat(36)}"]`).toString('base64url')]) {
    t.equal(decodeCursor(bad), null, bad)
  }
})

t.test('the queue schema is installed once, as its owner, and refuses odd names', async (t) => {
  const db = await createTestDatabase(t)
  const admin = postgres(db.url, { max: 1, onnotice: () => {} })
  t.teardown(() => admin.end())
  await admin.unsafe('create role queue_owner nologin')
  t.teardown(async () => { await admin.unsafe('drop schema if exists q_test cascade'); await admin.unsafe('drop owned by queue_owner'); await admin.unsafe('drop role queue_owner') })
  t.equal(await setupQueueSchema(admin, 'queue_owner', 'q_test'), true)
  t.equal(await setupQueueSchema(admin, 'queue_owner', 'q_test'), false, 'a second run does nothing')
  t.same(await admin`select tableowner from pg_tables where schemaname = 'q_test' and tablename = 'job'`, [{ tableowner: 'queue_owner' }])
  await t.rejects(setupQueueSchema(admin, 'queue_owner', 'bad;name'), /plain lower-case names/)
  await t.rejects(setupQueueSchema(admin, 'Owner', 'q2'), /plain lower-case names/)
})

t.test('the log provider logs, keeps the last ones, and answers with an id', async (t) => {
  const lines: unknown[] = []
  const log = { info: (obj: unknown) => lines.push(obj) } as never
  const provider = new LogProvider({ log, keep: 1 })
  const message = { id: 'm1', channel: 'sms' as const, to: '+15550100', subject: null, text: null, html: null, body: 'hi', metadata: {} }
  const result = await provider.send(message, makeContext('acme'))
  t.match(result, { providerMessageId: String })
  t.match(lines, [{ tenant: 'acme', messageId: 'm1', channel: 'sms' }])
  await provider.send({ ...message, id: 'm2' }, makeContext('acme'))
  t.same(provider.sent.map((s) => s.message.id), ['m2'], 'only the last one is kept')
})
