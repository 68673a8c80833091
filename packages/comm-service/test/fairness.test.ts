// Fairness: tenant A has 20,000 messages queued and a slow provider; tenant B sends one message at
// a time and each is sent in well under a second (pg-boss's group concurrency caps A's share of
// the workers inside the fetch query). Also: a tenant created while the service runs can send at
// once, no restart.
import t from 'tap'
import type { Provider } from '../src/delivery/providers/types.ts'
import { MessageStore } from '../src/messages/store.ts'
import { startPlatform, tid } from './fixtures.ts'
import { percentile, settledFast } from './stats.ts'
import { sleep, startComm } from './helpers.ts'

const BACKLOG = Number(process.env.FAIRNESS_BACKLOG ?? 20_000)

t.test(`A has ${BACKLOG} queued; B's messages are sent in under a second (p50 and p99 of 20)`, async (t) => {
  const p = await startPlatform(t)
  const a = tid('fair-a')
  const b = tid('fair-b')
  await p.createTenant(a)
  await p.createTenant(b)
  // The backlog is queued through the domain code by an API-only instance.
  const api = await startComm(t, p, { role: 'api' })
  const store = new MessageStore(api.app.tenantDb, () => api.app.commQueue)
  const tenantA = await api.app.tenantRegistry.getTenant(a)
  let next = 0
  const started = Date.now()
  await Promise.all(Array.from({ length: 24 }, async () => {
    while (next < BACKLOG) {
      next++
      await store.accept(tenantA!, { channel: 'sms', to: '+15550100', body: 'bulk' })
    }
  }))
  t.comment(`queued ${BACKLOG} for A in ${Date.now() - started} ms`)

  // A's sends take 20 ms each; B's are instant.
  const sentBy = new Map<string, number>()
  const provider: Provider = {
    name: 'timed',
    async send (message, { tenant }) {
      if (tenant.id === a) await sleep(20)
      sentBy.set(tenant.id, (sentBy.get(tenant.id) ?? 0) + 1)
      return { providerMessageId: message.id }
    }
  }
  const worker = await startComm(t, p, { role: 'all', concurrency: { local: 16, perTenant: 4 } }, { provider })
  await sleep(2000) // the worker is busy with A's backlog
  const times: number[] = []
  for (let i = 0; i < 20; i++) {
    const sent = Date.now()
    const res = await worker.call('POST', '/v1/messages', b, { channel: 'sms', to: '+15550199', body: `b ${i}` })
    t.equal(res.status, 202)
    times.push(await settledFast(worker.call, b, res.body.id) - sent)
  }
  const left = (await api.call('GET', '/v1/messages?status=queued&limit=1', a)).body.items.length
  t.equal(left, 1, 'A still had a backlog when B was done')
  const p50 = percentile(times, 50)
  const p99 = percentile(times, 99)
  t.comment(`fairness b_sent_ms p50=${p50} p99=${p99} (A sent meanwhile: ${sentBy.get(a) ?? 0})`)
  t.ok(p50 < 1000, `p50 ${p50} ms < 1 s`)
  t.ok(p99 < 1000, `p99 ${p99} ms < 1 s`)
})

t.test('a tenant created while the service runs can send at once', async (t) => {
  const p = await startPlatform(t)
  const { call } = await startComm(t, p)
  const late = tid('late')
  const created = Date.now()
  await p.createTenant(late)
  const res = await call('POST', '/v1/messages', late, { channel: 'sms', to: '+15550100', body: 'hello' })
  const accepted = Date.now() - created
  t.equal(res.status, 202, 'its first request succeeds (tables migrated on the change feed or on first use)')
  const sent = await settledFast(call, late, res.body.id) - created
  t.comment(`new-tenant accepted_ms=${accepted} sent_ms=${sent}`)
  t.ok(accepted < 2000, `accepted ${accepted} ms after it was created`)
  t.ok(sent < 2000, `sent ${sent} ms after it was created`)
})
