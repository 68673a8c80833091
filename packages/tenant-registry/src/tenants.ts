import { EventEmitter } from 'node:events'
import { assertTenantId, schemaName, TenantNotFoundError, type Tenant, type TenantStatus, type TenantTier } from '@platform/multitenant'
import type { Sql, TransactionSql } from 'postgres'
import { ConflictError, DomainNotFoundError, PreconditionFailedError, ValidationError } from './errors.ts'

export const CHANGES_CHANNEL = 'tenant_changes'

export interface CreateTenantInput {
  id: string
  name: string
  tier?: TenantTier
  status?: 'active' | 'trial'
  database?: string
  domains?: string[]
  config?: Record<string, unknown>
  limits?: Record<string, number>
  metadata?: Record<string, unknown>
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

interface TenantRow {
  id: string
  name: string
  status: TenantStatus
  tier: TenantTier
  schema_name: string
  database: string
  config: Tenant['config']
  limits: Tenant['limits']
  metadata: Tenant['metadata']
  contact_email: string | null
  created_at: Date
  updated_at: Date
  version: number
  domains: Array<{ domain: string, primary: boolean }> | null
}

const SELECT = `select t.*, (select coalesce(json_agg(json_build_object('domain', d.domain, 'primary', d.is_primary) order by d.domain), '[]')
  from public.domains d where d.tenant_id = t.id) as domains from public.tenants t`

function toTenant (row: TenantRow): Tenant {
  return {
    id: row.id,
    name: row.name,
    status: row.status,
    tier: row.tier,
    schema: row.schema_name,
    database: row.database,
    domains: row.domains ?? [],
    config: row.config,
    limits: row.limits,
    metadata: row.metadata,
    contactEmail: row.contact_email,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    version: row.version
  }
}

const q = (identifier: string): string => `"${identifier}"`

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
  /** Test hook: runs inside the provisioning transaction, after the DDL, before activation. */
  beforeActivate?: (id: string) => void | Promise<void>
}

/** The registry's data: tenants, domains, provisioning, and the change log. */
export class TenantStore {
  readonly #sql: Sql
  readonly #options: TenantStoreOptions
  readonly changes = new EventEmitter()
  #listening: Promise<unknown> | null = null

  constructor (sql: Sql, options: TenantStoreOptions = {}) {
    this.#sql = sql
    this.#options = options
    this.changes.setMaxListeners(0)
  }

  /** Subscribes to change notifications from every registry instance on this database. */
  async listen (): Promise<void> {
    this.#listening ??= this.#sql.listen(CHANGES_CHANNEL, (payload) => this.changes.emit('change', Number(payload)))
    await this.#listening
  }

  async #record (tx: TransactionSql, tenantId: string, type: string): Promise<void> {
    const [row] = await tx<Array<{ seq: string }>>`insert into public.tenant_changes (tenant_id, type) values (${tenantId}, ${type}) returning seq`
    await tx`select pg_notify(${CHANGES_CHANNEL}, ${String(row?.seq)})`
  }

  async get (id: string): Promise<Tenant | null> {
    const rows = await this.#sql.unsafe<TenantRow[]>(`${SELECT} where t.id = $1`, [id])
    return rows[0] === undefined ? null : toTenant(rows[0])
  }

  async require (id: string): Promise<Tenant> {
    const tenant = await this.get(id)
    if (tenant === null) throw new TenantNotFoundError()
    return tenant
  }

  async list (query: ListQuery): Promise<{ items: Tenant[], total: number }> {
    const where: string[] = []
    const params: unknown[] = []
    if (query.status !== undefined) { params.push(query.status); where.push(`t.status = $${params.length}`) }
    if (query.tier !== undefined) { params.push(query.tier); where.push(`t.tier = $${params.length}`) }
    if (query.q !== undefined && query.q !== '') {
      params.push(`%${query.q.replace(/[\\%_]/g, (c) => '\\' + c)}%`)
      where.push(`(t.id ilike $${params.length} or t.name ilike $${params.length})`)
    }
    const clause = where.length === 0 ? '' : ` where ${where.join(' and ')}`
    const [count] = await this.#sql.unsafe<Array<{ n: string }>>(`select count(*) as n from public.tenants t${clause}`, params as never[])
    params.push(query.limit, query.offset)
    const rows = await this.#sql.unsafe<TenantRow[]>(`${SELECT}${clause} order by t.id limit $${params.length - 1} offset $${params.length}`, params as never[])
    return { items: rows.map(toTenant), total: Number(count?.n ?? 0) }
  }

  /**
   * Creates and provisions a tenant in one transaction: the row (as `provisioning`), its NOLOGIN
   * role (granted to the service's user so it can SET ROLE), its schema owned by that role, then
   * `active`. Any failure rolls all of it back: no orphan schema, role or row; a retry starts clean.
   */
  async create (input: CreateTenantInput): Promise<Tenant> {
    const id = assertTenantId(input.id)
    const schema = schemaName(id)
    const domains = (input.domains ?? []).map(normalizeDomain)
    try {
      await this.#sql.begin(async (tx) => {
        await tx`insert into public.tenants (id, name, status, tier, schema_name, database, config, limits, metadata, contact_email)
          values (${id}, ${input.name}, 'provisioning', ${input.tier ?? 'standard'}, ${schema}, ${input.database ?? 'default'},
            ${tx.json((input.config ?? {}) as never)}, ${tx.json((input.limits ?? {}) as never)}, ${tx.json((input.metadata ?? {}) as never)},
            ${input.contactEmail ?? null})`
        for (const [i, domain] of domains.entries()) {
          await tx`insert into public.domains (domain, tenant_id, is_primary) values (${domain}, ${id}, ${i === 0})`
        }
        await tx.unsafe(`create role ${q(schema)} nologin`)
        await tx.unsafe(`grant ${q(schema)} to current_user`)
        await tx.unsafe(`create schema ${q(schema)} authorization ${q(schema)}`)
        await this.#options.beforeActivate?.(id)
        await tx`update public.tenants set status = ${input.status ?? 'active'}, version = version + 1, updated_at = now() where id = ${id}`
        await this.#record(tx, id, 'tenant.created')
      })
    } catch (err) {
      throw translate(err)
    }
    return await this.require(id)
  }

  async update (id: string, patch: UpdateTenantInput, ifMatch?: number): Promise<Tenant> {
    await this.#sql.begin(async (tx) => {
      const [row] = await tx<TenantRow[]>`select * from public.tenants where id = ${id} for update`
      if (row === undefined) throw new TenantNotFoundError()
      if (ifMatch !== undefined && row.version !== ifMatch) throw new PreconditionFailedError()
      await tx`update public.tenants set
        name = ${patch.name ?? row.name}, tier = ${patch.tier ?? row.tier}, database = ${patch.database ?? row.database},
        config = ${tx.json(mergePatch(row.config, patch.config ?? {}) as never)},
        limits = ${tx.json(mergePatch(row.limits, patch.limits ?? {}) as never)},
        metadata = ${tx.json(mergePatch(row.metadata, patch.metadata ?? {}) as never)},
        contact_email = ${patch.contactEmail === undefined ? row.contact_email : patch.contactEmail},
        version = version + 1, updated_at = now()
        where id = ${id}`
      await this.#record(tx, id, 'tenant.updated')
    })
    return await this.require(id)
  }

  async setStatus (id: string, status: TenantStatus, type: string): Promise<Tenant> {
    await this.#sql.begin(async (tx) => {
      const rows = await tx`update public.tenants set status = ${status}, version = version + 1, updated_at = now()
        where id = ${id} and status <> 'provisioning' returning id`
      if (rows.length === 0) throw new TenantNotFoundError()
      await this.#record(tx, id, type)
    })
    return await this.require(id)
  }

  /** Archives; with `purge` also drops the schema (with its tables) and the role, and deletes the row. */
  async remove (id: string, purge: boolean): Promise<Tenant | null> {
    if (!purge) return await this.setStatus(id, 'archived', 'tenant.archived')
    const schema = schemaName(id)
    await this.#sql.begin(async (tx) => {
      const rows = await tx`delete from public.tenants where id = ${id} returning id`
      if (rows.length === 0) throw new TenantNotFoundError()
      await tx.unsafe(`drop schema if exists ${q(schema)} cascade`)
      const role = await tx`select 1 from pg_roles where rolname = ${schema}`
      if (role.length > 0) {
        await tx.unsafe(`drop owned by ${q(schema)} cascade`)
        await tx.unsafe(`drop role ${q(schema)}`)
      }
      await this.#record(tx, id, 'tenant.purged')
    })
    return null
  }

  async addDomain (id: string, raw: string, primary: boolean): Promise<Tenant> {
    const domain = normalizeDomain(raw)
    try {
      await this.#sql.begin(async (tx) => {
        const exists = await tx`select 1 from public.tenants where id = ${id} for update`
        if (exists.length === 0) throw new TenantNotFoundError()
        if (primary) await tx`update public.domains set is_primary = false where tenant_id = ${id}`
        const [{ n } = { n: '0' }] = await tx<Array<{ n: string }>>`select count(*) as n from public.domains where tenant_id = ${id}`
        await tx`insert into public.domains (domain, tenant_id, is_primary) values (${domain}, ${id}, ${primary || n === '0'})`
        await tx`update public.tenants set version = version + 1, updated_at = now() where id = ${id}`
        await this.#record(tx, id, 'domain.added')
      })
    } catch (err) {
      throw translate(err)
    }
    return await this.require(id)
  }

  async removeDomain (id: string, raw: string): Promise<Tenant> {
    const domain = normalizeDomain(raw)
    await this.#sql.begin(async (tx) => {
      const rows = await tx`delete from public.domains where domain = ${domain} and tenant_id = ${id} returning domain`
      if (rows.length === 0) throw new DomainNotFoundError()
      await tx`update public.tenants set version = version + 1, updated_at = now() where id = ${id}`
      await this.#record(tx, id, 'domain.removed')
    })
    return await this.require(id)
  }

  /** The tenant a host belongs to: a custom domain, or a subdomain of the base domain. */
  async resolveHost (raw: string): Promise<Tenant | null> {
    const host = normalizeDomain(raw)
    const [row] = await this.#sql<Array<{ tenant_id: string }>>`select tenant_id from public.domains where domain = ${host}`
    if (row !== undefined) return await this.get(row.tenant_id)
    const base = this.#options.baseDomain
    if (base !== undefined && host.endsWith('.' + base)) {
      const label = host.slice(0, -(base.length + 1))
      if (!label.includes('.')) return await this.get(label)
    }
    return null
  }

  async changesAfter (after: number, limit: number): Promise<Change[]> {
    const rows = await this.#sql<Array<{ seq: string, tenant_id: string, type: string, at: Date }>>`
      select seq, tenant_id, type, at from public.tenant_changes where seq > ${after} order by seq limit ${limit}`
    return rows.map((r) => ({ seq: Number(r.seq), tenantId: r.tenant_id, type: r.type, at: r.at.toISOString() }))
  }

  async lastSeq (): Promise<number> {
    const [row] = await this.#sql<Array<{ seq: string | null }>>`select max(seq) as seq from public.tenant_changes`
    return Number(row?.seq ?? 0)
  }
}

function translate (err: unknown): unknown {
  const code = (err as { code?: string } | null)?.code
  if (code === '23505') return new ConflictError('A tenant with this id, or this domain, already exists')
  if (code === '42710' || code === '42P06') return new ConflictError('The tenant\'s schema or role already exists in this cluster')
  return err
}
