// A connection that stops answering (a network partition, a hung proxy) fails its units within
// the watchdog and is replaced; a transaction whose COMMIT fails is reported, not silently
// rolled back.
import { createServer, connect, type Socket } from 'node:net'
import postgres from 'postgres'
import t from 'tap'
import { runAsTenant } from '../../src/context.ts'
import { TenantDb } from '../../src/pg/index.ts'
import { createPlatformDatabase, provision, tid } from './fixtures.ts'

/** A TCP proxy that can freeze: frozen connections stop passing bytes both ways. */
async function freezingProxy (target: URL): Promise<{ port: number, freeze: () => void, close: () => Promise<void> }> {
  const pairs = new Set<[Socket, Socket]>()
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname)
    sockets.add(client).add(upstream)
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    client.pipe(upstream)
    upstream.pipe(client)
    const end = (): void => { client.destroy(); upstream.destroy(); pairs.delete(pair) }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    freeze () {
      for (const [client, upstream] of pairs) { client.unpipe(upstream); upstream.unpipe(client); client.pause(); upstream.pause() }
      pairs.clear()
    },
    async close () {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}

t.test('a connection that stops answering fails its units within the watchdog; a fresh one follows', async (t) => {
  const db = await createPlatformDatabase(t)
  const registry = postgres(db.registryUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => registry.end())
  const a = tid('wd')
  await provision(registry, a, 'create table notes (body text); insert into notes values (\'a\')')
  const proxy = await freezingProxy(new URL(db.serviceUrl))
  t.teardown(() => proxy.close())
  const url = new URL(db.serviceUrl)
  url.port = String(proxy.port)
  const tdb = new TenantDb({ url: url.toString(), max: 2, lanes: 1, statementTimeout: 200, watchdog: 600 })
  t.teardown(() => tdb.close())
  t.same(await runAsTenant(a, async () => await tdb.query('select body from notes')), [{ body: 'a' }])
  await runAsTenant(a, async () => await tdb.transaction(async (tx) => await tx.sql`select 1`))

  proxy.freeze()
  const started = performance.now()
  const outcomes = await Promise.allSettled([
    ...Array.from({ length: 10 }, async () => await runAsTenant(a, async () => await tdb.query('select body from notes'))),
    runAsTenant(a, async () => await tdb.transaction(async (tx) => await tx.sql`select body from notes`))
  ])
  const took = performance.now() - started
  t.ok(outcomes.every((o) => o.status === 'rejected' && (o.reason as { code?: string }).code === 'SERVICE_UNAVAILABLE'), 'every unit failed with SERVICE_UNAVAILABLE')
  t.ok(took < 600 + 1000, `within the watchdog plus a second (${Math.round(took)} ms)`)
  t.same(await runAsTenant(a, async () => await tdb.query('select body from notes')), [{ body: 'a' }], 'a fresh connection serves the next unit')
  t.same(await runAsTenant(a, async () => await tdb.transaction(async (tx) => await tx.sql`select body from notes`)), [{ body: 'a' }])
  t.throws(() => new TenantDb({ url: db.serviceUrl, statementTimeout: 1000, watchdog: 1000 }), { code: 'MT_INVALID_OPTION' })
  t.throws(() => new TenantDb({ url: db.serviceUrl, statementTimeout: -1 }), { code: 'MT_INVALID_OPTION' })
  t.throws(() => new TenantDb({ url: db.serviceUrl, statementTimeout: 1.5 }), { code: 'MT_INVALID_OPTION' })
  t.throws(() => new TenantDb({ url: db.serviceUrl, watchdog: 6000.5 }), { code: 'MT_INVALID_OPTION' })
  // No statement timeout: the watchdog still bounds a silent connection (30 s by default).
  const untimed = new TenantDb({ url: db.serviceUrl, statementTimeout: 0, max: 2 })
  t.same(await runAsTenant(a, async () => await untimed.query('select current_setting(\'statement_timeout\') as st')), [{ st: '0' }])
  await untimed.close()
})

t.test('a transaction whose COMMIT fails did not happen, and says so', async (t) => {
  const db = await createPlatformDatabase(t)
  const registry = postgres(db.registryUrl, { max: 1, onnotice: () => {} })
  const root = postgres(db.url, { max: 1, onnotice: () => {} })
  t.teardown(async () => { await registry.end(); await root.end() })
  const a = tid('rs')
  // A deferred constraint is checked by COMMIT itself.
  await provision(registry, a, 'create table notes (body text unique deferrable initially deferred)')
  const tdb = new TenantDb({ url: db.serviceUrl, max: 2, lanes: 1 })
  t.teardown(() => tdb.close())
  await t.rejects(runAsTenant(a, async () => await tdb.transaction(async (tx) => {
    await tx.sql`insert into notes values ('twice'), ('twice')`
    t.equal(typeof tx.sql.json, 'function', 'the transaction\'s sql keeps postgres.js\'s helpers')
  })), { code: '23505' }, 'the unit fails')
  await t.rejects(runAsTenant(a, async () => await tdb.query('insert into notes values (\'twice\'), (\'twice\')')), { code: '23505' }, 'a pipelined unit too')
  t.same(await root.unsafe(`select count(*)::int as n from "tenant_${a.replaceAll('-', '_')}".notes`), [{ n: 0 }], 'nothing was committed')
  await runAsTenant(a, async () => await tdb.transaction(async (tx) => await tx.sql`insert into notes values ('kept')`))
  t.same(await root.unsafe(`select body from "tenant_${a.replaceAll('-', '_')}".notes`), [{ body: 'kept' }], 'the next unit works')
})

t.test('a server that cannot be reached: units fail at once with SERVICE_UNAVAILABLE, nothing is left queued', async (t) => {
  const { freePort } = await import('@platform/testkit')
  const port = await freePort()
  const tdb = new TenantDb({ url: `postgres://nobody:x@127.0.0.1:${port}/none`, max: 2, lanes: 1, statementTimeout: 500 })
  const outcomes = await Promise.allSettled(Array.from({ length: 5 }, async () => await tdb.query('select 1', [], { tenant: tid('down') })))
  t.same(outcomes.map((o) => o.status === 'rejected' ? (o.reason as { code?: string }).code : 'ok'), Array(5).fill('SERVICE_UNAVAILABLE'))
  await tdb.close()
})

t.test('a server that accepts and never answers: the watchdog fails the units still queued', async (t) => {
  const sockets = new Set<Socket>()
  const silent = createServer((socket) => { sockets.add(socket) })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => silent.close(resolve))
  })
  const port = (silent.address() as { port: number }).port
  const tdb = new TenantDb({ url: `postgres://nobody:x@127.0.0.1:${port}/none`, max: 2, lanes: 1, statementTimeout: 100, watchdog: 300, postgres: { connect_timeout: 30 } })
  const started = performance.now()
  const outcomes = await Promise.allSettled(Array.from({ length: 3 }, async () => await tdb.query('select 1', [], { tenant: tid('mute') })))
  t.same(outcomes.map((o) => o.status === 'rejected' ? (o.reason as { code?: string }).code : 'ok'), Array(3).fill('SERVICE_UNAVAILABLE'))
  t.ok(performance.now() - started < 1500, 'within the watchdog')
  for (const socket of sockets) socket.destroy()
  await tdb.close()
})
