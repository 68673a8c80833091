import { fileURLToPath } from 'node:url'
import { loadMigrations } from '@platform/multitenant/migrations'
import type { Sql } from 'postgres'

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url))
// Any constant shared by every registry instance: only one applies migrations at a time.
const LOCK_KEY = 7_311_002_001

export interface MigrationResult {
  applied: string[]
  skipped: string[]
}

/**
 * Applies the registry's own migrations (public schema) in file-name order, each in a
 * transaction, under an advisory lock, recording name and checksum. A changed applied file is
 * refused rather than silently skipped.
 */
export async function migrateRegistry (sql: Sql, dir = MIGRATIONS_DIR): Promise<MigrationResult> {
  const migrations = await loadMigrations(dir)
  const result: MigrationResult = { applied: [], skipped: [] }
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${LOCK_KEY})`
    await tx`create table if not exists public.registry_migrations (
      name text primary key, checksum text not null, applied_at timestamptz not null default now())`
    const done = new Map((await tx<Array<{ name: string, checksum: string }>>`select name, checksum from public.registry_migrations`)
      .map((r) => [r.name, r.checksum]))
    for (const { name, checksum, sql: text } of migrations) {
      const previous = done.get(name)
      if (previous !== undefined) {
        if (previous !== checksum) throw new Error(`migration ${name} was changed after it was applied`)
        result.skipped.push(name)
        continue
      }
      await tx.unsafe(text)
      await tx`insert into public.registry_migrations (name, checksum) values (${name}, ${checksum})`
      result.applied.push(name)
    }
  })
  return result
}
