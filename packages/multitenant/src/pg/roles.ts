import type { Sql } from 'postgres'
import { InvalidOptionError } from '../errors.ts'
import { schemaName } from '../tenant-id.ts'

// The database role model (README, "Database roles"):
//
//   registry login   NOSUPERUSER CREATEROLE; owns the database and the public tables, creates each
//                    tenant's NOLOGIN role (and so holds ADMIN on it), provisions schemas.
//                    Owns each tenant schema (not its tables).
//   group role       NOLOGIN; the registry grants it every tenant role WITH INHERIT FALSE, SET TRUE.
//   owner role       NOLOGIN; owns the tables in tenant schemas (USAGE and CREATE on each). The
//                    group may SET ROLE to it but does not inherit it: migrations run as it.
//   service logins   NOSUPERUSER members of the group: they inherit nothing from tenant roles or
//                    the owner role, so outside a unit of work they read no tenant table, and
//                    inside one they can `SET LOCAL ROLE` to the unit's tenant.
//   tenant roles     NOLOGIN, own nothing: USAGE on their schema, DML on its tables and
//                    sequences; no EXECUTE on set_config, pg_notify or the advisory-lock
//                    functions, no TEMPORARY on the database, no USAGE on procedural languages.
//
// Needs PostgreSQL 16 or later (grant options INHERIT and SET).

/** The group role services log in through, unless configured otherwise. */
export const DEFAULT_GROUP_ROLE = 'platform_services'
/** The role that owns the tables in tenant schemas (migrations run as it), unless configured otherwise. */
export const DEFAULT_OWNER_ROLE = 'platform_owner'

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
  /** Default: `DEFAULT_OWNER_ROLE`. */
  owner?: string
}

/** What a run of the setup moved (tenants provisioned when tenant roles owned their schema). */
export interface SetupReport {
  /** Tenant roles that owned objects and own none now. */
  moved: string[]
  /** What the move dropped: functions, views, triggers, rules… (never a table, sequence or type). */
  dropped: string[]
}

/**
 * The one-time setup, run as a superuser connected to the platform's database (the only step that
 * needs one). Idempotent: run again, it updates passwords and re-applies grants and revokes.
 */
export async function setupDatabase (admin: Sql, options: SetupDatabaseOptions): Promise<SetupReport> {
  const group = assertRoleName(options.group ?? DEFAULT_GROUP_ROLE, 'group')
  const owner = assertRoleName(options.owner ?? DEFAULT_OWNER_ROLE, 'owner role')
  const registry = assertRoleName(options.registry.user, 'registry login')
  const report: SetupReport = { moved: [], dropped: [] }
  await admin.begin(async (tx) => {
    const exists = async (role: string): Promise<boolean> =>
      (await tx.unsafe('select 1 from pg_catalog.pg_roles where rolname = $1', [role])).length > 0
    const verb = await exists(registry) ? 'alter' : 'create'
    await tx.unsafe(`${verb} role ${ident(registry)} login nosuperuser createrole nocreatedb password ${literal(options.registry.password)}`)
    // Another database on the cluster may create the group at the same moment.
    for (const role of [group, owner]) {
      await tx.unsafe(`do $$ begin create role ${ident(role)} nologin; exception when duplicate_object or unique_violation then null; end $$`)
    }
    // Logins become the owner only by SET ROLE (migrations); they inherit nothing from it.
    await tx.unsafe(`grant ${ident(owner)} to ${ident(group)} with inherit false, set true`)
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
    // Procedural languages (plpgsql): no DO block or function body for tenant roles; the owners
    // (the registry, the logins through the group, the owner role) keep them.
    for (const { name } of await tx.unsafe<Array<{ name: string }>>(PROCEDURAL_LANGUAGES)) {
      await tx.unsafe(`revoke usage on language ${ident(name)} from public`)
      await tx.unsafe(`grant usage on language ${ident(name)} to ${ident(registry)}, ${ident(group)}, ${ident(owner)}`)
    }
    // Tenants provisioned before this role model: the registry administers their roles, the
    // group may SET ROLE to them, and nobody inherits their privileges.
    const tenants = await tx.unsafe<Array<{ role: string }>>(`select r.rolname as role from pg_catalog.pg_roles r
      where r.rolname like 'tenant\\_%' and exists (select 1 from pg_catalog.pg_namespace n where n.nspname = r.rolname)`)
    for (const { role } of tenants) {
      await tx.unsafe(`grant ${ident(role)} to ${ident(registry)} with admin true, inherit false, set true`)
      await tx.unsafe(`grant ${ident(role)} to ${ident(group)} with inherit false, set true`)
      await dropInheritance(tx as unknown as Sql, role)
      // Tenants provisioned when tenant roles owned their schema: they own nothing afterwards.
      if (await ownsObjects(tx as unknown as Sql, role)) {
        report.dropped.push(...await disown(tx as unknown as Sql, role, registry, owner))
        report.moved.push(role)
      }
    }
  })
  for (const login of options.services ?? []) await createServiceLogin(admin, { ...login, group })
  return report
}

/** The migration ledger in each tenant schema (`LEDGER_TABLE` of the migrations module). */
const LEDGER = '_tenant_migrations'
const PROCEDURAL_LANGUAGES = 'select lanname as name from pg_catalog.pg_language where lanispl and lanpltrusted'
const THIS_DATABASE = '(select oid from pg_catalog.pg_database where datname = current_database())'

async function ownsObjects (sql: Sql, role: string): Promise<boolean> {
  const rows = await sql.unsafe(`select 1 from pg_catalog.pg_shdepend d where d.dbid = ${THIS_DATABASE}
    and d.refclassid = 'pg_catalog.pg_authid'::regclass and d.refobjid = $1::regrole and d.deptype = 'o' limit 1`, [ident(role)])
  return rows.length > 0
}

/**
 * What gives a tenant role DML, and nothing else, on what its schema holds: `future`, default
 * privileges of the current role (the owner role, in the migrator) for the tables and sequences
 * it creates there; `existing`, grants on the tables and sequences there now, never on the
 * migration ledger (`ledger`: whether it exists).
 */
export function tenantGrants (tenantRole: string, ledger = true): { future: string[], existing: string[] } {
  const schema = ident(tenantRole)
  return {
    future: [
      `alter default privileges in schema ${schema} grant select, insert, update, delete on tables to ${schema}`,
      `alter default privileges in schema ${schema} grant usage, select, update on sequences to ${schema}`
    ],
    existing: [
      `grant select, insert, update, delete on all tables in schema ${schema} to ${schema}`,
      `grant usage, select, update on all sequences in schema ${schema} to ${schema}`,
      // The ledger is the migrator's: a tenant unit must not make it skip or repeat a migration.
      ...ledger ? [`revoke all on table ${schema}.${LEDGER} from ${schema}`] : []
    ]
  }
}

/**
 * Moves a tenant provisioned when tenant roles owned their schema to the model where they own
 * nothing, keeping every row: the schema goes to the registry, tables, sequences, types and
 * collations to the owner role; the triggers and rules on its tables and everything else the
 * tenant role owned (functions, procedures, views, operators…, which hold no rows) are dropped,
 * since any of them may have been planted by an injected statement; every privilege on the schema
 * and its tables is reset, then the tenant role gets USAGE and DML. Returns what was dropped.
 */
async function disown (sql: Sql, role: string, registry: string, owner: string): Promise<string[]> {
  const schema = ident(role)
  const to = ident(owner)
  // Objects in the schema that the tenant role owns: `ns` and `own` name the catalog's columns.
  const mine = (ns: string, own: string): string => `${ns} = $1::text::regnamespace and ${own} = $1::text::regrole`
  const args = [schema]
  const names = async (query: string): Promise<string[]> => (await sql.unsafe<Array<{ name: string }>>(query, args)).map((r) => r.name)
  const dropped: string[] = []
  await sql.unsafe(`alter schema ${schema} owner to ${ident(registry)}`)
  for (const name of await names(`select oid::regclass::text as name from pg_catalog.pg_class where relkind in ('r', 'p') and ${mine('relnamespace', 'relowner')} order by oid`)) {
    await sql.unsafe(`alter table ${name} owner to ${to}`)
  }
  // Sequences of serial and identity columns followed their tables.
  for (const name of await names(`select oid::regclass::text as name from pg_catalog.pg_class where relkind = 'S' and ${mine('relnamespace', 'relowner')} order by oid`)) {
    await sql.unsafe(`alter sequence ${name} owner to ${to}`)
  }
  for (const { name, kind } of await sql.unsafe<Array<{ name: string, kind: string }>>(`select t.oid::regtype::text as name, t.typtype as kind from pg_catalog.pg_type t
    left join pg_catalog.pg_class c on c.oid = t.typrelid
    where t.typtype in ('c', 'd', 'e', 'r') and (t.typrelid = 0 or c.relkind = 'c') and ${mine('t.typnamespace', 't.typowner')} order by t.oid`, args)) {
    await sql.unsafe(`alter ${kind === 'd' ? 'domain' : 'type'} ${name} owner to ${to}`)
  }
  for (const name of await names(`select oid::regcollation::text as name from pg_catalog.pg_collation where ${mine('collnamespace', 'collowner')}`)) {
    await sql.unsafe(`alter collation ${name} owner to ${to}`)
  }
  const triggers = await sql.unsafe<Array<{ name: string, rel: string, what: string }>>(`select tg.tgname as name, tg.tgrelid::regclass::text as rel,
      pg_catalog.pg_describe_object('pg_catalog.pg_trigger'::regclass, tg.oid, 0) as what
    from pg_catalog.pg_trigger tg join pg_catalog.pg_class c on c.oid = tg.tgrelid
    where not tg.tgisinternal and c.relnamespace = $1::regnamespace`, [schema])
  for (const { name, rel, what } of triggers) {
    await sql.unsafe(`drop trigger ${ident(name)} on ${rel}`)
    dropped.push(what)
  }
  const rules = await sql.unsafe<Array<{ name: string, rel: string, what: string }>>(`select r.rulename as name, r.ev_class::regclass::text as rel,
      pg_catalog.pg_describe_object('pg_catalog.pg_rewrite'::regclass, r.oid, 0) as what
    from pg_catalog.pg_rewrite r join pg_catalog.pg_class c on c.oid = r.ev_class
    where c.relkind in ('r', 'p') and c.relnamespace = $1::regnamespace`, [schema])
  for (const { name, rel, what } of rules) {
    await sql.unsafe(`drop rule ${ident(name)} on ${rel}`)
    dropped.push(what)
  }
  dropped.push(...(await sql.unsafe<Array<{ what: string }>>(`select pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) as what
    from pg_catalog.pg_shdepend d where d.dbid = ${THIS_DATABASE} and d.refclassid = 'pg_catalog.pg_authid'::regclass
    and d.refobjid = $1::regrole and d.deptype = 'o' order by 1`, [schema])).map((r) => r.what))
  // Also revokes every privilege granted to the tenant role, and its own default privileges.
  await sql.unsafe(`drop owned by ${schema} cascade`)
  // Privileges the tenant role granted while it owned the schema and tables (to PUBLIC, to other
  // tenants…) passed to the new owners: revoke every one but the owners' own.
  const grantee = 'case when g.grantee = 0 then \'public\' else pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) end'
  for (const { who } of await sql.unsafe<Array<{ who: string }>>(`select distinct ${grantee} as who from pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) g
    where n.oid = $1::regnamespace and g.grantee <> n.nspowner`, [schema])) {
    await sql.unsafe(`revoke all on schema ${schema} from ${who}`)
  }
  for (const { rel, kind, who } of await sql.unsafe<Array<{ rel: string, kind: string, who: string }>>(`select distinct c.oid::regclass::text as rel, c.relkind::text as kind, ${grantee} as who
    from pg_catalog.pg_class c, lateral (select a.grantee from pg_catalog.aclexplode(c.relacl) a
      union select a.grantee from pg_catalog.pg_attribute att, pg_catalog.aclexplode(att.attacl) a where att.attrelid = c.oid) g
    where c.relnamespace = $1::regnamespace and g.grantee <> c.relowner`, [schema])) {
    await sql.unsafe(`revoke all on ${kind === 'S' ? 'sequence' : 'table'} ${rel} from ${who}`)
  }
  await sql.unsafe(`grant usage on schema ${schema} to ${schema}`)
  await sql.unsafe(`grant usage, create on schema ${schema} to ${to}`)
  const [ledger] = await sql.unsafe<Array<{ found: boolean }>>('select to_regclass($1) is not null as found', [`${schema}.${LEDGER}`])
  // The migrator adds default privileges when it next applies a migration (after its ledger).
  for (const statement of tenantGrants(role, ledger?.found === true).existing) await sql.unsafe(statement)
  return dropped
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

/**
 * What a tenant's provisioning does to roles, in the caller's transaction (the registry's): the
 * tenant's role, which owns nothing, and its schema, owned by the caller. The owner role creates
 * the tables (migrations), the tenant role gets USAGE and (by the migrator's grants) DML.
 */
export function tenantRoleStatements (tenantId: string, group = DEFAULT_GROUP_ROLE, owner = DEFAULT_OWNER_ROLE): string[] {
  const role = ident(schemaName(tenantId))
  return [
    `create role ${role} nologin`,
    // DROP OWNED on purge needs SET ROLE; the registry inherits nothing from tenants.
    `grant ${role} to current_user with inherit false, set true`,
    `grant ${role} to ${ident(assertRoleName(group, 'group'))} with inherit false, set true`,
    `create schema ${role}`,
    `grant usage on schema ${role} to ${role}`,
    `grant usage, create on schema ${role} to ${ident(assertRoleName(owner, 'owner role'))}`
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
export async function checkHardening (sql: Sql, group = DEFAULT_GROUP_ROLE, owner = DEFAULT_OWNER_ROLE): Promise<HardeningReport> {
  const [row] = await sql.unsafe<Array<{ superuser: boolean, version: number, temp: boolean, group: boolean, owner: boolean, owning: number }>>(`select
      (select rolsuper from pg_catalog.pg_roles where rolname = current_user) as superuser,
      current_setting('server_version_num')::int as version,
      has_database_privilege('public', current_database(), 'TEMPORARY') as temp,
      exists (select 1 from pg_catalog.pg_roles where rolname = $1) as group,
      exists (select 1 from pg_catalog.pg_roles where rolname = $2) as owner,
      (select count(distinct d.refobjid)::int from pg_catalog.pg_shdepend d join pg_catalog.pg_roles r on r.oid = d.refobjid
        where d.dbid = ${THIS_DATABASE} and d.refclassid = 'pg_catalog.pg_authid'::regclass and d.deptype = 'o'
          and r.rolname like 'tenant\\_%') as owning`, [group, owner])
  const weaker: string[] = []
  const r = row as { superuser: boolean, version: number, temp: boolean, group: boolean, owner: boolean, owning: number }
  /* c8 ignore next: the test servers are PostgreSQL 17 */
  if (r.version < 160000) weaker.push('PostgreSQL 16 or later is needed for INHERIT FALSE grants: service logins inherit every tenant role and can read any tenant table outside a unit of work')
  if (!r.group) weaker.push(`the group role "${group}" does not exist: run the database setup (tenant-registry setup-database)`)
  if (!r.owner) weaker.push(`the owner role "${owner}" does not exist: run the database setup (tenant-registry setup-database)`)
  if (r.owning > 0) weaker.push(`${r.owning} tenant role(s) own their schema or objects in it (provisioned before tenant roles owned nothing), so their units can create functions, triggers and views: run the database setup (tenant-registry setup-database) as a superuser to move them`)
  for (const { name } of await sql.unsafe<Array<{ name: string }>>(`select l.name from (${PROCEDURAL_LANGUAGES}) l where has_language_privilege('public', l.name, 'USAGE')`)) {
    weaker.push(`PUBLIC may use the language ${name}: one injected statement inside a tenant unit can run a DO block`)
  }
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
