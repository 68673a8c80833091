import t from 'tap'
import postgres from 'postgres'
import { createTestDatabase, freePort } from '../src/index.ts'

t.test('each caller gets its own empty database on one real server', async (t) => {
  const a = await createTestDatabase(t)
  const b = await createTestDatabase(t)
  t.not(a.name, b.name)
  t.equal(new URL(a.url).port, new URL(b.url).port, 'same server')
  const sqlA = postgres(a.url, { max: 1, onnotice: () => {} })
  const sqlB = postgres(b.url, { max: 1, onnotice: () => {} })
  t.teardown(async () => { await sqlA.end(); await sqlB.end() })
  await sqlA`create table notes (body text)`
  await sqlA`insert into notes values ('only in a')`
  t.same(await sqlA`select body from notes`, [{ body: 'only in a' }])
  await t.rejects(sqlB`select body from notes`, { code: '42P01' }, 'the other database has no such table')
  t.match((await sqlA`select version()`)[0]?.version, /PostgreSQL/)
})

t.test('drop removes the database', async (t) => {
  await createTestDatabase(t) // keeps the server up when this file started its own
  const db = await createTestDatabase()
  await db.drop()
  await db.drop() // idempotent
  const admin = postgres(db.adminUrl, { max: 1 })
  t.teardown(() => admin.end())
  t.same(await admin`select 1 from pg_database where datname = ${db.name}`, [])
})

t.test('freePort gives a usable port', async (t) => {
  const port = await freePort()
  t.ok(port > 0 && port < 65536)
})
