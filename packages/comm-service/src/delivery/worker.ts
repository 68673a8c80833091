// Delivery: claim the message (queued → sending), call the provider with no connection or
// transaction held, record the outcome. At least once: a worker that dies between the provider's
// acceptance and the `sent` commit leaves its job to run again, so the provider may see the message
// twice (the provider message id recorded identifies the copy that counts).
//
// Each attempt after a provider's transient failure is a new job, written in the same transaction
// that puts the message back to `queued`, due after the backoff (or the provider's Retry-After).
// The claim names the job that holds it, so a job re-run after a crash resumes only its own claim.
import type { Tenant, TenantProvider } from '@platform/multitenant'
import type { TenantDb, TenantTx } from '@platform/multitenant/pg'
import type { FastifyBaseLogger } from 'fastify'
import type { Job } from 'pg-boss'
import type { CommMetrics } from '../metrics.ts'
import type { DeliverJob, DeliveryQueue } from '../queue/boss.ts'
import type { CommSettings } from '../settings.ts'
import type { StatsRecorder } from '../stats.ts'
import { PermanentError, TransientError, type OutgoingMessage, type Provider, type SendContext } from './providers/types.ts'

export interface RetryPolicy {
  /** Attempts per message before it is dead-lettered (`failed`); a redrive grants as many again. */
  attempts: number
  /** The first retry's delay in ms; each further one doubles, with jitter. */
  baseMs: number
  /** The longest delay between attempts, in ms. */
  maxMs: number
  /** How long a suspended tenant's message waits before it is looked at again, in ms (no attempt is spent). */
  suspendedMs: number
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ attempts: 5, baseMs: 2000, maxMs: 10 * 60_000, suspendedMs: 30_000 })

/** The delay before attempt `attempt + 1`: exponential, capped, half of it random ("equal jitter"). */
export function backoffMs (attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(30, attempt - 1))
  return Math.round(ceiling / 2 + random() * ceiling / 2)
}

export interface WorkerDeps {
  db: TenantDb<Record<string, unknown>>
  tenants: TenantProvider
  /** The queue of a cluster (a retry's job goes where the message is). */
  queue: (cluster: string) => DeliveryQueue
  /** The tenant's settings (throws TENANT_CONFIG_INVALID when they cannot work). */
  settings: (tenant: Tenant) => CommSettings
  /** Why this tenant may not send on this channel as the sender it names (not its own), or null. */
  senders: (context: SendContext, channel: OutgoingMessage['channel']) => string | null
  /** The provider for a message of this tenant on this channel. */
  provider: (context: SendContext, channel: OutgoingMessage['channel']) => Provider
  retry: RetryPolicy
  metrics: CommMetrics
  stats: StatsRecorder
  log: FastifyBaseLogger
}

interface Claimed {
  id: string
  channel: OutgoingMessage['channel']
  recipient: string
  subject: string | null
  text_body: string | null
  html_body: string | null
  body: string | null
  metadata: string
  attempts: number
  max_attempts: number
  /** Who sent it (the user's sub or svc:<name>), for the log lines. */
  sent_by: string | null
}

/* c8 ignore next: providers throw Errors; anything else is only stringified */
const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err)).slice(0, 500)

async function event (tx: TenantTx<Record<string, unknown>>, id: string, status: string, detail: string | null = null): Promise<void> {
  await tx.sql`insert into message_events (message_id, status, detail) values (${id}, ${status}, ${detail})`
}

export function deliveryHandler (deps: WorkerDeps): (job: Job<DeliverJob>) => Promise<void> {
  const { db, log, metrics } = deps

  async function requeue (tenant: Tenant, data: DeliverJob, startAfter: Date, write: (tx: TenantTx<Record<string, unknown>>) => Promise<void>): Promise<void> {
    await db.transaction(async (tx) => {
      await write(tx)
      await tx.asService(async (sql) => await deps.queue(tenant.database).enqueue(sql, data, { tier: tenant.tier, startAfter }))
    }, { tenant })
  }

  return async (job) => {
    const data = job.data
    const tenant = await deps.tenants.getTenant(data.tenant)
    // A tenant that is gone or archived: its messages are dropped. A suspended one's wait.
    if (tenant === null || tenant.status === 'archived') {
      log.info({ tenant: data.tenant, messageId: data.messageId }, 'tenant gone: message dropped')
      return
    }
    if (tenant.status !== 'active' && tenant.status !== 'trial') {
      await requeue(tenant, data, new Date(Date.now() + deps.retry.suspendedMs), async () => {})
      return
    }
    // One statement (one round trip, pipelined by TenantDb): the claim and its event.
    const [claimed] = await db.query(`
      with claimed as (
        update messages set status = 'sending', attempts = attempts + 1, claimed_by = $2, updated_at = now()
        where id = $1 and (status = 'queued' or (status = 'sending' and claimed_by = $2))
        returning id, channel, recipient, subject, text_body, html_body, body, metadata::text as metadata, attempts, max_attempts, sent_by),
      logged as (insert into message_events (message_id, status, detail) select id, 'sending', 'attempt ' || attempts from claimed)
      select * from claimed`, [data.messageId, job.id], { tenant }) as unknown as Claimed[]
    if (claimed === undefined) return // canceled, sent, or claimed by another job
    const message: OutgoingMessage = {
      id: claimed.id, channel: claimed.channel, to: claimed.recipient, subject: claimed.subject, text: claimed.text_body, html: claimed.html_body, body: claimed.body, metadata: JSON.parse(claimed.metadata) as Record<string, unknown>
    }
    const labels = { channel: message.channel, tier: tenant.tier }
    let provider: Provider | undefined
    let result: { providerMessageId: string }
    try {
      const context: SendContext = { tenant, settings: deps.settings(tenant) }
      // Configuration can reach the registry without the comm-service, and a domain can go after
      // the sender was set: a sender that is not the tenant's own never reaches a provider.
      const refused = deps.senders(context, message.channel)
      if (refused !== null) throw new PermanentError(refused)
      provider = deps.provider(context, message.channel)
      result = await provider.send(message, context)
    } catch (err) {
      const permanent = err instanceof PermanentError || (err as { code?: string }).code === 'TENANT_CONFIG_INVALID'
      const reason = errorText(err)
      if (!permanent && claimed.attempts < claimed.max_attempts) {
        /* c8 ignore next: an unclassified throw (a provider bug) is retried like a transient failure */
        const wait = Math.max(backoffMs(claimed.attempts, deps.retry), err instanceof TransientError ? err.retryAfterMs ?? 0 : 0)
        const at = new Date(Date.now() + wait)
        await requeue(tenant, data, at, async (tx) => {
          await tx.sql`update messages set status = 'queued', last_error = ${reason}, claimed_by = null, updated_at = now() where id = ${message.id} and claimed_by = ${job.id}`
          await event(tx, message.id, 'retrying', `attempt ${claimed.attempts} failed: ${reason}; next attempt at ${at.toISOString()}`)
        })
        metrics.retried.inc(labels)
        log.warn({ tenant: tenant.id, actor: claimed.sent_by, messageId: message.id, attempt: claimed.attempts, err: reason, retryAt: at }, 'delivery failed: retrying')
        return
      }
      await db.transaction(async (tx) => {
        /* c8 ignore next: no provider when the tenant's settings could not be read */
        await tx.sql`update messages set status = 'failed', last_error = ${reason}, claimed_by = null, provider = ${provider?.name ?? null}, updated_at = now() where id = ${message.id} and claimed_by = ${job.id}`
        await event(tx, message.id, 'failed', permanent ? `rejected: ${reason}` : `gave up after ${claimed.attempts} attempts: ${reason}`)
      }, { tenant })
      metrics.failed.inc({ ...labels, reason: permanent ? 'permanent' : 'exhausted' })
      deps.stats.count(tenant.id, 'failed')
      log.warn({ tenant: tenant.id, actor: claimed.sent_by, messageId: message.id, attempt: claimed.attempts, err: reason }, permanent ? 'delivery rejected: message failed' : 'delivery attempts exhausted: message failed')
      return
    }
    // A receipt that arrived while the provider call was under way (delivered, bounced) stays: a
    // message never moves backwards.
    await db.query(`
      with sent as (
        update messages set status = case when status = 'sending' then 'sent' else status end, provider = $3, provider_message_id = $4, last_error = null, claimed_by = null, updated_at = now()
        where id = $1 and claimed_by = $2 returning id)
      insert into message_events (message_id, status, detail) select id, 'sent', $5 from sent`,
    [message.id, job.id, provider.name, result.providerMessageId, `${provider.name} ${result.providerMessageId}`], { tenant })
    metrics.sent.inc(labels)
    deps.stats.count(tenant.id, 'sent')
    log.debug({ tenant: tenant.id, actor: claimed.sent_by, messageId: message.id, provider: provider.name }, 'message sent')
  }
}
