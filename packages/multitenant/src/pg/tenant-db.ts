import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js'
import postgres, { type Options, type Sql, type TransactionSql } from 'postgres'
import { currentScope } from '../context.ts'
import { clusterEnvName } from '../clusters.ts'
import { InvalidOptionError, isConnectionError, NO_TENANT_IN_SCOPE, TenantRequiredError } from '../errors.ts'
import { assertTenantId, schemaName } from '../tenant-id.ts'
import type { Tenant } from '../types.ts'
import { DatabaseUnavailableError, UnitRefusedError, UnknownClusterError } from './errors.ts'

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
   * `unsafe()` uses the extended protocol too: one statement per call. Statements take turns (each
   * goes out once the one before it was answered) and must be data access; its `savepoint` is the
   * unit's; what would reach the connection outside the unit (`begin`, `listen`, `notify`, `file`,
   * `prepare`…) is not there.
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
// The command tags of data access. A unit runs nothing else: any other statement (SET, RESET, DO,
// DDL, CALL, LISTEN, DECLARE, PREPARE, COPY, SHOW, a transaction command…) fails its unit, which
// is rolled back, and retires its connection. LOCK TABLE is data access: its lock ends with the
// transaction, and it needs the privileges the statements it guards would (a tenant role locks
// only its own tables).
const DATA_ACCESS = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'LOCK TABLE'])
// A unit's transaction-local settings ($1 search path, $2 role, $3 statement timeout in ms).
const OPEN = 'select pg_catalog.set_config(\'search_path\', $1, true), pg_catalog.set_config(\'role\', $2, true), pg_catalog.set_config(\'statement_timeout\', $3, true)'
// Pipelined just before COMMIT: fails (division by zero) unless the unit's role, search path and
// statement timeout (as PostgreSQL shows it) are still the ones it opened with, so a statement that
// changed them for the session (`SET ROLE`, `RESET ROLE`, `SET search_path`…) turns COMMIT into
// ROLLBACK and the change dies with the transaction. Every name and operator is qualified: a
// changed search path cannot redirect the check.
const GUARD = 'select 1 operator(pg_catalog./) (pg_catalog.current_setting(\'role\') operator(pg_catalog.=) $1 and pg_catalog.current_setting(\'search_path\') operator(pg_catalog.=) $2 and pg_catalog.current_setting(\'statement_timeout\') operator(pg_catalog.=) $3)::pg_catalog.int4 as intact'
// What the guard raises when it fails (division by zero).
const GUARD_FAILED = '22012'
// The service's own footing inside a unit (TenantTx.asService): its login's role (a command, since
// a tenant role may not call set_config), then no tenant schema on the path.
const AS_SERVICE = ['set local role none', `select pg_catalog.set_config('search_path', '${IDLE_SEARCH_PATH}', true)`]
// Properties of a postgres.js client that would reach the connection past the unit's checks (or
// end it): a unit's `sql` does not have them.
const OUTSIDE_UNIT = new Set<string | symbol>(['begin', 'reserve', 'listen', 'notify', 'subscribe', 'file', 'largeObject', 'end', 'close', 'prepare', 'release'])

const noop = (): void => {}

/** How PostgreSQL shows a duration in ms (`current_setting('statement_timeout')`): 5000 is `5s`. */
function shownMs (ms: number): string {
  if (ms === 0) return '0'
  for (const [size, unit] of [[86_400_000, 'd'], [3_600_000, 'h'], [60_000, 'min'], [1000, 's']] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}

/** A SQL string literal. */
const literal = (value: string): string => `'${value.replaceAll("'", "''")}'`

function unavailable (err: unknown): Error {
  if ((err as { code?: unknown }).code === 'SERVICE_UNAVAILABLE') return err as Error
  // Only called for connection errors, which always carry a code.
  return Object.assign(new DatabaseUnavailableError(`connection lost: ${String((err as { code?: unknown }).code)}`), { cause: err })
}

/**
 * One connection (a postgres.js pool of exactly one: statements go out in the order they are
 * issued) and the units of work on it. A lane whose connection fails, closes or stalls is retired
 * as a whole and replaced: postgres.js 3.4.9 can hand a dead connection's error to the next
 * statement, and leaves statements pipelined behind it unsettled (see the README); and a
 * transaction must never go on on a new connection.
 */
class Lane {
  /** Set by the pool right after construction (the connection's close hook needs the lane). */
  sql!: Sql
  inflight = 0
  /** Statements sent and not yet answered, and when the connection last answered one. */
  pending = 0
  lastAnswer = 0
  retired = false
  /** When the lane stops taking units and is renewed (postgres.js's max_lifetime, kept here). */
  readonly expires: number
  /** Rejects the units running on this lane (when it is retired with an error). */
  readonly aborts = new Set<(err: Error) => void>()

  constructor (lifetime: number) {
    this.expires = performance.now() + lifetime
  }

  /** Statements not yet settled (postgres.js queries). */
  readonly #statements = new Set<Promise<unknown>>()

  /** Counts a statement (a postgres.js query) until `settled`, for the watchdog. */
  track<P extends Promise<unknown>>(query: P, settled: Promise<unknown> = query): P {
    this.#statements.add(query)
    this.wait(settled, () => this.#statements.delete(query))
    return query
  }

  /**
   * Counts a pipelined unit's statements as one wait, until its last one settles (a connection
   * answers in order).
   */
  trackAll (queries: Array<Promise<unknown>>): void {
    for (const query of queries) this.#statements.add(query)
    this.wait(queries.at(-1) as Promise<unknown>, () => { for (const query of queries) this.#statements.delete(query) })
  }

  /** Counts a wait on the server until it settles. */
  wait (promise: Promise<unknown>, settled?: () => void): void {
    if (this.pending++ === 0) this.lastAnswer = performance.now()
    const answered = (): void => {
      this.pending--
      this.lastAnswer = performance.now()
      settled?.()
    }
    promise.then(answered, answered)
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
  readonly #make: (onclose: () => void) => Sql
  /** A lane's lifetime in ms. */
  readonly #lifetime: () => number
  readonly #waiting: Array<(lane: Lane) => void> = []
  #closed = false

  constructor (count: number, capacity: number, make: (onclose: () => void) => Sql, lifetime: () => number) {
    this.#make = make
    this.#capacity = capacity
    this.#lifetime = lifetime
    this.#lanes = Array.from({ length: count }, () => this.#spawn())
  }

  get lanes (): readonly Lane[] {
    return this.#lanes
  }

  /** A fresh lane (its connection opens with its first statement); retired when its connection closes. */
  #spawn (): Lane {
    const lane = new Lane(this.#lifetime())
    lane.sql = this.#make(() => { this.retire(lane, new DatabaseUnavailableError('connection closed')) })
    return lane
  }

  #free (): Lane | undefined {
    const now = performance.now()
    let best: Lane | undefined
    for (let i = 0; i < this.#lanes.length; i++) {
      // A lane past its lifetime takes no more units: a fresh one takes its place.
      if ((this.#lanes[i] as Lane).expires < now) this.#replace(this.#lanes[i] as Lane)
      const lane = this.#lanes[i] as Lane
      if (best === undefined || lane.inflight < best.inflight) best = lane
    }
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

  /** Puts a fresh lane in `lane`'s place; the old one closes once its units are done. */
  #replace (lane: Lane): void {
    lane.retired = true
    this.#lanes[this.#lanes.indexOf(lane)] = this.#spawn()
    lane.sql.end({ timeout: 5 }).catch(noop)
  }

  /**
   * Takes a lane out of service and puts a fresh connection in its place. With an error, the units
   * still on it fail now with that error; without one (its session state is not to be trusted),
   * they finish and the connection closes after them.
   */
  retire (lane: Lane, err?: Error): void {
    if (lane.retired || this.#closed) return
    this.#replace(lane)
    if (err !== undefined) {
      for (const abort of lane.aborts) abort(err)
      lane.dropQueued()
      lane.sql.end({ timeout: 0 }).catch(noop)
    }
    this.#pump()
  }

  async close (): Promise<void> {
    this.#closed = true
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

  constructor (make: (max: number, onclose?: () => void) => Sql, lanes: number, exclusive: number, maxPipeline: number, watchdog: number, lifetime: () => number) {
    this.sql = make(exclusive)
    // Each unit is five statements; past postgres.js's max_pipeline, queued statements go out
    // one per round trip, which would cripple a lane.
    this.shared = new LanePool(lanes, Math.max(1, Math.floor(maxPipeline / 5)), (onclose) => make(1, onclose), lifetime)
    this.exclusive = new LanePool(exclusive, 1, (onclose) => make(1, onclose), lifetime)
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

/** A postgres.js query object, as far as a unit takes it over. */
interface Statement {
  strings: string[]
  handler: ((query: Statement) => void) & { debug?: unknown }
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
  options: { simple?: boolean }
  onlyDescribe?: boolean
  cancelled: unknown
  execute: () => unknown
}

/** The statements of one scope (a unit, or a savepoint in it): the first that failed. */
class Scope {
  failure: unknown = undefined

  fail (err: unknown): void {
    if (this.failure === undefined) this.failure = err
  }
}

/**
 * The statements of one transaction unit on its lane, in the order they are issued. The unit's
 * own statements (BEGIN, settings, savepoints, COMMIT…) go out as soon as everything before them
 * went out; every other statement goes out only once the one before it was answered and found to
 * be data access. So the first statement that is not data access is also the last one of its
 * unit to reach the server: the unit fails at once, ROLLBACK follows it, and the lane is retired.
 */
class Run {
  readonly #lane: Lane
  readonly #refused: (err: Error) => void
  /** Settles when the next statement may go out. */
  #gate: Promise<void> = Promise.resolve()
  /** Why nothing more goes out (a refused statement; a lost connection retires the lane). */
  #closed: Error | undefined
  /** Set when the unit sent (or is about to send) COMMIT or ROLLBACK. */
  #ended = false
  savepoints = 0

  constructor (lane: Lane, refused: (err: Error) => void) {
    this.#lane = lane
    this.#refused = refused
  }

  /**
   * Takes over a query built on the lane's pool: it goes out through this unit, and its failure
   * (even one the caller swallows) is `scope`'s. `checked`: the caller's statement, which must be
   * data access; `last`: the unit's COMMIT or ROLLBACK, after which nothing goes out.
   */
  adopt<Q>(query: Q, scope: Scope, checked: boolean, last = false): Q {
    const q = query as unknown as Statement
    const send = q.handler
    const answered = Promise.withResolvers<void>()
    // postgres.js settles a query through its own `resolve`/`reject` (cursor() replaces them):
    // both stay reachable, and every settlement passes through here first.
    let resolve = q.resolve
    let reject = q.reject
    const resolved = (value: unknown): void => {
      answered.resolve()
      const command = (value as { command?: unknown } | null)?.command
      if (!checked || q.onlyDescribe === true || DATA_ACCESS.has(command as string)) {
        resolve(value)
        return
      }
      const err = new UnitRefusedError(`${String(command ?? 'an empty statement')} is not data access`)
      this.#refuse(err)
      reject(err)
    }
    const rejected = (err: unknown): void => {
      answered.resolve()
      scope.fail(err)
      reject(err)
    }
    Object.defineProperty(q, 'resolve', { get: () => resolved, set: (f: typeof resolve) => { resolve = f } })
    Object.defineProperty(q, 'reject', { get: () => rejected, set: (f: typeof reject) => { reject = f } })
    const handler: Statement['handler'] = () => {
      // Issued after the unit ended (not awaited inside it, say): it never goes out.
      const late = this.#ended
      if (last) this.#ended = true
      this.#gate = this.#gate.then(() => {
        const closed = late ? new UnitRefusedError('a statement issued after its unit ended') : this.#closed ?? (this.#lane.retired ? new DatabaseUnavailableError('connection closed') : undefined)
        if (closed !== undefined) {
          q.reject(closed)
          return
        }
        // postgres.js skips a query cancelled before it went out, and must not be handed one.
        if (q.cancelled !== null) return
        // A COMMIT behind a failure the server has not seen (a statement cancelled or refused
        // before it went out) would commit: it goes out as ROLLBACK.
        if (last && scope.failure !== undefined) q.strings = ['rollback']
        // One statement per message, whatever the caller asked for (`simple()`).
        q.options.simple = false
        this.#lane.track(query as unknown as Promise<unknown>, answered.promise)
        send(q)
        if (checked) return answered.promise
      })
    }
    handler.debug = send.debug
    q.handler = handler
    return query
  }

  /**
   * One of the unit's own statements, sent in order without waiting for an answer; `last`: its
   * COMMIT or ROLLBACK, after which nothing goes out.
   */
  own (query: postgres.PendingQuery<postgres.Row[]>, scope: Scope, last = false): Promise<unknown> {
    return this.adopt(query, scope, false, last).execute()
  }

  #refuse (err: Error): void {
    this.#closed ??= err
    this.#refused(err)
  }
}

/** The first failure of a pipelined group, in statement order. */
function firstFailure (results: Array<PromiseSettledResult<unknown>>): unknown {
  for (const r of results) if (r.status === 'rejected') return r.reason
  return undefined
}

/**
 * What a failed scope reports: the caller's error, unless it is only "transaction aborted" (25P02)
 * behind a statement that failed first (and was swallowed).
 */
function failureOf (scope: Scope, err: unknown): unknown {
  return scope.failure !== undefined && (err as { code?: unknown } | null)?.code === '25P02' ? scope.failure : err
}

/**
 * Tenant-scoped PostgreSQL on shared connections (postgres.js + drizzle). Every unit of work is
 * one transaction whose search_path, role and statement timeout are transaction-local:
 *
 * - `db.scoped` is a drizzle database whose every statement runs as its own unit of work for the
 *   tenant in context, pipelined as `BEGIN; set_config(…); <statement>; <guard>; COMMIT` on a shared
 *   connection: one round trip, and several units in flight per connection.
 * - `db.transaction(fn)` runs many statements in one scoped transaction on a connection of its
 *   own (the scope is pipelined with the first statement, the guard with COMMIT), with savepoints.
 * - `db.system(fn)` is the same as the login itself (no tenant role) on `public`.
 *
 * With no tenant in context a unit of work is refused before anything is sent, and a connection
 * outside a unit resolves no tenant table (its search_path is `pg_catalog, pg_temp`). Every unit
 * settles: a connection that fails or stalls fails its units with `SERVICE_UNAVAILABLE` and is
 * replaced. A unit runs data access only: any other statement fails it (MT_UNIT_REFUSED), rolls it
 * back, and retires its connection (see `Run` and the README's threat model).
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
      const pool = (max: number, onclose?: () => void): Sql => {
        const sql = postgres(url, {
          // postgres.js backs off up to 20 s between reconnects and keeps that timer after end():
          // a lane comes back at most a second after its server does.
          backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 1),
          // postgres.js prints every NOTICE (such as "already exists, skipping") to the console.
          onnotice: () => {},
          ...this.#options.postgres,
          max,
          prepare: this.#prepare,
          connection: { ...this.#options.postgres?.connection, search_path: IDLE_SEARCH_PATH },
          // A lane's connection: when it closes, the lane is retired (a unit never goes on on
          // another connection). postgres.js would close it when idle or old even in the middle
          // of a transaction unit: the lane pool renews it after max_lifetime, between units.
          ...(onclose === undefined ? {} : { onclose, max_lifetime: null, idle_timeout: undefined })
        })
        // drizzle installs its type parsers and serializers on the client it wraps; do it before
        // the first connection, so every statement is read the way drizzle expects.
        this.#drizzle(sql)
        return sql
      }
      const extra = this.#options.postgres as { max_pipeline?: number, max_lifetime?: number | null } | undefined
      const maxPipeline = extra?.max_pipeline ?? 100
      // postgres.js's default: 30 to 60 minutes; null for ever.
      const configured = extra?.max_lifetime
      const lifetime = (): number => configured === undefined ? 60_000 * (30 + Math.random() * 30) : 1000 * (configured ?? Infinity)
      cluster = new Cluster(pool, this.#lanes, this.#max - this.#lanes, maxPipeline, this.#watchdog, lifetime)
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
   * A statement of the unit's own with string values: named and prepared with parameters (once
   * per connection), or, when this TenantDb does not prepare, with the values written as literals
   * and sent unnamed (an unprepared statement with parameters waits a round trip for their types),
   * so the per-tenant text does not fill the statement cache.
   */
  #bound (conn: Sql, text: string, values: string[]): postgres.PendingQuery<postgres.Row[]> {
    if (this.#prepare) return conn.unsafe(text, values, this.#statement)
    return conn.unsafe(text.replace(/\$(\d)/g, (_, i: string) => literal(values[Number(i) - 1] as string)), [], UNNAMED)
  }

  /**
   * The unit's transaction-local settings (not awaited: pipelined with what follows). The values
   * are the validated schema name, its role and an integer. The functions' EXECUTE privilege is
   * checked as the login, before the role changes; inside the unit the tenant's role has none
   * (README, "Database roles").
   */
  #open (conn: Sql, target: Target, timeout: number): postgres.PendingQuery<postgres.Row[]> {
    return this.#bound(conn, OPEN, [target.searchPath, target.role, String(Math.trunc(timeout))])
  }

  /** The check before COMMIT that the unit's settings are still its own (GUARD). */
  #guard (conn: Sql, target: Target, timeout: number): postgres.PendingQuery<postgres.Row[]> {
    return this.#bound(conn, GUARD, [target.role, target.searchPath, shownMs(Math.trunc(timeout))])
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

  /**
   * Runs `work` on a lane of `pool`: settles when the lane is retired under it (or `work` aborts
   * its unit itself), frees the lane after.
   */
  async #onLane<T>(pool: LanePool, work: (lane: Lane, abort: (err: Error) => void) => Promise<T>): Promise<T> {
    const lane = await pool.acquire()
    let abort: (err: Error) => void = noop
    const aborted = new Promise<never>((_resolve, reject) => { abort = reject })
    lane.aborts.add(abort)
    const running = work(lane, abort)
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
      const begin = conn.unsafe('begin', [], prepare).execute()
      const open = this.#open(conn, target, this.#timeout).execute()
      // drizzle asks for unprepared statements unless `.prepare(name)` was used (drizzle-orm
      // #6096); postgres.js then needs a round trip for parameter types before it can send the
      // statement, which breaks the pipeline. Named statements are cached per connection.
      let statement = conn.unsafe(text, params as never[], prepare)
      if (values) statement = statement.values() as unknown as typeof statement
      statement.execute()
      // COMMIT is on the wire before the statement's answer is back: the guard makes it a
      // ROLLBACK when the statement changed the unit's role, search path or timeout.
      const guard = this.#guard(conn, target, this.#timeout).execute()
      const commit = conn.unsafe('commit', [], prepare).execute()
      const queries = [begin, open, statement, guard, commit] as const
      lane.trackAll(queries as unknown as Array<Promise<unknown>>)
      const results = await Promise.allSettled(queries)
      const failure = firstFailure(results)
      if (results[2].status === 'fulfilled' && failure === undefined) {
        const rows = results[2].value
        if (DATA_ACCESS.has(rows.command)) return { rows }
        // A statement that is not data access (SET, SET ROLE, DECLARE … WITH HOLD, LISTEN,
        // PREPARE, DDL…) fails its unit and leaves its connection to no one else.
        cluster.shared.retire(lane)
        throw new UnitRefusedError(`${rows.command} is not data access`)
      }
      if (isConnectionError(failure)) throw failure
      if (results[0].status === 'rejected' || results[1].status === 'rejected') {
        // The unit could not take its settings, so its statement never ran: the connection's
        // session was changed under it (a role left behind by an earlier unit's SET ROLE to its
        // own tenant, which the guard lets through).
        cluster.shared.retire(lane)
        return { retry: failure }
      }
      // The statement's failure, or COMMIT's (a deferred constraint).
      if (results[2].status === 'rejected' || results[3].status === 'fulfilled') throw failure
      // The statement ran and the guard failed: the unit's session was changed under it. Rolled back.
      cluster.shared.retire(lane)
      throw new UnitRefusedError(`the unit's role, search path or statement timeout was changed (${results[2].value.command})`)
    })
    if ('retry' in outcome) {
      if (retried) throw outcome.retry
      return await this.#pipelined(target, text, params, values, true)
    }
    return outcome.rows
  }

  /**
   * drizzle (and raw SQL) on one transaction unit; a savepoint gets its own, bound to the
   * savepoint. Every statement goes through `run`: checked, in order.
   */
  #tx (run: Run, scope: Scope, lane: Lane, target: Target, timeout: number): TenantTx<TSchema> {
    const conn = lane.sql
    const statement = this.#statement
    // drizzle's statements go out as named prepared statements (see #pipelined).
    const client = { options: conn.options, unsafe: (text: string, params?: never[]) => run.adopt(conn.unsafe(text, params, statement), scope, true) }
    // Raw `unsafe()` on the transaction also sends one statement on the extended protocol, and is
    // prepared (named) only when the caller asks for it and this TenantDb prepares at all (not
    // behind a PgBouncer that cannot: `prepare: false`).
    const prepares = statement.prepare
    const own = {
      unsafe: (text: string, params?: never[], opts?: Record<string, unknown>) =>
        run.adopt(conn.unsafe(text, params, { ...opts, ...EXTENDED, prepare: opts?.prepare === true && prepares }), scope, true),
      savepoint: async <R>(...args: unknown[]): Promise<R> =>
        // (name, fn) or (fn): the name is postgres.js's decoration, the adapter numbers its own.
        await tx.savepoint(async (sp) => await (args.at(-1) as (sql: TransactionSql) => Promise<R>)(sp.sql))
    }
    const sql = new Proxy(conn, {
      // Tagged templates make queries (taken over); sql(name) and sql(rows) make helpers.
      apply (target, thisArg, args) {
        const made = Reflect.apply(target, thisArg, args) as unknown
        return made instanceof Promise ? run.adopt(made, scope, true) : made
      },
      get (target, property, receiver) {
        if (property in own) return own[property as keyof typeof own]
        if (OUTSIDE_UNIT.has(property)) return undefined
        return Reflect.get(target, property, receiver) as unknown
      }
    }) as unknown as TransactionSql
    const tx: TenantTx<TSchema> = Object.assign(this.#drizzle(client), {
      sql,
      savepoint: async <R>(inner: (sp: TenantTx<TSchema>) => Promise<R>): Promise<R> => {
        const name = `s${run.savepoints++}`
        const inside = new Scope()
        run.own(conn.unsafe(`savepoint ${name}`, [], statement), inside).catch(noop)
        try {
          const value = await inner(this.#tx(run, inside, lane, target, timeout))
          // A statement of the savepoint failed and the caller swallowed it.
          if (inside.failure !== undefined) throw inside.failure
          return value
        } catch (err) {
          // Not the savepoint's: if this fails, the transaction is lost and the unit fails.
          await run.own(conn.unsafe(`rollback to savepoint ${name}`, [], statement), scope)
          throw failureOf(inside, err)
        }
      },
      asService: async <R>(inner: (service: TransactionSql) => Promise<R>): Promise<R> => {
        // Pipelined with the caller's first statements: no round trip of its own. Statements on
        // one connection run in order, and if the switch failed the transaction is aborted, so
        // nothing of `inner` can run as the tenant.
        const switched = Promise.all(AS_SERVICE.map(async (text) => await run.own(conn.unsafe(text, [], UNNAMED), scope)))
        switched.catch(noop)
        try {
          const result = await inner(sql)
          await switched
          return result
        } finally {
          // Back to the tenant, pipelined with whatever the caller sends next (which runs after
          // it), even if the caller goes on after catching a failure of this step. If it fails,
          // the transaction is aborted: nothing later runs, and the unit fails.
          run.own(this.#open(conn, target, timeout), scope).catch(noop)
        }
      }
    })
    return tx
  }

  async #unit<T>(target: Target, timeout: number, fn: (tx: TenantTx<TSchema>) => Promise<T>): Promise<T> {
    const cluster = this.#cluster(target.cluster)
    return await this.#onLane(cluster.exclusive, async (lane, abort) => {
      const conn = lane.sql
      const statement = this.#statement
      const run = new Run(lane, (err) => {
        // A statement that is not data access: the unit fails now and rolls back (its ROLLBACK
        // goes out right behind that statement; nothing of the unit follows), and the connection
        // is not reused.
        abort(err)
        conn.unsafe('rollback', [], statement).execute().catch(noop)
        cluster.exclusive.retire(lane)
      })
      const scope = new Scope()
      // BEGIN and the settings go out with the unit's first statement: no round trip of their own.
      run.own(conn.unsafe('begin', [], statement), scope).catch(noop)
      run.own(this.#open(conn, target, timeout), scope).catch(noop)
      let value: T
      try {
        value = await fn(this.#tx(run, scope, lane, target, timeout))
      } catch (err) {
        // After every statement issued so far; nothing issued later goes out.
        await run.own(conn.unsafe('rollback', [], statement), scope, true).catch(noop)
        throw failureOf(scope, err)
      }
      // The guard and COMMIT go out together once every statement of the unit was answered and
      // checked: COMMIT becomes ROLLBACK when a statement failed (even one the caller swallowed)
      // or the unit's settings were changed.
      const guard = run.own(this.#guard(conn, target, timeout), scope)
      const commit = run.own(conn.unsafe('commit', [], statement), scope, true)
      const [checked] = await Promise.allSettled([guard, commit])
      if (scope.failure === undefined) return value
      if (checked.status === 'rejected' && checked.reason === scope.failure && (checked.reason as { code?: unknown }).code === GUARD_FAILED) {
        // Every statement succeeded, and still the unit's role, search path or timeout changed.
        cluster.exclusive.retire(lane)
        throw new UnitRefusedError('the unit\'s role, search path or statement timeout was changed')
      }
      throw scope.failure
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
