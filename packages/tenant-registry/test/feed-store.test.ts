// ChangeFeed on a real store: memory bounds, a log that moves without a notification, a log reset
// under it, a poll that goes away, and a database that is gone.
import postgres from 'postgres'
import t from 'tap'
import { migrateRegistry } from '../src/db/migrate.ts'
import { ChangeFeed } from '../src/feed.ts'
import { TenantStore } from '../src/tenants.ts'
import { createRegistryDatabase } from './fixtures/registry.ts'

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('the feed keeps what it holds bounded and follows the log it reads', async (t) => {
  const db = await createRegistryDatabase(t)
  const sql = postgres(db.url, { max: 2, onnotice: () => {} })
  t.teardown(() => sql.end())
  await migrateRegistry(sql)
  const store = new TenantStore(sql)
  const feed = new ChangeFeed(store, { keep: 2 })
  await feed.start()
  t.teardown(() => feed.close())
  const add = async (n: number): Promise<void> => { for (let i = 0; i < n; i++) await sql`insert into tenant_changes (tenant_id, type) values ('x', 'tenant.updated')` }

  await add(3)
  await feed.refresh()
  t.equal(feed.head(), 3)
  t.same((await feed.read(0, 10)).map((c) => c.seq), [1, 2, 3], 'older than memory: read from the database')
  t.same((await feed.read(1, 10)).map((c) => c.seq), [2, 3], 'from memory')
  t.same(await feed.read(3, 10), [], 'nothing after the head')

  // A change written without a notification is found when the head is confirmed.
  await add(1)
  await sleep(1100)
  t.equal(await feed.confirmedHead(), 4)
  // The log goes backwards (a restored database): the feed resets.
  await sql`truncate tenant_changes restart identity`
  await sleep(1100)
  t.equal(await feed.confirmedHead(), 0)
  t.same(await feed.read(0, 10), [])

  // A poll whose client goes away stops waiting at once.
  const gone = new AbortController()
  const waiting = feed.wait(0, 30_000, gone.signal)
  t.equal(feed.waiting, 1)
  gone.abort()
  await waiting
  t.equal(feed.waiting, 0)
  await feed.wait(0, 30_000, gone.signal) // already aborted: returns at once

  // The database goes away: a refresh fails quietly, polls wait out their time.
  await sql.end()
  await feed.refresh()
  t.equal(feed.head(), 0)
  feed.close()
  await feed.wait(0, 30_000) // closed: returns at once
})
