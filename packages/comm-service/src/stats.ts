// Per-tenant counts for the platform admin view, without visiting 1,000 schemas per call: each
// process counts the statuses its messages enter (accepted, sent, failed, delivered, bounced,
// canceled) in memory and adds them once a second to one hourly table on the default cluster, in
// the queue schema the service login owns (no tenant role can read or write it). The admin view
// sums the last 24 hours there, and reads each tenant's queue depth from the queue's own table.
// A process that crashes loses at most its last second of counts, never a message.
import type { DeliveryQueue } from './queue/boss.ts'

export const COUNTED = ['queued', 'sent', 'delivered', 'failed', 'bounced', 'canceled'] as const
export type CountedStatus = typeof COUNTED[number]

/** Every counted status at zero. */
export const zeroCounts = (): Record<CountedStatus, number> => Object.fromEntries(COUNTED.map((status) => [status, 0])) as Record<CountedStatus, number>

export interface TenantStats {
  tenant: string
  /** Messages that entered each status in the last 24 hours (queued: accepted or redriven). */
  counts: Record<CountedStatus, number>
  /** Jobs due and waiting, over every cluster, and the age of the oldest in seconds. */
  queue: { depth: number, oldestSeconds: number }
}

const table = (schema: string): string => `${schema}.comm_tenant_hourly`

export class StatsRecorder {
  readonly #queue: () => DeliveryQueue
  readonly #schema: string
  #pending = new Map<string, number>()
  #timer: NodeJS.Timeout | undefined
  #flushing: Promise<void> = Promise.resolve()
  #lastPrune = 0

  /** `queue`: the default cluster's queue (its pool and schema), asked for when first needed. */
  constructor (queue: () => DeliveryQueue, options: { schema?: string, flushMs?: number } = {}) {
    this.#queue = queue
    this.#schema = options.schema ?? 'pgboss'
    this.#timer = setInterval(() => { this.flush().catch(() => {}) }, options.flushMs ?? 1000)
    this.#timer.unref()
  }

  /** Creates the table when missing (the service login owns the schema). */
  async install (): Promise<void> {
    await this.#queue().boss.getDb().executeSql(`
      create table if not exists ${table(this.#schema)} (
        tenant text not null,
        hour timestamptz not null,
        status text not null,
        n bigint not null,
        primary key (hour, tenant, status))`)
  }

  /** Counts not yet flushed. */
  get pending (): number {
    let n = 0
    for (const count of this.#pending.values()) n += count
    return n
  }

  count (tenant: string, status: CountedStatus): void {
    const key = `${tenant}\u0000${status}`
    this.#pending.set(key, (this.#pending.get(key) ?? 0) + 1)
  }

  /** Adds what was counted since the last flush (one statement; rows in key order, so concurrent flushes never deadlock). */
  async flush (): Promise<void> {
    this.#flushing = this.#flushing.then(async () => await this.#flush())
    await this.#flushing
  }

  async #flush (): Promise<void> {
    if (this.#pending.size === 0) return
    const batch = this.#pending
    this.#pending = new Map()
    const keys = [...batch.keys()].sort()
    const tenants = keys.map((k) => k.slice(0, k.indexOf('\u0000')))
    const statuses = keys.map((k) => k.slice(k.indexOf('\u0000') + 1))
    const counts = keys.map((k) => batch.get(k) as number)
    try {
      await this.#queue().boss.getDb().executeSql(`
        insert into ${table(this.#schema)} (hour, tenant, status, n)
        select date_trunc('hour', now()), t, s, n from unnest($1::text[], $2::text[], $3::bigint[]) as u (t, s, n)
        on conflict (hour, tenant, status) do update set n = ${table(this.#schema)}.n + excluded.n`, [tenants, statuses, counts])
      if (Date.now() - this.#lastPrune > 600_000) {
        this.#lastPrune = Date.now()
        await this.#queue().boss.getDb().executeSql(`delete from ${table(this.#schema)} where hour < now() - interval '48 hours'`)
      }
    } catch {
      // The database is away: keep the counts for the next flush.
      for (const [key, n] of batch) this.#pending.set(key, (this.#pending.get(key) ?? 0) + n)
    }
  }

  async close (): Promise<void> {
    clearInterval(this.#timer)
    await this.flush()
  }
}

/** Every tenant's counts for the last 24 hours and queue depth across `queues`, sorted by tenant. */
export async function tenantStats (stats: DeliveryQueue, queues: DeliveryQueue[], schema = 'pgboss'): Promise<TenantStats[]> {
  const { rows } = await stats.boss.getDb().executeSql(`
    select tenant, status, sum(n)::float8 as n from ${table(schema)}
    where hour >= date_trunc('hour', now()) - interval '23 hours' group by tenant, status`)
  const byTenant = new Map<string, TenantStats>()
  const entry = (tenant: string): TenantStats => {
    let found = byTenant.get(tenant)
    if (found === undefined) {
      found = { tenant, counts: zeroCounts(), queue: { depth: 0, oldestSeconds: 0 } }
      byTenant.set(tenant, found)
    }
    return found
  }
  for (const row of rows as Array<{ tenant: string, status: CountedStatus, n: number }>) {
    if ((COUNTED as readonly string[]).includes(row.status)) entry(row.tenant).counts[row.status] = row.n
  }
  for (const queue of queues) {
    for (const [tenant, depth] of await queue.depthByTenant()) {
      const e = entry(tenant)
      e.queue.depth += depth.depth
      e.queue.oldestSeconds = Math.max(e.queue.oldestSeconds, depth.oldestSeconds)
    }
  }
  return [...byTenant.values()].sort((a, b) => a.tenant.localeCompare(b.tenant))
}
