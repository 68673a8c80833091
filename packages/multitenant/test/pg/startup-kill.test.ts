// A connection terminated while postgres.js fetches array types (the first statement on every new
// connection) used to end the process with an unhandled rejection, and its 57P01 was replayed onto
// the first query of the next connection (porsager/postgres#1192, #1223; patched in
// patches/postgres@3.4.9.patch). A proxy answers the first array-types query exactly as
// pg_terminate_backend does, then closes; the query must succeed on the reconnect.
import { connect, createServer, type Socket } from 'node:net'
import { createTestDatabase } from '@platform/testkit'
import postgres from 'postgres'
import t from 'tap'

/** The ErrorResponse a backend sends when pg_terminate_backend ends it. */
function terminated (): Buffer {
  const fields = Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0')
  const head = Buffer.alloc(5)
  head.write('E')
  head.writeInt32BE(fields.length + 4, 1)
  return Buffer.concat([head, fields])
}

t.test('a connection killed during its array-types fetch: no unhandled rejection, no replayed error', async (t) => {
  const db = await createTestDatabase(t)
  const target = new URL(db.url)
  let killed = 0
  const proxy = createServer((client: Socket) => {
    const server = connect(Number(target.port), target.hostname)
    let first = killed === 0
    client.on('data', (chunk) => {
      if (first && chunk.includes('typcategory')) {
        first = false
        killed++
        client.end(terminated())
        server.destroy()
        return
      }
      server.write(chunk)
    })
    server.on('data', (chunk) => client.write(chunk))
    for (const s of [client, server]) s.on('error', () => {})
    server.on('close', () => client.destroy())
    client.on('close', () => server.destroy())
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => proxy.close())
  const unhandled: unknown[] = []
  const listener = (err: unknown): void => { unhandled.push(err) }
  process.on('unhandledRejection', listener)
  t.teardown(() => process.off('unhandledRejection', listener))

  const url = new URL(db.url)
  url.port = String((proxy.address() as { port: number }).port)
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} })
  t.teardown(() => sql.end())
  const [row] = await sql`select 1 as one`
  t.same(row, { one: 1 }, 'the query succeeds on the reconnected connection, without the old 57P01')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(killed, 1, 'the first connection was killed during its array-types fetch')
  t.same(unhandled, [], 'and nothing escaped as an unhandled rejection')
})
