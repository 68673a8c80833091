import { randomBytes } from 'node:crypto'
import type { Sql } from 'postgres'
import { schemaName } from '../../src/tenant-id.ts'

/** Roles are cluster-wide and test files share one server: ids get a per-file suffix. */
export const suffix = randomBytes(3).toString('hex')
export const tid = (name: string): string => `${name}-${suffix}`

/** What the registry does for a new tenant: a NOLOGIN role owning its schema, SET ROLE-able by us. */
export async function provision (sql: Sql, id: string, ddl?: string): Promise<void> {
  const schema = schemaName(id)
  await sql.begin(async (tx) => {
    await tx.unsafe(`create role "${schema}" nologin`)
    await tx.unsafe(`grant "${schema}" to current_user`)
    await tx.unsafe(`create schema "${schema}" authorization "${schema}"`)
    if (ddl !== undefined) {
      await tx.unsafe(`set local role "${schema}"`)
      await tx.unsafe(`set local search_path = "${schema}"`)
      await tx.unsafe(ddl)
    }
  })
}

/** Drops what `provision` made (roles outlive the test database). */
export async function unprovision (sql: Sql, ids: string[]): Promise<void> {
  for (const id of ids) {
    const schema = schemaName(id)
    await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    await sql.unsafe(`drop owned by "${schema}"`).catch(() => {})
    await sql.unsafe(`drop role if exists "${schema}"`)
  }
}
