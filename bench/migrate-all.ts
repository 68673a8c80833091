// migrate-all: one `ALTER TABLE … ADD COLUMN` migration across TENANTS existing tenants with
// migrateAll (per-schema advisory lock, tenant role, ledger, one transaction per tenant, bounded
// concurrency), next to the bare DDL (the same ALTER, one tenant after another, no ledger/lock/role)
// in the same run.
import { createTestDatabase } from '@platform/testkit'
import postgres from 'postgres'
import { migrateAll, type Migration } from '../packages/multitenant/src/migrations.ts'
import { fmt, progress } from './lib/harness.ts'

const TENANTS = Number(process.env.BENCH_TENANTS ?? 1000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8)
const db = await createTestDatabase()
const sql = postgres(db.url, { max: CONCURRENCY + 2, connection: { client_min_messages: 'warning' } })
const ids = Array.from({ length: TENANTS }, (_, i) => `mig-${i}`)
const schema = (id: string): string => `tenant_${id.replace('-', '_')}`
try {
  progress(`provisioning ${TENANTS} tenants with a messages table`)
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(ids.slice(i, i + 50).map(async (id) => {
      const s = schema(id)
      await sql.unsafe(`drop schema if exists "${s}" cascade; drop role if exists "${s}"`)
      await sql.begin(async (tx) => {
        await tx.unsafe(`create role "${s}" nologin; grant "${s}" to current_user; create schema "${s}" authorization "${s}"`)
        await tx.unsafe(`set local role "${s}"; create table "${s}".messages (id bigserial primary key, body text not null)`)
      })
    }))
  }
  const migrations: Migration[] = [{ name: '0002_add_status.sql', checksum: 'x', sql: "alter table messages add column status text not null default 'queued';" }]
  progress('migrateAll')
  const summary = await migrateAll({ migrations, tenants: ids, pool: () => sql, concurrency: CONCURRENCY })
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
  await sql.end()
  await db.drop()
}
