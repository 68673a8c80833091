import { createHash, randomBytes } from 'node:crypto'
import { createTestDatabase, type Teardownable, type TestDatabase } from '@platform/testkit'
import postgres, { type Sql } from 'postgres'
import { migrateTenant } from '../../src/migrations.ts'
import { loginUrl, setupDatabase, tenantRoleStatements } from '../../src/pg/roles.ts'
import { schemaName } from '../../src/tenant-id.ts'

/** Roles are cluster-wide and test files share one server: ids get a per-file suffix. */
export const suffix = randomBytes(3).toString('hex')
export const tid = (name: string): string => `${name}-${suffix}`

export interface PlatformDatabase extends TestDatabase {
  /** The registry's login (NOSUPERUSER CREATEROLE, owner of the database). */
  registryUrl: string
  /** A service's login (NOSUPERUSER, a member of the group role). */
  serviceUrl: string
  registryUser: string
  serviceUser: string
}

/**
 * A fresh database with the platform's role model: the one-time superuser setup, then a registry
 * login and a service login. Tests run as those logins, never as the superuser.
 */
export async function createPlatformDatabase (t: Teardownable): Promise<PlatformDatabase> {
  const db = await createTestDatabase(t)
  const tag = randomBytes(4).toString('hex')
  const registry = { user: `reg_${tag}`, password: `reg-${randomBytes(12).toString('hex')}` }
  const service = { user: `svc_${tag}`, password: `svc-${randomBytes(12).toString('hex')}` }
  const admin = postgres(db.url, { max: 1, onnotice: () => {} })
  try {
    await setupDatabase(admin, { registry, services: [service] })
  } finally {
    await admin.end()
  }
  serviceOf.set(registry.user, loginUrl(db.url, service))
  return {
    ...db,
    registryUrl: loginUrl(db.url, registry),
    serviceUrl: loginUrl(db.url, service),
    registryUser: registry.user,
    serviceUser: service.user
  }
}

/** The service login of each platform database, by its registry login's name. */
const serviceOf = new Map<string, string>()

/**
 * What the registry does for a new tenant (run as the registry login), plus its tables: `ddl` is
 * applied as a migration by a service login (tenant roles own nothing): the platform database's,
 * or the one at `serviceUrl`.
 */
export async function provision (sql: Sql, id: string, ddl?: string, serviceUrl = serviceOf.get(sql.options.user)): Promise<void> {
  await sql.begin(async (tx) => {
    for (const statement of tenantRoleStatements(id)) await tx.unsafe(statement)
  })
  if (ddl === undefined) return
  if (serviceUrl === undefined) throw new Error(`no service login known for ${sql.options.user}: pass its URL`)
  const service = postgres(serviceUrl, { max: 1, onnotice: () => {} })
  try {
    await migrateTenant(service, id, [{ name: '0000_fixture.sql', sql: ddl, checksum: createHash('sha256').update(ddl).digest('hex') }])
  } finally {
    await service.end()
  }
}

/** Drops what `provision` made (roles outlive the test database), as the registry does on purge. */
export async function unprovision (sql: Sql, ids: string[]): Promise<void> {
  for (const id of ids) {
    const schema = schemaName(id)
    await sql.begin(async (tx) => {
      const role = await tx.unsafe('select 1 from pg_roles where rolname = $1', [schema])
      if (role.length === 0) return
      await tx.unsafe(`drop schema if exists "${schema}" cascade`)
      await tx.unsafe(`set local role "${schema}"`)
      await tx.unsafe(`drop owned by "${schema}"`)
      await tx.unsafe('reset role')
      await tx.unsafe(`drop role "${schema}"`)
    }).catch(() => {})
  }
}
