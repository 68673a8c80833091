// migrate-all: one `ALTER TABLE … ADD COLUMN` migration across TENANTS existing tenants with
// migrateAll (per-schema advisory lock, owner role, ledger, grants, one transaction per tenant,
// bounded concurrency) as a service login, next to the bare DDL (the same ALTER, one tenant after
// another, no ledger/lock/role) in the same run.
import postgres from 'postgres'
import { migrateAll, type Migration } from '../packages/multitenant/src/migrations.ts'
import { tenantRoleStatements } from '../packages/multitenant/src/pg/roles.ts'
import { fmt, progress } from './lib/harness.ts'
import { platformDatabase } from './lib/platform.ts'

const TENANTS = Number(process.env.BENCH_TENANTS ?? 1000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8)
const { db, registryUrl, serviceUrl } = await platformDatabase()
const sql = postgres(db.url, { max: CONCURRENCY + 2, connection: { client_min_messages: 'warning' } })
const registry = postgres(registryUrl, { max: 4, connection: { client_min_messages: 'warning' } })
const service = postgres(serviceUrl, { max: CONCURRENCY + 2, connection: { client_min_messages: 'warning' } })
const ids = Array.from({ length: TENANTS }, (_, i) => `mig-${i}`)
const schema = (id: string): string => `tenant_${id.replace('-', '_')}`
try {
  progress(`provisioning ${TENANTS} tenants with a messages table`)
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(ids.slice(i, i + 50).map(async (id) => {
      const s = schema(id)
      await sql.unsafe(`drop schema if exists "${s}" cascade; drop role if exists "${s}"`)
      await registry.begin(async (tx) => { for (const statement of tenantRoleStatements(id)) await tx.unsafe(statement) })
    }))
  }
  const first = await migrateAll({ migrations: [{ name: '0001_messages.sql', checksum: 'x', sql: 'create table messages (id bigserial primary key, body text not null)' }], tenants: ids, pool: () => service, concurrency: CONCURRENCY })
  if (first.failed.length > 0) throw new Error(`provisioning: ${JSON.stringify(first.failed.slice(0, 3))}`)
  const migrations: Migration[] = [{ name: '0002_add_status.sql', checksum: 'x', sql: "alter table messages add column status text not null default 'queued';" }]
  progress('migrateAll')
  const summary = await migrateAll({ migrations, tenants: ids, pool: () => service, concurrency: CONCURRENCY })
  if (summary.failed.length > 0 || summary.migrated !== TENANTS) throw new Error(`migrateAll: ${JSON.stringify(summary.failed.slice(0, 3))}`)
  progress('bare DDL, sequentially')
  const started = performance.now()
  for (const id of ids) await sql.unsafe(`alter table "${schema(id)}".messages add column note text`)
  const raw = (performance.now() - started) / 1000
  console.log(`migrate-all tenants=${TENANTS} seconds=${fmt(summary.ms / 1000)} (bare_ddl_seconds=${fmt(raw)} bare_ddl_ms_per_tenant=${fmt(raw * 1000 / TENANTS)} concurrency=${CONCURRENCY})`)
} finally {
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(ids.slice(i, i + 50).map(async (id) => await sql.unsafe(`drop schema if exists "${schema(id)}" cascade; drop role if exists "${schema(id)}"`)))
  }
  await registry.end()
  await service.end()
  await sql.end()
  await db.drop()
}
