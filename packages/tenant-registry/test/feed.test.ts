// The change feed under load: one query per wake-up however many polls wait, only real changes
// wake them (a bare NOTIFY does not), and the number of waiters is capped.
import postgres from 'postgres'
import t from 'tap'
import { CHANGES_CHANNEL } from '../src/tenants.ts'
import { bearer, SECRET, startRegistry, tid } from './fixtures/registry.ts'

t.test('3,000 waiting polls: a forged NOTIFY wakes none, a change wakes all with one query', async (t) => {
  const r = await startRegistry(t)
  let queries = 0
  const changesAfter = r.app.tenants.changesAfter.bind(r.app.tenants)
  r.app.tenants.changesAfter = async (after, limit) => { queries++; return await changesAfter(after, limit) }
  const head = r.app.feed.head()
  const polls = Array.from({ length: 3000 }, async () => await r.app.inject({ url: `/v1/changes?after=${head}&wait=20`, headers: bearer(r.service) }))
  while (r.app.feed.waiting < 3000) await new Promise((resolve) => setTimeout(resolve, 20))
  const before = queries
  // Anyone who can NOTIFY can send this; it is not a change.
  const other = postgres(r.url, { max: 1, onnotice: () => {} })
  t.teardown(() => other.end())
  for (let i = 0; i < 5; i++) await other.unsafe(`notify ${CHANGES_CHANNEL}, '999999999'`)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(r.app.feed.waiting, 3000, 'forged notifications wake nobody')
  t.ok(queries - before <= 5, `and cost at most one query each (${queries - before})`)
  const mid = queries
  const id = tid('herd')
  t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: 'Herd' } })).statusCode, 201)
  const answers = await Promise.all(polls)
  t.ok(answers.every((a) => a.statusCode === 200 && a.json().items.some((c: { tenantId: string }) => c.tenantId === id)), 'every poll got the change')
  t.ok(queries - mid <= 3, `one change, ${queries - mid} queries for 3,000 polls`)
  t.equal(answers[0]?.json().head, r.app.feed.head())
})

t.test('waiters are capped: past the cap a poll answers at once', async (t) => {
  const r = await startRegistry(t, { config: { jwt: { secret: SECRET }, baseDomain: 'example.com', maxFeedWaiters: 10 } })
  const head = r.app.feed.head()
  const polls = Array.from({ length: 10 }, async () => await r.app.inject({ url: `/v1/changes?after=${head}&wait=30`, headers: bearer(r.service) }))
  while (r.app.feed.waiting < 10) await new Promise((resolve) => setTimeout(resolve, 10))
  const started = Date.now()
  const extra = await r.app.inject({ url: `/v1/changes?after=${head}&wait=30`, headers: bearer(r.service) })
  t.equal(extra.statusCode, 200)
  t.same(extra.json().items, [])
  t.ok(Date.now() - started < 5000, 'the eleventh did not wait')
  await r.app.close()
  t.equal((await Promise.all(polls)).filter((p) => p.statusCode === 200).length, 10, 'closing answers the waiting polls')
})

t.test('polls older than memory are read from the database', async (t) => {
  const r = await startRegistry(t)
  const ids = [tid('old-a'), tid('old-b')]
  for (const id of ids) await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id, name: id } })
  await r.app.feed.refresh()
  const all = (await r.app.inject({ url: '/v1/changes?after=0', headers: bearer(r.service) })).json()
  t.same(all.items.map((c: { tenantId: string }) => c.tenantId), ids)
  const tail = (await r.app.inject({ url: `/v1/changes?after=${all.items[0].seq}&limit=5`, headers: bearer(r.service) })).json()
  t.same(tail.items.map((c: { tenantId: string }) => c.tenantId), [ids[1]])
})

t.test('a poll whose client hangs up stops waiting', async (t) => {
  const r = await startRegistry(t)
  const url = await r.app.listen({ port: 0, host: '127.0.0.1' })
  const gone = new AbortController()
  const poll = fetch(`${url}/v1/changes?after=${r.app.feed.head()}&wait=30`, { headers: bearer(r.service), signal: gone.signal }).catch(() => 'aborted')
  while (r.app.feed.waiting < 1) await new Promise((resolve) => setTimeout(resolve, 10))
  gone.abort()
  t.equal(await poll, 'aborted')
  while (r.app.feed.waiting > 0) await new Promise((resolve) => setTimeout(resolve, 10))
  t.pass('the waiter is gone')
})
