import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import t from 'tap'
import { createTestDatabase, startEmbeddedPostgres } from '../src/index.ts'

t.test('a persistent server keeps its data across restarts', async (t) => {
  const parent = await mkdtemp(join(tmpdir(), 'testkit-'))
  t.teardown(() => rm(parent, { recursive: true, force: true }))
  const dataDir = join(parent, 'pg')
  const logs: string[] = []
  const first = await startEmbeddedPostgres({ dataDir, onLog: (line) => logs.push(line) })
  let sql = postgres(first.url, { max: 1, onnotice: () => {} })
  await sql`create table kept (n int)`
  await sql`insert into kept values (42)`
  await sql.end()
  await first.stop()
  await first.stop() // idempotent
  const second = await startEmbeddedPostgres({ dataDir, durable: true })
  t.teardown(() => second.stop())
  sql = postgres(second.url, { max: 1 })
  t.same(await sql`select n from kept`, [{ n: 42 }])
  t.same(await sql`select current_setting('fsync') as fsync, current_setting('full_page_writes') as fpw, current_setting('synchronous_commit') as sc`, [{ fsync: 'on', fpw: 'on', sc: 'on' }], 'durable: every commit reaches the disk')
  await sql.end()
  t.ok(logs.length > 0, 'server output reaches onLog')
})

t.test('a start that cannot work fails with a clear error', async (t) => {
  const running = await startEmbeddedPostgres()
  t.teardown(() => running.stop())
  const sql = postgres(running.url, { max: 1 })
  t.same(await sql`select current_setting('fsync') as fsync`, [{ fsync: 'off' }], 'tests trade durability for speed')
  await sql.end()
  await t.rejects(startEmbeddedPostgres({ port: running.port }), new RegExp(`could not start the embedded PostgreSQL in .* \\(port ${running.port}\\): .*(could not|already)`), 'the reason is the server\'s, not "undefined"')
})

t.test('as root, a data directory the postgres user cannot reach is refused with the fix', { skip: process.getuid?.() !== 0 && 'only as root' }, async (t) => {
  const locked = await mkdtemp(join(tmpdir(), 'testkit-locked-')) // mode 700
  t.teardown(() => rm(locked, { recursive: true, force: true }))
  await t.rejects(startEmbeddedPostgres({ dataDir: join(locked, 'deep', 'pg') }), { message: `the embedded PostgreSQL runs as user "postgres" when started as root, and it cannot enter ${locked}: run \`chmod o+x ${locked}\`, keep the data elsewhere, or set DATABASE_URL` })
})

t.test('without DATABASE_URL a file gets its own server, stopped with its last database', async (t) => {
  const saved = process.env.DATABASE_URL
  delete process.env.DATABASE_URL
  t.teardown(() => { if (saved !== undefined) process.env.DATABASE_URL = saved })
  const db = await createTestDatabase()
  const sql = postgres(db.url, { max: 1 })
  t.same(await sql`select 1 as one`, [{ one: 1 }])
  await sql.end()
  await db.drop()
  const probe = postgres(db.adminUrl, { max: 1, connect_timeout: 2 })
  await t.rejects(probe`select 1`, 'the server is gone')
  await probe.end()
})
