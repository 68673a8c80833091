import { EventEmitter } from 'node:events'
import { assertTenantId, databaseError, isValidTenantId, schemaName, TenantNotFoundError, type Tenant, type TenantStatus, type TenantTier } from '@platform/multitenant'
import { and, count, eq, getTableColumns, gt, ilike, max, ne, or, sql, type SQL } from 'drizzle-orm'
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js'
import { tenantRoleStatements } from '@platform/multitenant/pg'
import type { Sql } from 'postgres'
import { checkConfig } from './config-rules.ts'
import { domains as domainsTable, tenantChanges as changesTable, tenants as tenantsTable } from './db/schema.ts'
import { ConflictError, DomainNotFoundError, PreconditionFailedError, ValidationError } from './errors.ts'

export const CHANGES_CHANNEL = 'tenant_changes'
/** The unique index that reserves an SMS sender id for one tenant. */
export const SMS_SENDER_INDEX = 'tenants_sms_sender_id_key'

export interface CreateTenantInput {
  id: string
  name: string
  tier?: TenantTier
  status?: 'active' | 'trial'
  database?: string
  domains?: string[]
  config?: Tenant['config']
  limits?: Tenant['limits']
  metadata?: Tenant['metadata']
  contactEmail?: string | null
}

export interface UpdateTenantInput {
  name?: string
  tier?: TenantTier
  database?: string
  config?: Record<string, unknown>
  limits?: Record<string, unknown>
  metadata?: Record<string, unknown>
  contactEmail?: string | null
}

export interface ListQuery {
  limit: number
  offset: number
  status?: TenantStatus | undefined
  tier?: TenantTier | undefined
  q?: string | undefined
}

export interface Change {
  seq: number
  tenantId: string
  type: string
  at: string
}

type TenantRow = typeof tenantsTable.$inferSelect & { domains: Array<{ domain: string, primary: boolean }> }

const domainsOf = sql<Array<{ domain: string, primary: boolean }>>`(select coalesce(json_agg(json_build_object('domain', d.domain, 'primary', d.is_primary) order by d.domain), '[]')
  from public.domains d where d.tenant_id = ${tenantsTable.id})`
const tenantColumns = { ...getTableColumns(tenantsTable), domains: domainsOf }

function toTenant (row: TenantRow): Tenant {
  return {
    id: row.id,
    name: row.name,
    status: row.status,
    tier: row.tier,
    schema: row.schemaName,
    database: row.database,
    domains: row.domains,
    config: row.config,
    limits: row.limits,
    metadata: row.metadata,
    contactEmail: row.contactEmail,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    version: row.version
  }
}

/** Only ever called with a schema name derived from a validated id (see `schemaName`). */
const q = (identifier: string): SQL => sql.raw(`"${identifier}"`)

/** RFC 7396 JSON merge patch: objects merge, `null` deletes, anything else replaces. */
export function mergePatch (target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch
  const out: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...target as Record<string, unknown> } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key]
    else out[key] = mergePatch(out[key], value)
  }
  return out
}

/** Lower-cases, strips a port and one trailing dot; refuses anything that is not a host name. */
export function normalizeDomain (raw: string): string {
  let host = raw.trim().toLowerCase()
  const colon = host.lastIndexOf(':')
  if (colon !== -1 && /^\d{1,5}$/.test(host.slice(colon + 1))) host = host.slice(0, colon)
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (!/^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(host)) {
    throw new ValidationError('domain must be a host name such as mail.example.com')
  }
  return host
}

export interface TenantStoreOptions {
  baseDomain?: string | undefined
  /** Cluster names a tenant's `database` may name (default `['default']`). */
  clusters?: string[] | undefined
  /** The group role services log in through (default `platform_services`). */
  group?: string | undefined
  /** The role that owns the tables in tenant schemas (default `platform_owner`). */
  owner?: string | undefined
  /** Test hook: runs inside the provisioning transaction, after the DDL, before activation. */
  beforeActivate?: (id: string) => void | Promise<void>
}

export type RegistryDb = PostgresJsDatabase<Record<string, never>>
type Tx = Parameters<Parameters<RegistryDb['transaction']>[0]>[0]

/** The registry's data: tenants, domains, provisioning, and the change log. */
export class TenantStore {
  readonly #sql: Sql
  readonly #db: RegistryDb
  readonly #options: TenantStoreOptions
  readonly changes = new EventEmitter()
  readonly #byId
  readonly #byDomain
  #listening: Promise<unknown> | null = null

  /**
   * `sql` is the postgres.js pool; drizzle wraps it (and, doing so, changes its type parsers:
   * timestamps arrive as text and drizzle maps them), so use the store rather than raw queries.
   */
  constructor (client: Sql, options: TenantStoreOptions = {}) {
    this.#sql = client
    this.#db = drizzle(client)
    this.#options = options
    this.changes.setMaxListeners(0)
    // The hot look-ups are named prepared statements: one round trip each.
    this.#byId = this.#db.select(tenantColumns).from(tenantsTable).where(eq(tenantsTable.id, sql.placeholder('id'))).prepare('registry_tenant_by_id')
    this.#byDomain = this.#db.select(tenantColumns).from(domainsTable).innerJoin(tenantsTable, eq(tenantsTable.id, domainsTable.tenantId))
      .where(eq(domainsTable.domain, sql.placeholder('domain'))).prepare('registry_tenant_by_domain')
  }

  /** Subscribes to change notifications from every registry instance on this database. */
  async listen (): Promise<void> {
    this.#listening ??= this.#sql.listen(CHANGES_CHANNEL, (payload) => this.changes.emit('change', Number(payload)))
    await this.#listening
  }

  async #record (tx: Tx, tenantId: string, type: string): Promise<void> {
    const [row] = await tx.insert(changesTable).values({ tenantId, type }).returning({ seq: changesTable.seq })
    await tx.execute(sql`select pg_notify(${CHANGES_CHANNEL}, ${String(row?.seq)})`)
  }

  /** A custom domain: a host name, and not the base domain or under it (those are tenant subdomains). */
  #customDomain (raw: string): string {
    const domain = normalizeDomain(raw)
    const base = this.#options.baseDomain
    if (base !== undefined && (domain === base || domain.endsWith('.' + base))) {
      throw new ValidationError(`a custom domain must not be ${base} or under it: tenants get <id>.${base} already`)
    }
    return domain
  }

  /** A cluster is configured when DATABASE_URL_<NAME> is: `eu-1` and `eu_1` both read DATABASE_URL_EU_1. */
  #cluster (name: string | undefined): string {
    const cluster = name ?? 'default'
    const known = this.#options.clusters ?? ['default']
    const form = (n: string): string => n.toUpperCase().replaceAll('-', '_')
    if (!known.some((k) => form(k) === form(cluster))) throw new ValidationError(`database must name a configured cluster (${known.join(', ')})`)
    return cluster
  }

  async get (id: string): Promise<Tenant | null> {
    const [row] = await this.#byId.execute({ id })
    return row === undefined ? null : toTenant(row)
  }

  async require (id: string): Promise<Tenant> {
    const tenant = await this.get(id)
    if (tenant === null) throw new TenantNotFoundError()
    return tenant
  }

  async list (query: ListQuery): Promise<{ items: Tenant[], total: number }> {
    const filters: SQL[] = []
    if (query.status !== undefined) filters.push(eq(tenantsTable.status, query.status))
    if (query.tier !== undefined) filters.push(eq(tenantsTable.tier, query.tier))
    if (query.q !== undefined && query.q !== '') {
      const pattern = `%${query.q.replace(/[\\%_]/g, (c) => '\\' + c)}%`
      filters.push(or(ilike(tenantsTable.id, pattern), ilike(tenantsTable.name, pattern)) as SQL)
    }
    const where = and(...filters)
    const total = await this.#db.$count(tenantsTable, where)
    const rows = await this.#db.select(tenantColumns).from(tenantsTable).where(where).orderBy(tenantsTable.id).limit(query.limit).offset(query.offset)
    return { items: rows.map(toTenant), total }
  }

  /**
   * Creates and provisions a tenant in one transaction: the row (as `provisioning`), its NOLOGIN
   * role (granted to the services' group so it can SET ROLE), its schema (owned by the registry;
   * the tenant role gets USAGE, the owner role USAGE and CREATE), then `active`. Any failure rolls all of it back: no orphan schema, role or row; a retry starts clean.
   */
  async create (input: CreateTenantInput): Promise<Tenant> {
    const id = assertTenantId(input.id)
    const schema = schemaName(id)
    const domains = (input.domains ?? []).map((d) => this.#customDomain(d))
    const database = this.#cluster(input.database)
    if (new Set(domains).size !== domains.length) throw new ValidationError('domains must not repeat')
    checkConfig(input.config ?? {}, { id, domains, baseDomain: this.#options.baseDomain })
    try {
      await this.#db.transaction(async (tx) => {
        await tx.insert(tenantsTable).values({
          id,
          name: input.name,
          status: 'provisioning',
          tier: input.tier ?? 'standard',
          schemaName: schema,
          database,
          config: input.config ?? {},
          limits: input.limits ?? {},
          metadata: input.metadata ?? {},
          contactEmail: input.contactEmail ?? null
        })
        if (domains.length > 0) {
          await tx.insert(domainsTable).values(domains.map((domain, i) => ({ domain, tenantId: id, isPrimary: i === 0 })))
        }
        // The role, the registry's SET (not INHERIT) on it, the services' group's SET on it, and
        // its schema, which it does not own (README, "Database roles").
        for (const statement of tenantRoleStatements(id, this.#options.group, this.#options.owner)) await tx.execute(sql.raw(statement))
        await this.#options.beforeActivate?.(id)
        await tx.update(tenantsTable).set({ status: input.status ?? 'active', version: sql`${tenantsTable.version} + 1`, updatedAt: sql`now()` }).where(eq(tenantsTable.id, id))
        await this.#record(tx, id, 'tenant.created')
      })
    } catch (err) {
      throw translate(err)
    }
    return await this.require(id)
  }

  async update (id: string, patch: UpdateTenantInput, ifMatch?: number): Promise<Tenant> {
    if (patch.database !== undefined) this.#cluster(patch.database)
    try {
      await this.#db.transaction(async (tx) => {
        const [row] = await tx.select().from(tenantsTable).where(eq(tenantsTable.id, id)).for('update')
        if (row === undefined) throw new TenantNotFoundError()
        if (ifMatch !== undefined && row.version !== ifMatch) throw new PreconditionFailedError()
        const config = mergePatch(row.config, patch.config ?? {}) as Tenant['config']
        if (patch.config !== undefined) {
          // The domains as of this transaction: a domain removed later is caught when sending.
          const owned = await tx.select({ domain: domainsTable.domain }).from(domainsTable).where(eq(domainsTable.tenantId, id))
          checkConfig(config, { id, domains: owned.map((d) => d.domain), baseDomain: this.#options.baseDomain }, Object.hasOwn(patch.config, 'comm'))
        }
        await tx.update(tenantsTable).set({
          name: patch.name ?? row.name,
          tier: patch.tier ?? row.tier,
          database: patch.database ?? row.database,
          config,
          limits: mergePatch(row.limits, patch.limits ?? {}) as Tenant['limits'],
          metadata: mergePatch(row.metadata, patch.metadata ?? {}) as Tenant['metadata'],
          contactEmail: patch.contactEmail === undefined ? row.contactEmail : patch.contactEmail,
          version: sql`${tenantsTable.version} + 1`,
          updatedAt: sql`now()`
        }).where(eq(tenantsTable.id, id))
        await this.#record(tx, id, 'tenant.updated')
      })
    } catch (err) {
      throw translate(err)
    }
    return await this.require(id)
  }

  async setStatus (id: string, status: TenantStatus, type: string): Promise<Tenant> {
    await this.#db.transaction(async (tx) => {
      const rows = await tx.update(tenantsTable).set({ status, version: sql`${tenantsTable.version} + 1`, updatedAt: sql`now()` })
        .where(and(eq(tenantsTable.id, id), ne(tenantsTable.status, 'provisioning'))).returning({ id: tenantsTable.id })
      if (rows.length === 0) throw new TenantNotFoundError()
      await this.#record(tx, id, type)
    })
    return await this.require(id)
  }

  /** Archives; with `purge` also drops the schema (with its tables) and the role, and deletes the row. */
  async remove (id: string, purge: boolean): Promise<Tenant | null> {
    if (!purge) return await this.setStatus(id, 'archived', 'tenant.archived')
    const schema = schemaName(id)
    await this.#db.transaction(async (tx) => {
      const rows = await tx.delete(tenantsTable).where(eq(tenantsTable.id, id)).returning({ id: tenantsTable.id })
      if (rows.length === 0) throw new TenantNotFoundError()
      const [found] = await tx.execute<{ role: boolean, mine: boolean | null }>(sql`select exists (select 1 from pg_catalog.pg_roles where rolname = ${schema}) as role,
        (select n.nspowner = r.oid from pg_catalog.pg_namespace n, pg_catalog.pg_roles r where n.nspname = ${schema} and r.rolname = current_user) as mine`)
      const { role, mine } = found as { role: boolean, mine: boolean | null }
      // The registry owns the schema; its tables (the owner role's) go with it.
      if (mine !== false) await tx.execute(sql`drop schema if exists ${q(schema)} cascade`)
      if (role) {
        // The registry inherits nothing from tenant roles: as the role it drops what the role
        // still owns (a schema provisioned when tenant roles owned theirs) and what was granted to it.
        await tx.execute(sql`set local role ${q(schema)}`)
        await tx.execute(sql`drop owned by ${q(schema)} cascade`)
        await tx.execute(sql`reset role`)
        await tx.execute(sql`drop role ${q(schema)}`)
      }
      await this.#record(tx, id, 'tenant.purged')
    })
    return null
  }

  async addDomain (id: string, raw: string, primary: boolean): Promise<Tenant> {
    const domain = this.#customDomain(raw)
    try {
      await this.#db.transaction(async (tx) => {
        const exists = await tx.select({ id: tenantsTable.id }).from(tenantsTable).where(eq(tenantsTable.id, id)).for('update')
        if (exists.length === 0) throw new TenantNotFoundError()
        if (primary) await tx.update(domainsTable).set({ isPrimary: false }).where(eq(domainsTable.tenantId, id))
        const count = await tx.$count(domainsTable, eq(domainsTable.tenantId, id))
        await tx.insert(domainsTable).values({ domain, tenantId: id, isPrimary: primary || count === 0 })
        await tx.update(tenantsTable).set({ version: sql`${tenantsTable.version} + 1`, updatedAt: sql`now()` }).where(eq(tenantsTable.id, id))
        await this.#record(tx, id, 'domain.added')
      })
    } catch (err) {
      throw translate(err)
    }
    return await this.require(id)
  }

  async removeDomain (id: string, raw: string): Promise<Tenant> {
    const domain = normalizeDomain(raw)
    await this.#db.transaction(async (tx) => {
      const rows = await tx.delete(domainsTable).where(and(eq(domainsTable.domain, domain), eq(domainsTable.tenantId, id))).returning({ domain: domainsTable.domain })
      if (rows.length === 0) throw new DomainNotFoundError()
      await tx.update(tenantsTable).set({ version: sql`${tenantsTable.version} + 1`, updatedAt: sql`now()` }).where(eq(tenantsTable.id, id))
      await this.#record(tx, id, 'domain.removed')
    })
    return await this.require(id)
  }

  /** The tenant a host belongs to: a custom domain, or a subdomain of the base domain. */
  async resolveHost (raw: string): Promise<Tenant | null> {
    const host = normalizeDomain(raw)
    const base = this.#options.baseDomain
    // Under the base domain only the subdomain counts: no custom domain can claim a tenant's host.
    if (base !== undefined && (host === base || host.endsWith('.' + base))) {
      const label = host.slice(0, -(base.length + 1))
      return isValidTenantId(label) ? await this.get(label) : null
    }
    const [row] = await this.#byDomain.execute({ domain: host })
    return row === undefined ? null : toTenant(row)
  }

  async changesAfter (after: number, limit: number): Promise<Change[]> {
    const rows = await this.#db.select().from(changesTable).where(gt(changesTable.seq, after)).orderBy(changesTable.seq).limit(limit)
    return rows.map((r) => ({ seq: r.seq, tenantId: r.tenantId, type: r.type, at: r.at.toISOString() }))
  }

  async countByStatus (): Promise<Map<string, number>> {
    const rows = await this.#db.select({ status: tenantsTable.status, n: count() }).from(tenantsTable).groupBy(tenantsTable.status)
    return new Map(rows.map((r) => [r.status, r.n]))
  }

  async lastSeq (): Promise<number> {
    const [row] = await this.#db.select({ seq: max(changesTable.seq) }).from(changesTable)
    return Number(row?.seq ?? 0)
  }
}

/** The violated constraint's name, from postgres.js's error (drizzle wraps it as the cause). */
function constraintOf (err: unknown): string | undefined {
  for (let e = err; typeof e === 'object' && e !== null; e = (e as { cause?: unknown }).cause) {
    const name = (e as { constraint_name?: unknown }).constraint_name
    if (typeof name === 'string') return name
  }
  /* c8 ignore next: asked of unique violations only, which always name their constraint */
  return undefined
}

function translate (err: unknown): unknown {
  const code = databaseError(err)?.code
  // An SMS sender id is one tenant's (the unique index of migration 0003, case-insensitive).
  if (code === '23505' && constraintOf(err) === SMS_SENDER_INDEX) {
    return new ConflictError('config.comm.smsSenderId is already another tenant\'s sender id (compared without case)')
  }
  if (code === '23505') return new ConflictError('A tenant with this id, or this domain, already exists')
  if (code === '42710' || code === '42P06') return new ConflictError('The tenant\'s schema or role already exists in this cluster')
  return err
}
