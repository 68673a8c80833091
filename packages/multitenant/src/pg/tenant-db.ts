import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js'
import postgres, { type Options, type Sql, type TransactionSql } from 'postgres'
import { currentScope } from '../context.ts'
import { InvalidOptionError, TenantRequiredError } from '../errors.ts'
import { assertTenantId, schemaName } from '../tenant-id.ts'
import type { Tenant } from '../types.ts'
import { UnknownClusterError } from './errors.ts'

/** Where and as whom a unit of work runs: the transaction-local settings. */
interface Target {
  cluster: string
  searchPath: string
  /** The tenant's role (`SET LOCAL ROLE`), or null for system work. */
  role: string | null
}

export interface TenantDbOptions<TSchema extends Record<string, unknown>> {
  /** The default cluster's connection URL (shorthand for `clusters: { default: url }`). */
  url?: string
  /** Cluster name → connection URL; a tenant's `database` picks its cluster. */
  clusters?: Record<string, string>
  /** Connections per cluster (default 10). */
  max?: number
  /**
   * Of those, how many carry pipelined one-statement units (`db.scoped`); the rest serve
   * `transaction()`. Default: half, at least one each.
   */
  lanes?: number
  /** Statement timeout inside tenant units of work, in ms (default 5000; 0 for none). */
  statementTimeout?: number
  /** Named prepared statements (default true). Set false behind PgBouncer before 1.21. */
  prepare?: boolean
  /** drizzle schema, for typed relational queries. */
  schema?: TSchema
  /** Further postgres.js options (ssl, idle_timeout, …), applied to every cluster. */
  postgres?: Options<Record<string, postgres.PostgresType>>
}

export interface UnitOptions {
  /** Run as this tenant instead of the one in context (a record routes to its cluster). */
  tenant?: Tenant | string
  /** Statement timeout for this unit, in ms. */
  statementTimeout?: number
}

/** A drizzle database bound to one scoped transaction, with savepoints and raw SQL. */
export type TenantTx<TSchema extends Record<string, unknown>> = PostgresJsDatabase<TSchema> & {
  /** The transaction's connection as a postgres.js tagged template (same transaction). */
  readonly sql: TransactionSql
  /**
   * Runs `fn` under a savepoint: its failure rolls back only its own work, then rethrows. Issue the
   * savepoint's statements through the `sp` it receives: a statement that fails through the outer
   * transaction fails the whole unit, savepoint or not.
   */
  savepoint: <T>(fn: (sp: TenantTx<TSchema>) => Promise<T>) => Promise<T>
}

// Everything a unit of work changes is transaction-local (`set_config(…, true)`): nothing can
// outlive the transaction on a pooled connection, behind PgBouncer in transaction mode too.
// Outside any unit of work, a connection resolves no tenant table at all (fail closed).
const IDLE_SEARCH_PATH = 'pg_catalog'

interface Lane {
  /** A pool of exactly one connection: statements go out in the order they are issued, and a
   * broken connection is replaced (a reserved connection is not, in postgres.js). */
  sql: Sql
  inflight: number
}

class Cluster {
  /** Connections for transactions, system work and `pool()`. */
  readonly sql: Sql
  readonly #lanes: Lane[]
  /** Units per lane at most, so a lane never holds more statements than postgres.js pipelines. */
  readonly #perLane: number
  readonly #waiting: Array<(lane: Lane) => void> = []

  constructor (sql: Sql, lanes: Sql[], maxPipeline: number) {
    this.sql = sql
    this.#lanes = lanes.map((lane) => ({ sql: lane, inflight: 0 }))
    // Each unit is four statements; past postgres.js's max_pipeline, queued statements go out
    // one per round trip, which would cripple a lane.
    this.#perLane = Math.max(1, Math.floor(maxPipeline / 4))
  }

  /** The least busy lane, counted as busy until `release`; waits when every lane is full. */
  async acquire (): Promise<Lane> {
    let best = this.#lanes[0] as Lane
    for (const lane of this.#lanes) if (lane.inflight < best.inflight) best = lane
    if (best.inflight < this.#perLane) {
      best.inflight++
      return best
    }
    return await new Promise((resolve) => this.#waiting.push(resolve))
  }

  release (lane: Lane): void {
    const next = this.#waiting.shift()
    if (next !== undefined) next(lane) // the unit slot passes straight to a waiter
    else lane.inflight--
  }

  async close (): Promise<void> {
    await Promise.all([this.sql, ...this.#lanes.map((l) => l.sql)].map(async (sql) => await sql.end({ timeout: 5 })))
  }
}

/** The first failure of a pipelined group, in statement order. */
function firstFailure (results: Array<PromiseSettledResult<unknown>>): unknown {
  for (const r of results) if (r.status === 'rejected') return r.reason
  return undefined
}

/**
 * Tenant-scoped PostgreSQL on shared pools (postgres.js + drizzle). Every unit of work is one
 * transaction whose search_path, role and statement timeout are transaction-local:
 *
 * - `db.scoped` is a drizzle database whose every statement runs as its own unit of work for the
 *   tenant in context, pipelined as `BEGIN; set_config(…); <statement>; COMMIT` on a shared
 *   connection: one round trip, and several units in flight per connection.
 * - `db.transaction(fn)` runs many statements in one scoped transaction on a connection of its
 *   own (the scope is pipelined with the first statement), with savepoints.
 * - `db.system(fn)` is the same for `public` (no tenant role).
 *
 * With no tenant in context a unit of work is refused before anything is sent, and a connection
 * outside a unit resolves no tenant table (its search_path is `pg_catalog`).
 */
export class TenantDb<TSchema extends Record<string, unknown> = Record<string, never>> {
  readonly #clusters = new Map<string, Cluster>()
  readonly #urls: Record<string, string>
  readonly #options: TenantDbOptions<TSchema>
  readonly #prepare: boolean
  readonly #timeout: number
  readonly #max: number
  readonly #lanes: number
  /** Statements through this run as single-statement units of work for the tenant in context. */
  readonly scoped: PostgresJsDatabase<TSchema>

  constructor (options: TenantDbOptions<TSchema>) {
    const clusters = { ...options.clusters, ...(options.url === undefined ? {} : { default: options.url }) }
    if (Object.keys(clusters).length === 0) throw new InvalidOptionError('TenantDb needs `url` or `clusters`')
    this.#urls = clusters
    this.#options = options
    this.#prepare = options.prepare ?? true
    this.#timeout = options.statementTimeout ?? 5000
    this.#max = options.max ?? 10
    if (!Number.isInteger(this.#max) || this.#max < 2) throw new InvalidOptionError('max must be an integer of at least 2')
    this.#lanes = options.lanes ?? Math.floor(this.#max / 2)
    if (!Number.isInteger(this.#lanes) || this.#lanes < 1 || this.#lanes >= this.#max) throw new InvalidOptionError('lanes must be at least 1 and less than max')
    this.scoped = this.#drizzle(this.#scopedClient())
  }

  #cluster (name: string): Cluster {
    let cluster = this.#clusters.get(name)
    if (cluster === undefined) {
      const url = this.#urls[name]
      if (url === undefined) throw new UnknownClusterError(name)
      const pool = (max: number): Sql => {
        const sql = postgres(url, {
          ...this.#options.postgres,
          max,
          prepare: this.#prepare,
          connection: { ...this.#options.postgres?.connection, search_path: IDLE_SEARCH_PATH }
        })
        // drizzle installs its type parsers and serializers on the client it wraps; do it before
        // the first connection, so every statement is read the way drizzle expects.
        this.#drizzle(sql)
        return sql
      }
      const lanes = Array.from({ length: this.#lanes }, () => pool(1))
      cluster = new Cluster(pool(this.#max - this.#lanes), lanes, (this.#options.postgres as { max_pipeline?: number } | undefined)?.max_pipeline ?? 100)
      this.#clusters.set(name, cluster)
    }
    return cluster
  }

  #drizzle<C>(client: C): PostgresJsDatabase<TSchema> {
    const config = this.#options.schema === undefined ? {} : { schema: this.#options.schema }
    return drizzle(client as unknown as Sql, config) as PostgresJsDatabase<TSchema>
  }

  /** The target for a tenant in context or named; throws TENANT_REQUIRED when there is none. */
  #target (tenant: Tenant | string | undefined): Target {
    let id: string
    let cluster = 'default'
    if (tenant === undefined) {
      const scope = currentScope()
      if (scope === undefined || scope.tenantId === null) throw new TenantRequiredError()
      id = scope.tenantId
      if (scope.tenant !== null) cluster = scope.tenant.database
    } else if (typeof tenant === 'string') {
      id = assertTenantId(tenant)
    } else {
      id = assertTenantId(tenant.id)
      cluster = tenant.database
    }
    const schema = schemaName(id)
    return { cluster, searchPath: `"${schema}"`, role: schema }
  }

  /**
   * Queues the transaction-local settings (not awaited: they are pipelined with what follows). The
   * values are the validated schema name, its role and an integer, written as literals: with
   * parameters an unprepared statement waits a round trip for their types. Sent unprepared, so
   * the per-tenant text does not fill the connection's statement cache.
   * (Extended protocol only: mixing simple-protocol queries into a pipeline confused postgres.js's
   * result matching after a reconnect in our tests.)
   */
  #open (conn: Sql | TransactionSql, target: Target, timeout: number): Promise<unknown> {
    const literal = (value: string): string => `'${value.replaceAll("'", "''")}'`
    const role = target.role === null ? '' : `, set_config('role', ${literal(target.role)}, true)`
    const text = `select set_config('search_path', ${literal(target.searchPath)}, true)${role}, set_config('statement_timeout', '${Math.trunc(timeout)}', true)`
    return conn.unsafe(text, [], { prepare: false }).execute()
  }

  /** A postgres.js look-alike for drizzle: each statement becomes one pipelined unit of work. */
  #scopedClient (): unknown {
    const db = this
    return {
      // drizzle installs its parsers here too; the pools got the same ones when created.
      options: { parsers: {}, serializers: {} },
      unsafe (text: string, params: unknown[] = []) {
        let values = false
        const pending = {
          values () {
            values = true
            return pending
          },
          then<A, B> (resolve: (rows: unknown) => A, reject: (err: unknown) => B): Promise<A | B> {
            // The tenant is the one in context when the statement runs (is awaited).
            return db.#pipelined(db.#target(undefined), text, params, values).then(resolve, reject)
          }
        }
        return pending
      },
      begin () {
        throw new InvalidOptionError('db.scoped runs one statement per unit of work; use db.transaction() for several')
      }
    }
  }

  async #pipelined (target: Target, text: string, params: unknown[], values: boolean): Promise<unknown> {
    const cluster = this.#cluster(target.cluster)
    const lane = await cluster.acquire()
    try {
      const conn = lane.sql
      // Issued back to back on a one-connection pool: nothing else can come between them.
      const begin = conn.unsafe('begin').execute()
      const open = this.#open(conn, target, this.#timeout)
      // drizzle asks for unprepared statements unless `.prepare(name)` was used (drizzle-orm
      // #6096); postgres.js then needs a round trip for parameter types before it can send the
      // statement, which breaks the pipeline. Named statements are cached per connection.
      let statement = conn.unsafe(text, params as never[], { prepare: this.#prepare })
      if (values) statement = statement.values() as unknown as typeof statement
      statement.execute()
      const commit = conn.unsafe('commit').execute()
      const results = await Promise.allSettled([begin, open, statement, commit])
      const failure = firstFailure(results)
      if (failure !== undefined) throw failure
      return (results[2] as PromiseFulfilledResult<unknown>).value
    } finally {
      cluster.release(lane)
    }
  }

  /** drizzle (and raw SQL) on one transaction; a savepoint gets its own, bound to the savepoint. */
  #tx (conn: TransactionSql, options: Sql['options']): TenantTx<TSchema> {
    const prepare = this.#prepare
    // drizzle's statements go out as named prepared statements (see #pipelined).
    const client = { options, unsafe: (text: string, params?: never[]) => conn.unsafe(text, params, { prepare }) }
    return Object.assign(this.#drizzle(client), {
      sql: conn,
      savepoint: async <R>(inner: (sp: TenantTx<TSchema>) => Promise<R>): Promise<R> =>
        await conn.savepoint(async (sp) => await inner(this.#tx(sp, options))) as R
    }) as TenantTx<TSchema>
  }

  async #unit<T>(target: Target, timeout: number, fn: (tx: TenantTx<TSchema>) => Promise<T>): Promise<T> {
    const cluster = this.#cluster(target.cluster)
    // The transaction's connection shares its pool's parsers; drizzle looks for them on `options`.
    const options = cluster.sql.options
    // postgres.js's begin() owns BEGIN/COMMIT/ROLLBACK: it fails the unit when a statement failed
    // even if the caller swallowed the error, and survives a connection lost mid-transaction.
    return await cluster.sql.begin(async (conn) => {
      // Not awaited: the settings go out together with the first statement.
      const open = this.#open(conn, target, timeout)
      const tx = this.#tx(conn, options)
      const settled = await Promise.allSettled([open, (async () => await fn(tx))()])
      const failure = firstFailure(settled)
      if (failure !== undefined) throw failure
      return (settled[1] as PromiseFulfilledResult<T>).value
    }) as T
  }

  /**
   * One raw statement (postgres.js parameters `$1…`) as a unit of work for the tenant in context
   * (or `options.tenant`): pipelined, one round trip.
   */
  async query<T extends Record<string, unknown> = Record<string, unknown>>(text: string, params: unknown[] = [], options: Pick<UnitOptions, 'tenant'> = {}): Promise<T[]> {
    return await this.#pipelined(this.#target(options.tenant), text, params, false) as T[]
  }

  /** Runs `fn` as one transaction scoped to the tenant in context (or `options.tenant`). */
  async transaction<T>(fn: (tx: TenantTx<TSchema>) => Promise<T>, options: UnitOptions = {}): Promise<T> {
    return await this.#unit(this.#target(options.tenant), options.statementTimeout ?? this.#timeout, fn)
  }

  /** Runs `fn` as one transaction on `public` (no tenant role), for cross-tenant work. */
  async system<T>(fn: (tx: TenantTx<TSchema>) => Promise<T>, options: { cluster?: string, statementTimeout?: number } = {}): Promise<T> {
    return await this.#unit({ cluster: options.cluster ?? 'default', searchPath: 'public', role: null }, options.statementTimeout ?? this.#timeout, fn)
  }

  /** The pool of a cluster, for work outside units (migrations take their own locks and scopes). */
  pool (cluster = 'default'): Sql {
    return this.#cluster(cluster).sql
  }

  async close (): Promise<void> {
    const clusters = [...this.#clusters.values()]
    this.#clusters.clear()
    await Promise.all(clusters.map(async (c) => await c.close()))
  }
}
