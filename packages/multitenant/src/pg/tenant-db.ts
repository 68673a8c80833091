import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js'
import postgres, { type Options, type Sql, type TransactionSql } from 'postgres'
import { currentScope } from '../context.ts'
import { clusterEnvName } from '../clusters.ts'
import { InvalidOptionError, isConnectionError, NO_TENANT_IN_SCOPE, TenantRequiredError } from '../errors.ts'
import { assertTenantId, schemaName } from '../tenant-id.ts'
import type { Tenant } from '../types.ts'
import { DatabaseUnavailableError, UnknownClusterError } from './errors.ts'

/** Where and as whom a unit of work runs: the transaction-local settings. */
interface Target {
  cluster: string
  searchPath: string
  /** The tenant's role (`SET LOCAL ROLE`), or `none` (the login itself) for system work. */
  role: string
}

export interface TenantDbOptions<TSchema extends Record<string, unknown>> {
  /** The default cluster's connection URL (shorthand for `clusters: { default: url }`). */
  url?: string
  /** Cluster name → connection URL; a tenant's `database` picks its cluster. */
  clusters?: Record<string, string>
  /** Connections per cluster (default 10). */
  max?: number
  /**
   * Of those, how many carry pipelined one-statement units (`db.scoped`, `db.query`); the rest
   * serve `transaction()` and `system()`, one unit each at a time. Default: half, at least one each.
   */
  lanes?: number
  /** Statement timeout inside units of work, in ms (default 5000; 0 for none). */
  statementTimeout?: number
  /**
   * How long a connection with statements outstanding may go without answering any of them before
   * it is given up (its units fail with `SERVICE_UNAVAILABLE` and a fresh connection takes its
   * place), in ms. Default: the statement timeout plus one second (30 s when it is 0).
   */
  watchdog?: number
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
  /**
   * The transaction's connection as a postgres.js tagged template (same transaction). Its
   * `unsafe()` uses the extended protocol too: one statement per call.
   */
  readonly sql: TransactionSql
  /**
   * Runs `fn` under a savepoint: its failure rolls back only its own work, then rethrows. Issue the
   * savepoint's statements through the `sp` it receives: a statement that fails through the outer
   * transaction fails the whole unit, savepoint or not.
   */
  savepoint: <T>(fn: (sp: TenantTx<TSchema>) => Promise<T>) => Promise<T>
  /**
   * Runs `fn` in the same transaction as the service's own login — role reset, search path the
   * idle one (`pg_catalog, pg_temp`: name your tables with their schema) — for the service's shared
   * tables that tenant roles have no rights on, such as a job queue, written atomically with the
   * tenant's rows. The tenant's role, search path and statement timeout are back when `fn`
   * settles, whether it succeeded or not. Only code you wrote runs here: it acts as the service.
   */
  asService: <T>(fn: (sql: TransactionSql) => Promise<T>) => Promise<T>
}

// Everything a unit of work changes is transaction-local (`set_config(…, true)`): nothing can
// outlive the transaction on a pooled connection, behind PgBouncer in transaction mode too.
// Outside any unit of work, a connection resolves no tenant table at all (fail closed), and every
// search path names pg_temp last, so a temporary table can never shadow a tenant table.
const IDLE_SEARCH_PATH = 'pg_catalog, pg_temp'
// Extended protocol for every statement: one statement per message, so injected text cannot
// stack a second statement (or a COMMIT) behind the first.
// (postgres.js takes `simple` but does not declare it.)
const EXTENDED = { simple: false } as postgres.UnsafeQueryOptions
// Per-tenant text (a unit's settings) goes out unnamed, so it does not fill the statement cache.
const UNNAMED = { prepare: false, ...EXTENDED }
// Command tags of statements that cannot change the session: anything else retires the connection.
const SESSION_SAFE = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'VALUES'])
// The end of every transaction unit: whatever it changed for the session (a session-level SET or
// SET ROLE, a held cursor, a session advisory lock, LISTEN) is undone before the connection is
// reused. Pipelined with COMMIT: no extra round trip.
const RESET_SESSION = ['reset role', 'reset all', 'close all', 'unlisten *', 'select pg_catalog.pg_advisory_unlock_all()']
// The service's own footing inside a unit (TenantTx.asService): its login's role (a command, since
// a tenant role may not call set_config), then no tenant schema on the path.
const AS_SERVICE = ['set local role none', `select pg_catalog.set_config('search_path', '${IDLE_SEARCH_PATH}', true)`]

const noop = (): void => {}

function unavailable (err: unknown): Error {
  if ((err as { code?: unknown }).code === 'SERVICE_UNAVAILABLE') return err as Error
  // Only called for connection errors, which always carry a code.
  return Object.assign(new DatabaseUnavailableError(`connection lost: ${String((err as { code?: unknown }).code)}`), { cause: err })
}

/**
 * One connection (a postgres.js pool of exactly one: statements go out in the order they are
 * issued) and the units of work on it. A lane whose connection fails or stalls is retired as a
 * whole and replaced: postgres.js 3.4.9 can hand a dead connection's error to the next statement,
 * and leaves statements pipelined behind it unsettled (see the README).
 */
class Lane {
  readonly sql: Sql
  inflight = 0
  /** Statements sent and not yet answered, and when the connection last answered one. */
  pending = 0
  lastAnswer = 0
  retired = false
  /** Rejects the units running on this lane (when it is retired with an error). */
  readonly aborts = new Set<(err: Error) => void>()

  constructor (sql: Sql) {
    this.sql = sql
  }

  /** Statements not yet settled (postgres.js queries). */
  readonly #statements = new Set<Promise<unknown>>()

  /** Counts a statement (a postgres.js query) until it settles, for the watchdog. */
  track<P extends Promise<unknown>>(query: P): P {
    this.#statements.add(query)
    return this.wait(query, () => this.#statements.delete(query))
  }

  /** Counts any wait on the server (a transaction's BEGIN or COMMIT) until it settles. */
  wait<P extends Promise<unknown>>(promise: P, settled?: () => void): P {
    if (this.pending++ === 0) this.lastAnswer = performance.now()
    const answered = (): void => {
      this.pending--
      this.lastAnswer = performance.now()
      settled?.()
    }
    promise.then(answered, answered)
    return promise
  }

  /**
   * Drops the statements still queued in the pool (never sent). postgres.js's end() can leave
   * them queued, and then reconnects for them forever.
   */
  dropQueued (): void {
    for (const statement of this.#statements) {
      // postgres.js sets `state` (null until then) once it sent the query.
      const query = statement as Promise<unknown> & { state: unknown, cancel: () => Promise<unknown> | null }
      // (cancel() answers null when there is nothing left to cancel.)
      if (query.state === null) Promise.resolve(query.cancel()).catch(noop)
    }
  }
}

/** A fixed number of lanes, each taking up to `capacity` units at once. */
class LanePool {
  readonly #lanes: Lane[]
  readonly #capacity: number
  readonly #make: () => Sql
  readonly #waiting: Array<(lane: Lane) => void> = []

  constructor (count: number, capacity: number, make: () => Sql) {
    this.#make = make
    this.#capacity = capacity
    this.#lanes = Array.from({ length: count }, () => new Lane(make()))
  }

  get lanes (): readonly Lane[] {
    return this.#lanes
  }

  #free (): Lane | undefined {
    let best: Lane | undefined
    for (const lane of this.#lanes) if (best === undefined || lane.inflight < best.inflight) best = lane
    return best !== undefined && best.inflight < this.#capacity ? best : undefined
  }

  /** The least busy lane, counted as busy until `release`; waits while every lane is full. */
  async acquire (): Promise<Lane> {
    const lane = this.#free()
    if (lane !== undefined) {
      lane.inflight++
      return lane
    }
    return await new Promise((resolve) => this.#waiting.push(resolve))
  }

  release (lane: Lane): void {
    lane.inflight--
    this.#pump()
  }

  #pump (): void {
    while (this.#waiting.length > 0) {
      const lane = this.#free()
      if (lane === undefined) return
      lane.inflight++;
      (this.#waiting.shift() as (lane: Lane) => void)(lane)
    }
  }

  /**
   * Takes a lane out of service and puts a fresh connection in its place. With an error, the units
   * still on it fail now with that error; without one (its session state is not to be trusted),
   * they finish and the connection closes after them.
   */
  retire (lane: Lane, err?: Error): void {
    if (lane.retired) return
    lane.retired = true
    const index = this.#lanes.indexOf(lane)
    if (index !== -1) this.#lanes[index] = new Lane(this.#make())
    if (err !== undefined) {
      for (const abort of lane.aborts) abort(err)
      lane.dropQueued()
    }
    lane.sql.end({ timeout: err === undefined ? 5 : 0 }).catch(noop)
    this.#pump()
  }

  async close (): Promise<void> {
    await Promise.all(this.#lanes.map(async (lane) => {
      await lane.sql.end({ timeout: 5 })
      lane.dropQueued()
    }))
  }
}

class Cluster {
  /** The raw pool (`db.pool()`): migrations and work outside units. */
  readonly sql: Sql
  /** Pipelined one-statement units, many per connection. */
  readonly shared: LanePool
  /** Transactions and system units, one per connection at a time. */
  readonly exclusive: LanePool
  readonly #timer: NodeJS.Timeout

  constructor (make: (max: number) => Sql, lanes: number, exclusive: number, maxPipeline: number, watchdog: number) {
    this.sql = make(exclusive)
    // Each unit is four statements; past postgres.js's max_pipeline, queued statements go out
    // one per round trip, which would cripple a lane.
    this.shared = new LanePool(lanes, Math.max(1, Math.floor(maxPipeline / 4)), () => make(1))
    this.exclusive = new LanePool(exclusive, 1, () => make(1))
    // The watchdog: a connection that has left statements unanswered for longer than any
    // statement may run is given up (statement_timeout bounds every statement of a unit).
    this.#timer = setInterval(() => {
      const now = performance.now()
      for (const pool of [this.shared, this.exclusive]) {
        for (const lane of pool.lanes) {
          if (lane.pending > 0 && now - lane.lastAnswer > watchdog) {
            pool.retire(lane, new DatabaseUnavailableError(`no answer for ${watchdog} ms`))
          }
        }
      }
    }, Math.min(250, Math.max(10, watchdog / 4)))
    this.#timer.unref()
  }

  async close (): Promise<void> {
    clearInterval(this.#timer)
    await Promise.all([this.sql.end({ timeout: 5 }), this.shared.close(), this.exclusive.close()])
  }
}

/** The first failure of a pipelined group, in statement order. */
function firstFailure (results: Array<PromiseSettledResult<unknown>>): unknown {
  for (const r of results) if (r.status === 'rejected') return r.reason
  return undefined
}

/**
 * Tenant-scoped PostgreSQL on shared connections (postgres.js + drizzle). Every unit of work is
 * one transaction whose search_path, role and statement timeout are transaction-local:
 *
 * - `db.scoped` is a drizzle database whose every statement runs as its own unit of work for the
 *   tenant in context, pipelined as `BEGIN; set_config(…); <statement>; COMMIT` on a shared
 *   connection: one round trip, and several units in flight per connection.
 * - `db.transaction(fn)` runs many statements in one scoped transaction on a connection of its
 *   own (the scope is pipelined with the first statement), with savepoints.
 * - `db.system(fn)` is the same as the login itself (no tenant role) on `public`.
 *
 * With no tenant in context a unit of work is refused before anything is sent, and a connection
 * outside a unit resolves no tenant table (its search_path is `pg_catalog, pg_temp`). Every unit
 * settles: a connection that fails or stalls fails its units with `SERVICE_UNAVAILABLE` and is
 * replaced, and one whose session state a unit changed is not reused as it is.
 */
export class TenantDb<TSchema extends Record<string, unknown> = Record<string, never>> {
  readonly #clusters = new Map<string, Cluster>()
  readonly #urls: Record<string, string>
  readonly #options: TenantDbOptions<TSchema>
  readonly #prepare: boolean
  /** Options of every named statement: prepared as configured, extended protocol. */
  readonly #statement: postgres.UnsafeQueryOptions
  readonly #timeout: number
  readonly #watchdog: number
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
    this.#statement = { prepare: this.#prepare, ...EXTENDED }
    this.#timeout = options.statementTimeout ?? 5000
    if (!Number.isInteger(this.#timeout) || this.#timeout < 0) throw new InvalidOptionError('statementTimeout must be a whole number of ms, 0 or more')
    this.#watchdog = options.watchdog ?? (this.#timeout === 0 ? 30_000 : this.#timeout + 1000)
    if (!Number.isInteger(this.#watchdog) || this.#watchdog <= this.#timeout) throw new InvalidOptionError('watchdog must be a whole number of ms greater than statementTimeout')
    this.#max = options.max ?? 10
    if (!Number.isInteger(this.#max) || this.#max < 2) throw new InvalidOptionError('max must be an integer of at least 2')
    this.#lanes = options.lanes ?? Math.floor(this.#max / 2)
    if (!Number.isInteger(this.#lanes) || this.#lanes < 1 || this.#lanes >= this.#max) throw new InvalidOptionError('lanes must be at least 1 and less than max')
    this.scoped = this.#drizzle(this.#scopedClient())
  }

  #cluster (name: string): Cluster {
    let cluster = this.#clusters.get(name)
    if (cluster === undefined) {
      // Cluster names compare as their environment variables do (DATABASE_URL_EU_1 is "eu-1" and "eu_1").
      const url = this.#urls[name] ?? Object.entries(this.#urls).find(([key]) => clusterEnvName(key) === clusterEnvName(name))?.[1]
      if (url === undefined) throw new UnknownClusterError(name)
      const pool = (max: number): Sql => {
        const sql = postgres(url, {
          // postgres.js backs off up to 20 s between reconnects and keeps that timer after end():
          // a lane comes back at most a second after its server does.
          backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 1),
          // postgres.js prints every NOTICE (such as "already exists, skipping") to the console.
          onnotice: () => {},
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
      const maxPipeline = (this.#options.postgres as { max_pipeline?: number } | undefined)?.max_pipeline ?? 100
      cluster = new Cluster(pool, this.#lanes, this.#max - this.#lanes, maxPipeline, this.#watchdog)
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
      if (scope === undefined || scope.tenantId === null) throw new TenantRequiredError(NO_TENANT_IN_SCOPE)
      id = scope.tenantId
      if (scope.tenant !== null) cluster = scope.tenant.database
    } else if (typeof tenant === 'string') {
      id = assertTenantId(tenant)
    } else {
      id = assertTenantId(tenant.id)
      cluster = tenant.database
    }
    const schema = schemaName(id)
    return { cluster, searchPath: `"${schema}", pg_temp`, role: schema }
  }

  /**
   * Queues the transaction-local settings (not awaited: they are pipelined with what follows). The
   * values are the validated schema name, its role and an integer, written as literals: with
   * parameters an unprepared statement waits a round trip for their types. Sent unnamed, so the
   * per-tenant text does not fill the connection's statement cache. The functions' EXECUTE
   * privilege is checked as the login, before the role changes; inside the unit the tenant's role
   * has none (README, "Database roles").
   */
  #open (conn: Sql | TransactionSql, target: Target, timeout: number): Promise<unknown> {
    const literal = (value: string): string => `'${value.replaceAll("'", "''")}'`
    const text = `select pg_catalog.set_config('search_path', ${literal(target.searchPath)}, true), pg_catalog.set_config('role', ${literal(target.role)}, true), pg_catalog.set_config('statement_timeout', '${Math.trunc(timeout)}', true)`
    return conn.unsafe(text, [], UNNAMED).execute()
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

  /** Runs `work` on a lane of `pool`: settles when the lane is retired under it, frees it after. */
  async #onLane<T>(pool: LanePool, work: (lane: Lane) => Promise<T>): Promise<T> {
    const lane = await pool.acquire()
    let abort: (err: Error) => void = noop
    const aborted = new Promise<never>((_resolve, reject) => { abort = reject })
    lane.aborts.add(abort)
    const running = work(lane)
    try {
      return await Promise.race([running, aborted])
    } catch (err) {
      if (!isConnectionError(err)) throw err
      const lost = unavailable(err)
      pool.retire(lane, lost)
      throw lost
    /* c8 ignore next: V8 reports a branch on `finally` after an awaited return */
    } finally {
      lane.aborts.delete(abort)
      // A unit abandoned with its lane may still settle later; nobody waits for it any more.
      running.catch(noop)
      pool.release(lane)
    }
  }

  async #pipelined (target: Target, text: string, params: unknown[], values: boolean, retried = false): Promise<unknown> {
    const cluster = this.#cluster(target.cluster)
    const outcome = await this.#onLane(cluster.shared, async (lane) => {
      const conn = lane.sql
      const prepare = this.#statement
      // Issued back to back on a one-connection pool: nothing else can come between them.
      const begin = lane.track(conn.unsafe('begin', [], prepare).execute())
      const open = lane.track(this.#open(conn, target, this.#timeout))
      // drizzle asks for unprepared statements unless `.prepare(name)` was used (drizzle-orm
      // #6096); postgres.js then needs a round trip for parameter types before it can send the
      // statement, which breaks the pipeline. Named statements are cached per connection.
      let statement = conn.unsafe(text, params as never[], prepare)
      if (values) statement = statement.values() as unknown as typeof statement
      lane.track(statement.execute())
      const commit = lane.track(conn.unsafe('commit', [], prepare).execute())
      const results = await Promise.allSettled([begin, open, statement, commit])
      const failure = firstFailure(results)
      if (failure !== undefined) {
        if (isConnectionError(failure)) throw failure
        if (results[0].status === 'rejected' || results[1].status === 'rejected') {
          // The unit could not take its settings, so its statement never ran: the connection's
          // session was changed under it (a role or setting left behind by an earlier statement).
          cluster.shared.retire(lane)
          return { retry: failure }
        }
        throw failure
      }
      const rows = (results[2] as PromiseFulfilledResult<{ command: string }>).value
      // A statement that may have changed the session (SET, SET ROLE, DECLARE … WITH HOLD,
      // LISTEN, PREPARE, DDL…) leaves its connection to no one else.
      if (!SESSION_SAFE.has(rows.command)) cluster.shared.retire(lane)
      return { rows }
    })
    if ('retry' in outcome) {
      if (retried) throw outcome.retry
      return await this.#pipelined(target, text, params, values, true)
    }
    return outcome.rows
  }

  /** drizzle (and raw SQL) on one transaction; a savepoint gets its own, bound to the savepoint. */
  #tx (conn: TransactionSql, options: Sql['options'], lane: Lane, reopen: (conn: TransactionSql) => Promise<unknown>): TenantTx<TSchema> {
    const statement = this.#statement
    // drizzle's statements go out as named prepared statements (see #pipelined).
    const client = { options, unsafe: (text: string, params?: never[]) => lane.track(conn.unsafe(text, params, statement)) }
    // Raw `unsafe()` on the transaction also sends one statement on the extended protocol, and is
    // prepared (named) only when the caller asks for it and this TenantDb prepares at all (not
    // behind a PgBouncer that cannot: `prepare: false`).
    const prepares = statement.prepare
    const sql = new Proxy(conn, {
      get (target, property, receiver) {
        if (property === 'unsafe') {
          return (text: string, params?: never[], opts?: Record<string, unknown>) =>
            target.unsafe(text, params, { ...opts, ...EXTENDED, prepare: opts?.prepare === true && prepares })
        }
        return Reflect.get(target, property, receiver) as unknown
      }
    })
    return Object.assign(this.#drizzle(client), {
      sql,
      savepoint: async <R>(inner: (sp: TenantTx<TSchema>) => Promise<R>): Promise<R> =>
        await conn.savepoint(async (sp) => await inner(this.#tx(sp, options, lane, reopen))) as R,
      asService: async <R>(inner: (service: TransactionSql) => Promise<R>): Promise<R> => {
        // Pipelined with the caller's first statements: no round trip of its own. Statements on
        // one connection run in order, and if the switch failed the transaction is aborted, so
        // nothing of `inner` can run as the tenant.
        const switched = Promise.all(AS_SERVICE.map((text) => lane.track(conn.unsafe(text, [], UNNAMED).execute())))
        switched.catch(noop)
        let result: R
        try {
          result = await inner(sql)
          await switched
        } catch (err) {
          // Back to the tenant even if the caller goes on after catching this. When the failure
          // aborted the transaction the reset fails too; the unit is lost anyway.
          await lane.track(reopen(conn)).catch(noop)
          throw err
        }
        await lane.track(reopen(conn))
        return result
      }
    }) as TenantTx<TSchema>
  }

  async #unit<T>(target: Target, timeout: number, fn: (tx: TenantTx<TSchema>) => Promise<T>): Promise<T> {
    const cluster = this.#cluster(target.cluster)
    // The transaction's connection shares its pool's parsers; drizzle looks for them on `options`.
    const options = cluster.sql.options
    return await this.#onLane(cluster.exclusive, async (lane) => {
      let reset: Array<Promise<unknown>> = []
      // The watchdog sees the waits on the server that begin() makes itself (its BEGIN, and its
      // COMMIT after `fn`), not the application's own time in between.
      const began = Promise.withResolvers<void>()
      const ended = Promise.withResolvers<void>()
      lane.wait(began.promise)
      // postgres.js's begin() owns BEGIN/COMMIT/ROLLBACK: it fails the unit when a statement failed
      // even if the caller swallowed the error, and survives a connection lost mid-transaction.
      const value = await lane.sql.begin(async (conn) => {
        began.resolve()
        // Not awaited: the settings go out together with the first statement.
        const open = lane.track(this.#open(conn, target, timeout))
        const tx = this.#tx(conn, options, lane, async (c) => await this.#open(c, target, timeout))
        const settled = await Promise.allSettled([open, (async () => await fn(tx))()])
        const failure = firstFailure(settled)
        if (failure !== undefined) throw failure
        // Not awaited either: pipelined with the COMMIT that begin() sends next.
        reset = RESET_SESSION.map((text) => lane.track(conn.unsafe(text, [], this.#statement).execute()))
        lane.wait(ended.promise)
        return (settled[1] as PromiseFulfilledResult<T>).value
      }).finally(() => {
        began.resolve()
        ended.resolve()
      }) as T
      const failure = firstFailure(await Promise.allSettled(reset))
      if (failure !== undefined) {
        // The reset failed, so COMMIT rolled back: the unit did not happen, and the session is suspect.
        cluster.exclusive.retire(lane)
        throw failure
      }
      return value
    })
  }

  /**
   * One raw statement (postgres.js parameters `$1…`) as a unit of work for the tenant in context
   * (or `options.tenant`): pipelined, one round trip. Exactly one statement (extended protocol).
   */
  async query<T extends Record<string, unknown> = Record<string, unknown>>(text: string, params: unknown[] = [], options: Pick<UnitOptions, 'tenant'> = {}): Promise<T[]> {
    return await this.#pipelined(this.#target(options.tenant), text, params, false) as T[]
  }

  /** Runs `fn` as one transaction scoped to the tenant in context (or `options.tenant`). */
  async transaction<T>(fn: (tx: TenantTx<TSchema>) => Promise<T>, options: UnitOptions = {}): Promise<T> {
    return await this.#unit(this.#target(options.tenant), options.statementTimeout ?? this.#timeout, fn)
  }

  /** Runs `fn` as one transaction on `public` as the login itself (no tenant role), for cross-tenant work. */
  async system<T>(fn: (tx: TenantTx<TSchema>) => Promise<T>, options: { cluster?: string, statementTimeout?: number } = {}): Promise<T> {
    return await this.#unit({ cluster: options.cluster ?? 'default', searchPath: 'public, pg_temp', role: 'none' }, options.statementTimeout ?? this.#timeout, fn)
  }

  /**
   * The raw pool of a cluster, for work outside units (migrations take their own locks and
   * scopes). Its connections start on the idle search_path and the login's own role; whatever
   * session state you change on them is yours to reset.
   */
  pool (cluster = 'default'): Sql {
    return this.#cluster(cluster).sql
  }

  async close (): Promise<void> {
    const clusters = [...this.#clusters.values()]
    this.#clusters.clear()
    await Promise.all(clusters.map(async (c) => await c.close()))
  }
}
