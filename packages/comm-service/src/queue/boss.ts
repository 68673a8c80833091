// The durable queue: pg-boss in one shared schema per cluster, written by the service login only.
// A message's job is inserted in the tenant's own transaction (TenantTx.asService), so a 202 means
// the message and its job are both committed, and a failure before commit leaves neither.
import { PgBoss, type Job } from 'pg-boss'
import postgres, { type TransactionSql } from 'postgres'

export const DELIVER_QUEUE = 'comm-deliver'

export interface DeliverJob {
  tenant: string
  database: string
  messageId: string
}

export interface QueueOptions {
  /** The service login's URL for the cluster (pg-boss keeps its own small pool). */
  url: string
  /** pg-boss's schema, created beforehand by the one-time setup and owned by the service login. */
  schema?: string
  /** Connections of pg-boss's own pool (default 4). */
  max?: number
  /**
   * Seconds without a heartbeat after which a job whose worker died is handed to another worker
   * (default 10, pg-boss's minimum). Workers beat at half of it while a send is under way.
   */
  heartbeatSeconds?: number
  /** How often the monitor looks for such jobs, in seconds (default 5). */
  superviseSeconds?: number
  /** Longest a job may stay active, in seconds (default 300): past the provider's timeout. */
  expireSeconds?: number
  /**
   * Dedicated mode: the one tenant this instance serves. Its jobs go to a queue of their own
   * (`comm-deliver.<tenant>`), which only its dedicated workers work.
   */
  tenant?: string
}

/** pg-boss's database adapter over the unit's connection: the job commits with the message. */
export function inTransaction (sql: TransactionSql): { executeSql: (text: string, values?: unknown[]) => Promise<{ rows: unknown[] }> } {
  // pg-boss writes for node-postgres, which sends a plain object as its JSON; postgres.js wants the text.
  const value = (v: unknown): unknown => Object.prototype.toString.call(v) === '[object Object]' ? JSON.stringify(v) : v
  // Prepared: pg-boss's insert is long and constant, and parsing it each time doubled its cost.
  return { executeSql: async (text, values = []) => ({ rows: await sql.unsafe(text, values.map(value) as never[], { prepare: true }) }) }
}

export interface QueueDepth {
  /** Jobs due and waiting for a worker. */
  depth: number
  /** Age of the oldest of them, in seconds (0 when none). */
  oldestSeconds: number
}

export class DeliveryQueue {
  readonly boss: PgBoss
  /** The pg-boss queue: `comm-deliver`, or `comm-deliver.<tenant>` in dedicated mode. */
  readonly name: string
  readonly #schema: string
  readonly #options: QueueOptions

  constructor (options: QueueOptions) {
    this.#schema = options.schema ?? 'pgboss'
    this.#options = options
    this.name = options.tenant === undefined ? DELIVER_QUEUE : `${DELIVER_QUEUE}.${options.tenant}`
    this.boss = new PgBoss({
      connectionString: options.url,
      schema: this.#schema,
      max: options.max ?? 4,
      application_name: 'comm-service-queue',
      superviseIntervalSeconds: options.superviseSeconds ?? 5,
      // The ready count behind burst mode (below) and /metrics' depth stay at most 2 s old.
      monitorIntervalSeconds: 2,
      queueCacheIntervalSeconds: 2,
      // A new job wakes an idle worker at once (NOTIFY in the inserting transaction).
      useListenNotify: true
    })
    /* c8 ignore next */
    this.boss.on('error', () => {}) // a lost connection is retried by pg-boss; the worker logs its own failures
  }

  async start (): Promise<void> {
    // Service logins may not create schemas: without the one-time setup pg-boss would fail with a
    // bare "permission denied". Say what to do instead.
    /* c8 ignore next: the probe's one query raises no notice */
    const probe = postgres(this.#options.url, { max: 1, onnotice: () => {}, connect_timeout: 10 })
    let installed: boolean
    try {
      const [row] = await probe`select to_regclass(${`${this.#schema}.job`}) is not null as installed`
      installed = row?.installed === true
    } finally {
      await probe.end()
    }
    if (!installed) {
      throw Object.assign(new Error(`the queue schema "${this.#schema}" is not installed on this database: run the one-time setup as a superuser (setupQueueSchema(admin, '<comm login>') from @platform/comm-service/setup)`), { code: 'COMM_QUEUE_MISSING' })
    }
    await this.boss.start()
    // pg-boss's own retries cover a worker that died or a database that failed mid-job: the same
    // job runs again soon. A provider's transient failure is retried by the worker with a new job
    // (its own backoff and Retry-After), so these are not the message's attempts.
    await this.boss.createQueue(this.name, {
      retryLimit: 1000,
      retryDelay: 1,
      retryBackoff: true,
      retryDelayMax: 30,
      heartbeatSeconds: this.#options.heartbeatSeconds ?? 10,
      expireInSeconds: this.#options.expireSeconds ?? 300,
      notify: true
    })
  }

  /** Enqueues a delivery in the caller's transaction (run inside `tx.asService`). */
  async enqueue (sql: TransactionSql, job: DeliverJob, options: { tier: string, startAfter?: Date | undefined }): Promise<string | null> {
    return await this.boss.send(this.name, job, {
      db: inTransaction(sql),
      group: { id: job.tenant, tier: options.tier },
      ...(options.startAfter === undefined ? {} : { startAfter: options.startAfter })
    })
  }

  /**
   * Runs `handler` for each job: at most `local` at once in this process and `perTenant` at once
   * per tenant across every worker (pg-boss's group concurrency, enforced in its fetch query). A
   * handler that throws hands its job back for another run.
   *
   * Jobs come in batches of `perTenant` (one fetch and one completion query per batch): a batch
   * that comes back full, which a lone tenant's backlog does too, means more work, so the worker
   * fetches again at once; idle, a NOTIFY wakes it, and a poll every 2 s is the backstop.
   */
  async work (concurrency: { local: number, perTenant: number }, handler: (job: Job<DeliverJob>) => Promise<void>): Promise<void> {
    const batchSize = Math.min(concurrency.perTenant, concurrency.local)
    await this.boss.work<DeliverJob>(this.name, {
      localConcurrency: Math.max(1, Math.ceil(concurrency.local / batchSize)),
      batchSize,
      groupConcurrency: concurrency.perTenant,
      perJobResults: true,
      burstWhenBatchFull: true,
      burstWhenReadyExceeds: 1,
      pollingIntervalSeconds: 0.5,
      notifyPollingIntervalSeconds: 2
    }, async (jobs) => await Promise.all(jobs.map(async (job) => {
      try {
        await handler(job)
        return { id: job.id, status: 'completed' as const }
      } catch {
        return { id: job.id, status: 'failed' as const }
      }
    })))
  }

  /** Due jobs waiting and the age of the oldest (for /metrics). */
  async depth (): Promise<QueueDepth> {
    const { rows } = await this.boss.getDb().executeSql(
      `select count(*)::int as depth, coalesce(extract(epoch from now() - min(created_on)), 0)::float8 as oldest
       from ${this.#schema}.job where name = $1 and state in ('created', 'retry') and start_after <= now()`, [this.name])
    const row = rows[0] as { depth: number, oldest: number }
    return { depth: row.depth, oldestSeconds: row.oldest }
  }

  /** The same, per tenant (the job's group). */
  async depthByTenant (): Promise<Map<string, QueueDepth>> {
    const { rows } = await this.boss.getDb().executeSql(
      `select group_id as tenant, count(*)::int as depth, coalesce(extract(epoch from now() - min(created_on)), 0)::float8 as oldest
       from ${this.#schema}.job where name = $1 and state in ('created', 'retry') and start_after <= now() and group_id is not null group by group_id`, [this.name])
    return new Map((rows as Array<{ tenant: string, depth: number, oldest: number }>).map((r) => [r.tenant, { depth: r.depth, oldestSeconds: r.oldest }]))
  }

  /** Stops fetching, lets running jobs finish for up to `timeout` ms, then disconnects. */
  async stop (timeout = 10_000): Promise<void> {
    await this.boss.stop({ graceful: true, timeout })
  }
}
