import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { loadMigrations, migrateTenant } from '@platform/multitenant/migrations'
import { TenantDb } from '@platform/multitenant/pg'
import postgres from 'postgres'
import t from 'tap'
import { DELIVER_QUEUE, DeliveryQueue, inTransaction } from '../src/queue/boss.ts'
import { startPlatform, tid } from './fixtures.ts'

t.test('a message and its job commit together, as two logins in one transaction', async (t) => {
  const p = await startPlatform(t)
  const a = tid('qa')
  await p.createTenant(a)
  const db = new TenantDb({ url: p.serviceDatabaseUrl, max: 4 })
  t.teardown(() => db.close())
  await migrateTenant(db.pool(), a, await loadMigrations(fileURLToPath(new URL('../migrations', import.meta.url))))
  const queue = new DeliveryQueue({ url: p.serviceDatabaseUrl })
  await queue.start()
  t.teardown(() => queue.stop())
  const root = postgres(p.superUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => root.end())
  const jobs = async (): Promise<number> => (await root`select count(*)::int as n from pgboss.job where name = ${DELIVER_QUEUE}`)[0]?.n as number

  const id = randomUUID()
  await db.transaction(async (tx) => {
    await tx.sql`insert into messages (id, channel, recipient, body) values (${id}, 'sms', '+15550100', 'hi')`
    await tx.asService(async (sql) => await queue.enqueue(sql, { tenant: a, database: 'default', messageId: id }, { tier: 'standard' }))
  }, { tenant: a })
  t.equal(await jobs(), 1, 'committed: the job is there')

  await t.rejects(db.transaction(async (tx) => {
    await tx.sql`insert into messages (id, channel, recipient, body) values (${randomUUID()}, 'sms', '+15550100', 'lost')`
    await tx.asService(async (sql) => await queue.enqueue(sql, { tenant: a, database: 'default', messageId: 'x' }, { tier: 'standard' }))
    throw new Error('failed before commit')
  }, { tenant: a }), /failed before commit/)
  t.equal(await jobs(), 1, 'rolled back: no job')
  t.same(await db.query('select count(*)::int as n from messages', [], { tenant: a }), [{ n: 1 }], 'and no message')

  await t.rejects(db.query('select * from pgboss.job', [], { tenant: a }), { code: '42501' }, 'a tenant role cannot read the queue')
  await t.rejects(db.query('insert into pgboss.job (name, data) values ($1, $2)', ['comm-deliver', '{}'], { tenant: a }), { code: '42501' }, 'nor write it')
  await t.rejects(db.query('select pg_catalog.pg_notify($1, $2)', ['x', 'y'], { tenant: a }), { code: '42501' }, 'nor NOTIFY (granted to the comm login only)')
  t.same(await db.transaction(async (tx) => await tx.asService(async (sql) => await inTransaction(sql).executeSql('select current_user = session_user as service')), { tenant: a }), { rows: [{ service: true }] }, 'the adapter runs as the service, with or without parameters')
  t.same(await db.transaction(async (tx) => await tx.asService(async (sql) => await inTransaction(sql).executeSql('select $1::text as s, $2::jsonb ->> \'k\' as k', ['text', { k: 'v' }])), { tenant: a }), { rows: [{ s: 'text', k: 'v' }] }, 'plain objects go out as JSON, the rest as they are')

  // A handler that throws hands its job back: the job runs again (pg-boss's retry), then completes.
  const seen: string[] = []
  await queue.work({ local: 2, perTenant: 1 }, async (job) => {
    seen.push(job.data.messageId)
    if (seen.length === 1) throw new Error('a worker failing mid-job')
  })
  const deadline = Date.now() + 15_000
  while (seen.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(seen, [id, id], 'a worker gets the job, and gets it again after failing on it')
})
