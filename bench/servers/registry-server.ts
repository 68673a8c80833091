// The tenant registry on a given database, for benchmarks: prints `LISTENING <url>`.
import postgres from 'postgres'
import { buildApp } from '../../packages/tenant-registry/src/app.ts'
import { migrateRegistry } from '../../packages/tenant-registry/src/db/migrate.ts'

const url = process.env.DATABASE_URL as string
const sql = postgres(url, { max: 10, connection: { client_min_messages: 'warning' } })
await migrateRegistry(sql)
const app = await buildApp({ config: { jwt: { secret: process.env.JWT_SECRET as string }, baseDomain: 'bench.test' }, sql, processMetrics: false })
const address = await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`LISTENING ${address}\n`)
process.on('SIGTERM', () => {
  app.close().then(() => sql.end()).then(() => process.exit(0), () => process.exit(1))
})
