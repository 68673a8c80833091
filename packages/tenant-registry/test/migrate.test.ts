import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getTableConfig } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import t from 'tap'
import { migrateRegistry } from '../src/db/migrate.ts'
import { domains, tenantChanges, tenants } from '../src/db/schema.ts'
import { createRegistryDatabase } from './fixtures/registry.ts'

t.test('the drizzle schema matches what the SQL migrations create', async (t) => {
  const db = await createRegistryDatabase(t)
  const sql = postgres(db.url, { max: 1, onnotice: () => {} })
  t.teardown(() => sql.end())
  t.same(await migrateRegistry(sql), { applied: ['0001_registry.sql', '0002_role_model.sql', '0003_sms_sender_ids.sql', '0004_services.sql'], skipped: [] })
  t.same(await migrateRegistry(sql), { applied: [], skipped: ['0001_registry.sql', '0002_role_model.sql', '0003_sms_sender_ids.sql', '0004_services.sql'] }, 'a re-run applies nothing')
  for (const table of [tenants, domains, tenantChanges]) {
    const config = getTableConfig(table)
    const rows = await sql<Array<{ column_name: string, is_nullable: string }>>`
      select column_name, is_nullable from information_schema.columns where table_schema = 'public' and table_name = ${config.name} order by column_name`
    t.same(rows.map((c) => [c.column_name, c.is_nullable === 'NO']), config.columns.map((c) => [c.name, c.notNull]).sort(), `${config.name}: columns and nullability`)
    const indexes = await sql<Array<{ indexname: string }>>`select indexname from pg_indexes where schemaname = 'public' and tablename = ${config.name}`
    for (const fk of config.foreignKeys) {
      const ref = fk.reference()
      t.same([getTableConfig(ref.foreignTable).name, ref.foreignColumns.map((c) => c.name)], ['tenants', ['id']], `${config.name}: foreign key to tenants.id`)
    }
    for (const index of config.indexes) t.ok(indexes.some((i) => i.indexname === index.config.name), `${config.name}: index ${index.config.name ?? ''}`)
  }
})

t.test('an applied migration that was edited is refused; concurrent runs apply once', async (t) => {
  const db = await createRegistryDatabase(t)
  const dir = await mkdtemp(join(tmpdir(), 'registry-migrations-'))
  t.teardown(() => rm(dir, { recursive: true }))
  const sql = postgres(db.url, { max: 4, onnotice: () => {} })
  t.teardown(() => sql.end())
  await writeFile(join(dir, '0001_a.sql'), 'create table a (n int);')
  await writeFile(join(dir, 'notes.txt'), 'not a migration')
  const runs = await Promise.all([1, 2, 3].map(() => migrateRegistry(sql, dir + '/')))
  t.same(runs.map((r) => r.applied.length).sort(), [0, 0, 1], 'one runner applied it, the others found it done')
  await writeFile(join(dir, '0001_a.sql'), 'create table a (n bigint);')
  await t.rejects(migrateRegistry(sql, dir + '/'), /migration 0001_a\.sql was changed after it was applied/)
})
