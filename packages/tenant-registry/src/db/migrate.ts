import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
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
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort()
  const result: MigrationResult = { applied: [], skipped: [] }
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${LOCK_KEY})`
    await tx`create table if not exists public.registry_migrations (
      name text primary key, checksum text not null, applied_at timestamptz not null default now())`
    const done = new Map((await tx<Array<{ name: string, checksum: string }>>`select name, checksum from public.registry_migrations`)
      .map((r) => [r.name, r.checksum]))
    for (const file of files) {
      const text = await readFile(dir + file, 'utf8')
      const checksum = createHash('sha256').update(text).digest('hex')
      const previous = done.get(file)
      if (previous !== undefined) {
        if (previous !== checksum) throw new Error(`migration ${file} was changed after it was applied`)
        result.skipped.push(file)
        continue
      }
      await tx.unsafe(text)
      await tx`insert into public.registry_migrations (name, checksum) values (${file}, ${checksum})`
      result.applied.push(file)
    }
  })
  return result
}
