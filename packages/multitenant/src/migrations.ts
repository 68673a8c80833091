import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import createError from '@fastify/error'
import type { Sql } from 'postgres'
import { assertRoleName, DEFAULT_OWNER_ROLE, tenantGrants } from './pg/roles.ts'
import { assertTenantId, schemaName } from './tenant-id.ts'
import type { Tenant } from './types.ts'

export interface Migration {
  /** File name; applied in name order. */
  name: string
  checksum: string
  sql: string
}

export interface TenantMigrationResult {
  tenant: string
  applied: string[]
  /** Already applied before this run. */
  skipped: number
}

export interface MigrateAllSummary {
  total: number
  /** Tenants that got at least one migration. */
  migrated: number
  upToDate: number
  failed: Array<{ tenant: string, error: string, code?: string }>
  ms: number
}

export const MigrationChangedError = createError<'MT_MIGRATION_CHANGED', 500, [string, string]>(
  'MT_MIGRATION_CHANGED', 'Migration %s was changed after it was applied to %s; add a new migration instead', 500)
export const MigrationFailedError = createError<'MT_MIGRATION_FAILED', 500, [string, string, string]>(
  'MT_MIGRATION_FAILED', 'Migration %s failed in %s: %s', 500)

/** The ledger each tenant schema keeps of what was applied to it. */
export const LEDGER_TABLE = '_tenant_migrations'
// First key of the per-schema advisory lock (the second is the schema's hash).
const LOCK_NAMESPACE = 7_311_004

/**
 * Reads `*.sql` files from `dir`, in name order. Files stay schema-unqualified: they run with the
 * tenant's schema as search_path (drizzle-kit's output qualifies foreign keys with "public";
 * strip that, see the README).
 */
export async function loadMigrations (dir: string): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort()
  return await Promise.all(names.map(async (name) => {
    const sql = await readFile(join(dir, name), 'utf8')
    return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') }
  }))
}

export interface MigrateTenantOptions {
  /**
   * The role that owns the tables in tenant schemas, which the service login may SET ROLE to
   * (default `DEFAULT_OWNER_ROLE`, `platform_owner`; README, "Database roles").
   */
  owner?: string
}

/**
 * Applies pending migrations to one tenant's schema, as the owner role (not the tenant's: tenant
 * roles own nothing), in one transaction under an advisory lock for that schema: concurrent
 * runners wait and then find the work done; a failure leaves the schema as it was. An applied
 * file whose checksum changed is refused. The tenant's role gets DML on the tables and sequences
 * (default privileges before, explicit grants after), never on the ledger.
 */
export async function migrateTenant (sql: Sql, tenant: string | Pick<Tenant, 'id'>, migrations: Migration[], options: MigrateTenantOptions = {}): Promise<TenantMigrationResult> {
  const id = assertTenantId(typeof tenant === 'string' ? tenant : tenant.id)
  const schema = schemaName(id)
  const owner = assertRoleName(options.owner ?? DEFAULT_OWNER_ROLE, 'owner role')
  const conn = await sql.reserve()
  try {
    // The opening statements go out together: one round trip before the ledger is known.
    const opening = [
      conn.unsafe('begin'),
      conn.unsafe('select pg_advisory_xact_lock($1, hashtext($2))', [LOCK_NAMESPACE, schema]),
      conn.unsafe('select set_config(\'search_path\', $1, true), set_config(\'role\', $2, true)', [`"${schema}"`, owner]),
      conn.unsafe(`create table if not exists ${LEDGER_TABLE} (name text primary key, checksum text not null, applied_at timestamptz not null default now())`),
      conn.unsafe<Array<{ name: string, checksum: string }>>(`select name, checksum from ${LEDGER_TABLE}`)
    ].map((q) => q.execute())
    const settled = await Promise.allSettled(opening)
    const failure = settled.find((r) => r.status === 'rejected')
    if (failure !== undefined) throw (failure as PromiseRejectedResult).reason
    const done = new Map((settled[4] as PromiseFulfilledResult<Array<{ name: string, checksum: string }>>).value.map((r) => [r.name, r.checksum]))
    const applied: string[] = []
    const grants = tenantGrants(schema)
    // Tables and sequences created from here on are the tenant role's to read and write.
    const pending = migrations.some((m) => !done.has(m.name))
    if (pending) for (const statement of grants.future) await conn.unsafe(statement)
    for (const migration of migrations) {
      const previous = done.get(migration.name)
      if (previous !== undefined) {
        if (previous !== migration.checksum) throw new MigrationChangedError(migration.name, id)
        continue
      }
      try {
        await conn.unsafe(migration.sql)
      } catch (err) {
        throw new MigrationFailedError(migration.name, id, (err as Error).message)
      }
      await conn.unsafe(`insert into ${LEDGER_TABLE} (name, checksum) values ($1, $2)`, [migration.name, migration.checksum])
      applied.push(migration.name)
    }
    // And the ones that were there before (a schema moved from the old model, or made otherwise).
    if (pending) for (const statement of grants.existing) await conn.unsafe(statement)
    await conn.unsafe('commit')
    return { tenant: id, applied, skipped: migrations.length - applied.length }
  } catch (err) {
    // A rollback that fails means the connection is gone, which ends the transaction anyway.
    await conn.unsafe('rollback').catch(() => undefined)
    throw err
  /* c8 ignore next: V8 reports a branch on `finally` after an awaited return */
  } finally {
    conn.release()
  }
}

export interface MigrateAllOptions {
  migrations: Migration[]
  /** Tenants to migrate: ids, registry records (routed by `database`), or an async source. */
  tenants: Iterable<string | Tenant> | AsyncIterable<string | Tenant>
  /** The pool for a tenant's cluster (`database`; ids alone go to "default"). */
  pool: (cluster: string) => Sql
  /** Tenants migrated at once (default 8). */
  concurrency?: number
  /** The role that owns tenant tables (default `platform_owner`). */
  owner?: string
  /** Called after each tenant, for progress output. */
  onProgress?: (done: number, result: TenantMigrationResult | null, error?: unknown) => void
  signal?: AbortSignal
}

/**
 * Migrates every tenant with bounded concurrency. One tenant's failure does not stop the others;
 * the summary lists each failure. Re-running resumes: applied migrations are skipped.
 */
export async function migrateAll (options: MigrateAllOptions): Promise<MigrateAllSummary> {
  const started = performance.now()
  const summary: MigrateAllSummary = { total: 0, migrated: 0, upToDate: 0, failed: [], ms: 0 }
  // One async iterator shared by the workers (an async generator queues concurrent next() calls).
  const source = options.tenants
  const tenants = (async function * () { yield * source })()
  const worker = async (): Promise<void> => {
    for (let item = await tenants.next(); item.done !== true; item = await tenants.next()) {
      const tenant = item.value
      if (options.signal?.aborted === true) return
      summary.total++
      const id = typeof tenant === 'string' ? tenant : tenant.id
      const cluster = typeof tenant === 'string' ? 'default' : tenant.database
      try {
        const result = await migrateTenant(options.pool(cluster), id, options.migrations, { owner: options.owner })
        if (result.applied.length > 0) summary.migrated++
        else summary.upToDate++
        options.onProgress?.(summary.migrated + summary.upToDate + summary.failed.length, result)
      } catch (err) {
        const code = (err as { code?: unknown }).code
        summary.failed.push({ tenant: id, error: (err as Error).message, ...(typeof code === 'string' ? { code } : {}) })
        options.onProgress?.(summary.migrated + summary.upToDate + summary.failed.length, null, err)
      }
    }
  }
  await Promise.all(Array.from({ length: options.concurrency ?? 8 }, worker))
  summary.failed.sort((a, b) => a.tenant.localeCompare(b.tenant))
  summary.ms = Math.round(performance.now() - started)
  return summary
}

/** Where the migrator finds tenants and hears of new ones: the registry client fits. */
export interface TenantSource {
  listTenants: (query: { limit?: number, offset?: number }) => Promise<{ items: Tenant[], total: number }>
  getTenant: (id: string) => Tenant | null | Promise<Tenant | null>
  on: ((event: 'tenant.created' | 'tenant.active' | 'tenant.purged', listener: (change: { tenantId: string }) => void) => unknown) & ((event: 'reset', listener: () => void) => unknown)
  off: ((event: 'tenant.created' | 'tenant.active' | 'tenant.purged', listener: (change: { tenantId: string }) => void) => unknown) & ((event: 'reset', listener: () => void) => unknown)
}

/** The part of a pino logger the migrator uses. */
export interface MigratorLogger {
  info: (obj: object, msg: string) => void
  error: (obj: object, msg: string) => void
}

/** Tenants whose schema is worth migrating (not archived, not still provisioning), page by page. */
export async function * migratableTenants (source: Pick<TenantSource, 'listTenants'>, pageSize = 200): AsyncGenerator<Tenant> {
  for (let offset = 0; ; offset += pageSize) {
    const page = await source.listTenants({ limit: pageSize, offset })
    for (const tenant of page.items) if (tenant.status !== 'archived' && tenant.status !== 'provisioning') yield tenant
    /* c8 ignore start: an empty page before the total means tenants went away mid-listing */
    if (page.items.length === 0 || offset + page.items.length >= page.total) return
  }
}
/* c8 ignore stop */

export interface TenantMigratorOptions {
  migrations: Migration[]
  /** The pool for a cluster (`TenantDb.pool`). */
  pool: (cluster: string) => Sql
  /** Tenants migrated at once by `migrateAll` (default 8). */
  concurrency?: number
  /** The role that owns tenant tables (default `platform_owner`). */
  owner?: string
  /**
   * After a tenant's migration fails, how long `ensure` answers with that failure before trying
   * again, in ms (default 5 s): a broken migration costs one attempt per interval, not one per request.
   */
  retryFailedAfter?: number
  logger?: MigratorLogger
}

type Key = `${string}/${string}`

/**
 * Keeps every tenant's schema migrated while a service runs: all tenants at start, each new one
 * as soon as the registry announces it, and any other on first use (`ensure`, which a request
 * that wins the race awaits). One run per tenant at a time in this process (and one across
 * processes, by the per-schema lock); a tenant is remembered once up to date.
 */
export class TenantMigrator {
  readonly #options: TenantMigratorOptions
  readonly #done = new Set<Key>()
  readonly #running = new Map<Key, Promise<void>>()
  #unfollow: (() => void) | undefined

  readonly #retryFailedAfter: number

  constructor (options: TenantMigratorOptions) {
    this.#options = options
    this.#retryFailedAfter = options.retryFailedAfter ?? 5000
  }

  get migrations (): readonly Migration[] {
    return this.#options.migrations
  }

  /** Whether the tenant was brought up to date by this process. */
  isCurrent (tenant: Pick<Tenant, 'id' | 'database'>): boolean {
    return this.#done.has(`${tenant.database}/${tenant.id}`)
  }

  /**
   * Nothing (synchronously) when the tenant is known to be up to date, else the promise of its
   * migration, shared with any run already under way.
   */
  ensure (tenant: Pick<Tenant, 'id' | 'database'>): Promise<void> | undefined {
    const key: Key = `${tenant.database}/${tenant.id}`
    if (this.#done.has(key)) return undefined
    let run = this.#running.get(key)
    if (run === undefined) {
      run = this.#migrate(tenant, key)
      this.#running.set(key, run)
      run.then(() => this.#running.delete(key), () => {
        // The failure is kept (and answered) for a while before the next attempt.
        setTimeout(() => this.#running.delete(key), this.#retryFailedAfter).unref()
      })
    }
    return run
  }

  async #migrate (tenant: Pick<Tenant, 'id' | 'database'>, key: Key): Promise<void> {
    const started = performance.now()
    try {
      const result = await migrateTenant(this.#options.pool(tenant.database), tenant.id, this.#options.migrations, { owner: this.#options.owner })
      this.#done.add(key)
      if (result.applied.length > 0) this.#options.logger?.info({ tenant: tenant.id, applied: result.applied, ms: Math.round(performance.now() - started) }, 'tenant migrated')
    } catch (err) {
      this.#options.logger?.error({ tenant: tenant.id, code: (err as { code?: unknown }).code, reason: (err as Error).message }, 'tenant migration failed')
      throw err
    }
  }

  /** Migrates every tenant the source lists (paging through it), with bounded concurrency. */
  async migrateAll (source: Pick<TenantSource, 'listTenants'>): Promise<MigrateAllSummary> {
    // The cluster each listed tenant was routed to, to remember it as up to date there.
    const clusters = new Map<string, string>()
    const summary = await migrateAll({
      migrations: this.#options.migrations,
      tenants: (async function * (self) {
        for await (const tenant of migratableTenants(source)) {
          if (self.isCurrent(tenant)) continue
          clusters.set(tenant.id, tenant.database)
          yield tenant
        }
      })(this),
      pool: this.#options.pool,
      concurrency: this.#options.concurrency,
      owner: this.#options.owner,
      onProgress: (_done, result) => {
        if (result !== null) this.#done.add(`${clusters.get(result.tenant) as string}/${result.tenant}`)
      }
    })
    this.#options.logger?.[summary.failed.length > 0 ? 'error' : 'info']({ ...summary, failed: summary.failed.slice(0, 20) }, 'tenant migrations at start')
    return summary
  }

  /**
   * Follows the source's change feed: a created (or re-activated) tenant is migrated as soon as it
   * is announced; a purged one is forgotten; a feed reset re-reads every tenant.
   */
  follow (source: TenantSource): void {
    if (this.#unfollow !== undefined) return
    // Listeners are removed by close(), so none of them runs on a closed migrator.
    const announced = (change: { tenantId: string }): void => {
      Promise.resolve(source.getTenant(change.tenantId)).then((tenant) => {
        // Gone again, or not served (suspended, archived): its first use after a change migrates it.
        if (tenant?.status === 'active' || tenant?.status === 'trial') return this.ensure(tenant)
      }).catch(() => {}) // logged by #migrate; a request retries on first use
    }
    const purged = (change: { tenantId: string }): void => {
      for (const key of this.#done) if (key.endsWith(`/${change.tenantId}`)) this.#done.delete(key)
    }
    const reset = (): void => {
      this.#done.clear()
      this.migrateAll(source).catch(() => {})
    }
    source.on('tenant.created', announced)
    source.on('tenant.active', announced)
    source.on('tenant.purged', purged)
    source.on('reset', reset)
    this.#unfollow = () => {
      source.off('tenant.created', announced)
      source.off('tenant.active', announced)
      source.off('tenant.purged', purged)
      source.off('reset', reset)
    }
  }

  /** Stops following; waits for migrations under way. */
  async close (): Promise<void> {
    this.#unfollow?.()
    await Promise.allSettled([...this.#running.values()])
  }
}
