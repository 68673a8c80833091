import postgres from 'postgres'
import t from 'tap'
import { createTestDatabase, findPgBouncer, startPgBouncer } from '../src/index.ts'

t.test('PgBouncer in transaction mode in front of a test database', { skip: findPgBouncer() === null && 'pgbouncer is not installed' }, async (t) => {
  const db = await createTestDatabase(t)
  const bouncer = await startPgBouncer(db.url)
  t.teardown(() => bouncer.stop())
  t.match(bouncer.version, /^\d+\.\d+/)
  t.not(new URL(bouncer.url).port, new URL(db.url).port)
  const sql = postgres(bouncer.url, { max: 4, prepare: false })
  t.teardown(() => sql.end())
  const [row] = await sql`select current_database() as db`
  t.equal(row?.db, new URL(db.url).pathname.slice(1))
  await bouncer.stop()
  await bouncer.stop() // idempotent
  await t.rejects(postgres(bouncer.url, { max: 1, connect_timeout: 2 })`select 1`, 'stopped')
})
