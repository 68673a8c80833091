// The durable queue: pg-boss in one shared schema per cluster, written by the service login only.
// A message's job is inserted in the tenant's own transaction (TenantTx.asService), so a 202 means
// the message and its job are both committed, and a failure before commit leaves neither.
import { PgBoss, type Job } from 'pg-boss'
import type { TransactionSql } from 'postgres'

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
  /** Retries of a transient failure before the job is dead-lettered (default 5). */
  retryLimit?: number
}

/** pg-boss's database adapter over the unit's connection: the job commits with the message. */
export function inTransaction (sql: TransactionSql): { executeSql: (text: string, values?: unknown[]) => Promise<{ rows: unknown[] }> } {
  // pg-boss writes for node-postgres, which sends a plain object as its JSON; postgres.js wants the text.
  const value = (v: unknown): unknown => Object.prototype.toString.call(v) === '[object Object]' ? JSON.stringify(v) : v
  return { executeSql: async (text, values = []) => ({ rows: await sql.unsafe(text, values.map(value) as never[]) }) }
}

export class DeliveryQueue {
  readonly boss: PgBoss
  readonly #retryLimit: number

  constructor (options: QueueOptions) {
    this.boss = new PgBoss({ connectionString: options.url, schema: options.schema ?? 'pgboss', max: 4, application_name: 'comm-service-queue' })
    this.#retryLimit = options.retryLimit ?? 5
    this.boss.on('error', () => {}) // reported through the worker's own logging
  }

  async start (): Promise<void> {
    await this.boss.start()
    await this.boss.createQueue(DELIVER_QUEUE, { retryLimit: this.#retryLimit, retryBackoff: true, retryDelay: 1, expireInSeconds: 120 })
  }

  /** Enqueues a delivery in the caller's transaction (run inside `tx.asService`). */
  async enqueue (sql: TransactionSql, job: DeliverJob, options: { tier: string, startAfter?: Date | undefined }): Promise<string | null> {
    return await this.boss.send(DELIVER_QUEUE, job, {
      db: inTransaction(sql),
      group: { id: job.tenant, tier: options.tier },
      ...(options.startAfter === undefined ? {} : { startAfter: options.startAfter })
    })
  }

  async work (concurrency: { local: number, perTenant: number }, handler: (job: Job<DeliverJob>) => Promise<void>): Promise<void> {
    await this.boss.work<DeliverJob>(DELIVER_QUEUE, { localConcurrency: concurrency.local, groupConcurrency: concurrency.perTenant, pollingIntervalSeconds: 0.5 }, async ([job]) => {
      await handler(job as Job<DeliverJob>)
    })
  }

  async stop (): Promise<void> {
    await this.boss.stop({ graceful: true, timeout: 10_000 })
  }
}
