import type { Sql } from 'postgres'
import { InvalidOptionError } from '../errors.ts'
import { schemaName } from '../tenant-id.ts'

// The database role model (README, "Database roles"):
//
//   registry login   NOSUPERUSER CREATEROLE; owns the database and the public tables, creates each
//                    tenant's NOLOGIN role (and so holds ADMIN on it), provisions schemas.
//   group role       NOLOGIN; the registry grants it every tenant role WITH INHERIT FALSE, SET TRUE.
//   service logins   NOSUPERUSER members of the group: they inherit nothing from tenant roles, so
//                    outside a unit of work they read no tenant table, and inside one they can
//                    `SET LOCAL ROLE` to the unit's tenant.
//   tenant roles     NOLOGIN owners of their schema; no EXECUTE on set_config, pg_notify or the
//                    advisory-lock functions, no TEMPORARY on the database.
//
// Needs PostgreSQL 16 or later (grant options INHERIT and SET).

/** The group role services log in through, unless configured otherwise. */
export const DEFAULT_GROUP_ROLE = 'platform_services'

const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/

/** Checks a login or group name (lower-case, digits, `_`; not a tenant role's `tenant_` prefix). */
export function assertRoleName (name: string, what = 'role name'): string {
  if (!ROLE_NAME.test(name) || name.startsWith('tenant_') || name.startsWith('pg_')) {
    throw new InvalidOptionError(`${what} must be 1-63 lower-case letters, digits or "_", not starting with "tenant_" or "pg_" (got "${name}")`)
  }
  return name
}

const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`
const literal = (value: string): string => `'${value.replaceAll("'", "''")}'`

/** The functions a single injected statement must not reach (revoked from PUBLIC). */
const GUARDED_FUNCTIONS = `select p.oid::regprocedure::text as signature, p.proname as name from pg_catalog.pg_proc p
  where p.pronamespace = 'pg_catalog'::regnamespace
    and (p.proname in ('set_config', 'pg_notify') or p.proname like 'pg\\_%advisory\\_%')`

export interface Login {
  user: string
  password: string
}

/** `url` with another login's user name and password (for the logins the setup creates). */
export function loginUrl (url: string, login: Login): string {
  const u = new URL(url)
  u.username = encodeURIComponent(login.user)
  u.password = encodeURIComponent(login.password)
  return u.toString()
}

export interface SetupDatabaseOptions {
  /** The registry's login: NOSUPERUSER CREATEROLE, made owner of the database. */
  registry: Login
  /** Service logins to create (or update) now; more later with `createServiceLogin`. */
  services?: Login[]
  /** Default: `DEFAULT_GROUP_ROLE`. */
  group?: string
}

/**
 * The one-time setup, run as a superuser connected to the platform's database (the only step that
 * needs one). Idempotent: run again, it updates passwords and re-applies grants and revokes.
 */
export async function setupDatabase (admin: Sql, options: SetupDatabaseOptions): Promise<void> {
  const group = assertRoleName(options.group ?? DEFAULT_GROUP_ROLE, 'group')
  const registry = assertRoleName(options.registry.user, 'registry login')
  await admin.begin(async (tx) => {
    const exists = async (role: string): Promise<boolean> =>
      (await tx.unsafe('select 1 from pg_catalog.pg_roles where rolname = $1', [role])).length > 0
    const verb = await exists(registry) ? 'alter' : 'create'
    await tx.unsafe(`${verb} role ${ident(registry)} login nosuperuser createrole nocreatedb password ${literal(options.registry.password)}`)
    // Another database on the cluster may create the group at the same moment.
    await tx.unsafe(`do $$ begin create role ${ident(group)} nologin; exception when duplicate_object or unique_violation then null; end $$`)
    // The registry adds service logins to the group, but does not act as it.
    await tx.unsafe(`grant ${ident(group)} to ${ident(registry)} with admin true, inherit false, set false`)
    const [db] = await tx.unsafe<Array<{ name: string }>>('select current_database() as name')
    const database = ident((db as { name: string }).name)
    await tx.unsafe(`alter database ${database} owner to ${ident(registry)}`)
    await tx.unsafe(`revoke temporary on database ${database} from public`)
    await tx.unsafe('revoke create on schema public from public')
    // A deployment that ran the registry as a superuser before: its tables move to the registry login.
    for (const table of ['registry_migrations', 'tenants', 'domains', 'tenant_changes']) {
      const [found] = await tx.unsafe<Array<{ owner: string }>>(
        'select tableowner as owner from pg_catalog.pg_tables where schemaname = \'public\' and tablename = $1', [table])
      if (found !== undefined) await tx.unsafe(`alter table public.${ident(table)} owner to ${ident(registry)}`)
    }
    for (const { signature, name } of await tx.unsafe<Array<{ signature: string, name: string }>>(GUARDED_FUNCTIONS)) {
      await tx.unsafe(`revoke execute on function ${signature} from public`)
      await tx.unsafe(`grant execute on function ${signature} to ${ident(registry)} with grant option`)
      // Services set their unit's settings and take advisory locks (migrations); only the registry notifies.
      if (name !== 'pg_notify') await tx.unsafe(`grant execute on function ${signature} to ${ident(group)}`)
    }
    // Tenants provisioned before this role model: the registry administers their roles, the
    // group may SET ROLE to them, and nobody inherits their privileges.
    const tenants = await tx.unsafe<Array<{ role: string }>>(`select r.rolname as role from pg_catalog.pg_roles r
      where r.rolname like 'tenant\\_%' and exists (select 1 from pg_catalog.pg_namespace n where n.nspname = r.rolname)`)
    for (const { role } of tenants) {
      await tx.unsafe(`grant ${ident(role)} to ${ident(registry)} with admin true, inherit false, set true`)
      await tx.unsafe(`grant ${ident(role)} to ${ident(group)} with inherit false, set true`)
      await dropInheritance(tx as unknown as Sql, role)
    }
  })
  for (const login of options.services ?? []) await createServiceLogin(admin, { ...login, group })
}

/** Members that inherit a tenant role's privileges keep the membership but lose the inheritance. */
export async function dropInheritance (sql: Sql, role: string): Promise<void> {
  const members = await sql.unsafe<Array<{ member: string }>>(`select m.member::regrole::text as member from pg_catalog.pg_auth_members m
    where m.roleid = $1::regrole and m.inherit_option`, [ident(role)])
  for (const { member } of members) await sql.unsafe(`grant ${ident(role)} to ${member} with inherit false`)
}

export interface ServiceLoginOptions extends Login {
  /** Default: `DEFAULT_GROUP_ROLE`. */
  group?: string
}

/**
 * Creates (or updates the password of) a service's login: NOSUPERUSER, a member of the group, so
 * it reaches a tenant's tables only inside that tenant's unit of work. Run as the registry login
 * (or a superuser).
 */
export async function createServiceLogin (sql: Sql, options: ServiceLoginOptions): Promise<void> {
  const user = assertRoleName(options.user, 'service login')
  const group = assertRoleName(options.group ?? DEFAULT_GROUP_ROLE, 'group')
  if (options.password.length < 12) throw new InvalidOptionError('a service login\'s password must be at least 12 characters')
  await sql.begin(async (tx) => {
    const found = await tx.unsafe('select 1 from pg_catalog.pg_roles where rolname = $1', [user])
    // PostgreSQL's defaults are NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT; a CREATEROLE login may
    // not even name an attribute it lacks itself, so an existing login only gets a new password.
    await tx.unsafe(`${found.length > 0 ? 'alter' : 'create'} role ${ident(user)} login password ${literal(options.password)}`)
    const [role] = await tx.unsafe<Array<{ super: boolean }>>('select rolsuper as super from pg_catalog.pg_roles where rolname = $1', [user])
    if (role?.super === true) throw new InvalidOptionError(`${user} is a superuser: a service login must not be one`)
    await tx.unsafe(`grant ${ident(group)} to ${ident(user)} with inherit true, set true`)
  })
}

/** What a tenant's provisioning does to roles, in the caller's transaction (the registry's). */
export function tenantRoleStatements (tenantId: string, group = DEFAULT_GROUP_ROLE): string[] {
  const role = ident(schemaName(tenantId))
  return [
    `create role ${role} nologin`,
    // CREATE SCHEMA … AUTHORIZATION needs SET ROLE; the registry inherits nothing from tenants.
    `grant ${role} to current_user with inherit false, set true`,
    `grant ${role} to ${ident(assertRoleName(group, 'group'))} with inherit false, set true`,
    `create schema ${role} authorization ${role}`
  ]
}

export interface HardeningReport {
  superuser: boolean
  /** Guarantees that are weaker on this database, in words an operator can act on. */
  weaker: string[]
}

/**
 * What the connected login and database guarantee. A managed database whose administrator is not
 * a superuser may not allow the revokes: the caller logs `weaker` (the registry does at start).
 */
export async function checkHardening (sql: Sql, group = DEFAULT_GROUP_ROLE): Promise<HardeningReport> {
  const [row] = await sql.unsafe<Array<{ superuser: boolean, version: number, temp: boolean, group: boolean }>>(`select
      (select rolsuper from pg_catalog.pg_roles where rolname = current_user) as superuser,
      current_setting('server_version_num')::int as version,
      has_database_privilege('public', current_database(), 'TEMPORARY') as temp,
      exists (select 1 from pg_catalog.pg_roles where rolname = $1) as group`, [group])
  const weaker: string[] = []
  const r = row as { superuser: boolean, version: number, temp: boolean, group: boolean }
  /* c8 ignore next: the test servers are PostgreSQL 17 */
  if (r.version < 160000) weaker.push('PostgreSQL 16 or later is needed for INHERIT FALSE grants: service logins inherit every tenant role and can read any tenant table outside a unit of work')
  if (!r.group) weaker.push(`the group role "${group}" does not exist: run the database setup (tenant-registry setup-database)`)
  const open = await sql.unsafe<Array<{ name: string }>>(`select distinct f.name from (${GUARDED_FUNCTIONS}) f
    where has_function_privilege('public', f.signature, 'EXECUTE')`)
  for (const { name } of open) {
    weaker.push(name === 'set_config'
      ? 'PUBLIC may EXECUTE set_config: one injected statement inside a tenant unit can switch its role or search_path'
      : name === 'pg_notify'
        ? 'PUBLIC may EXECUTE pg_notify: tenant units can send notifications'
        : `PUBLIC may EXECUTE ${name}: tenant units can take advisory locks`)
  }
  if (r.temp) weaker.push('PUBLIC has TEMPORARY on the database: tenant units can create temporary tables (search paths still name pg_temp last, so they cannot shadow tenant tables)')
  return { superuser: r.superuser, weaker: [...new Set(weaker)] }
}
