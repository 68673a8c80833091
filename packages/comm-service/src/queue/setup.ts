// The one-time setup of the queue's schema, for the superuser step that creates the logins
// (service logins may not create schemas). pg-boss then finds itself installed and never needs
// the database-level CREATE right.
import { getConstructionPlans } from 'pg-boss'
import type { Sql } from 'postgres'

/**
 * Creates `schema` owned by `owner` (the comm-service login) and installs pg-boss's tables in it
 * as that login, so the service can use them and no tenant role has any right on them, and lets
 * the login call pg_notify. Run it with a superuser's connection; the schema is left alone when it
 * exists.
 */
export async function setupQueueSchema (admin: Sql, owner: string, schema = 'pgboss'): Promise<boolean> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema) || !/^[a-z_][a-z0-9_]{0,62}$/.test(owner)) throw new Error('schema and owner must be plain lower-case names')
  // pg-boss wakes idle workers with NOTIFY from the inserting transaction (its `asService` step, as
  // this login). Tenant roles get nothing: the grant is to the login, not to the services' group.
  await admin.unsafe(`grant execute on function pg_catalog.pg_notify(text, text) to ${owner}`)
  const [exists] = await admin`select 1 from pg_namespace where nspname = ${schema}`
  if (exists !== undefined) return false
  const plans = getConstructionPlans(schema).replace(`CREATE SCHEMA IF NOT EXISTS ${schema};`, '')
  await admin.begin(async (tx) => {
    await tx.unsafe(`create schema ${schema} authorization ${owner}`)
    await tx.unsafe(`set local role ${owner}`)
    // pg-boss's plan is its own transaction; inside ours, its BEGIN and COMMIT only warn.
    await tx.unsafe(plans.replace(/^\s*BEGIN;/m, '').replace(/COMMIT;\s*$/m, ''))
  })
  return true
}
