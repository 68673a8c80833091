// Delivery: claim the message (queued → sending), call the provider with no connection or
// transaction held, record the outcome. At least once: a worker that dies between the provider's
// acceptance and the `sent` commit leaves the job to be retried, so the provider may see it twice
// (the provider message id recorded identifies the copy that counts).
import type { Tenant, TenantProvider } from '@platform/multitenant'
import type { TenantDb } from '@platform/multitenant/pg'
import type { FastifyBaseLogger } from 'fastify'
import type { Job } from 'pg-boss'
import type { DeliverJob } from '../queue/boss.ts'
import type { OutgoingMessage, Provider } from './providers/types.ts'

export interface WorkerDeps {
  db: TenantDb<Record<string, unknown>>
  tenants: TenantProvider
  provider: (tenant: Tenant, channel: OutgoingMessage['channel']) => Provider
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
}

export function deliveryHandler (deps: WorkerDeps): (job: Job<DeliverJob>) => Promise<void> {
  return async (job) => {
    const { tenant: tenantId, messageId } = job.data
    const tenant = await deps.tenants.getTenant(tenantId)
    // A tenant that is gone or not served: its messages wait (suspended) or are dropped (archived).
    if (tenant === null || tenant.status === 'archived') return
    if (tenant.status !== 'active' && tenant.status !== 'trial') throw new Error(`tenant ${tenantId} is ${tenant.status}: delivery waits`)
    const [claimed] = await deps.db.transaction(async (tx) => {
      const rows = await tx.sql<Claimed[]>`
        update messages set status = 'sending', attempts = attempts + 1, updated_at = now()
        where id = ${messageId} and status in ('queued', 'sending')
        returning id, channel, recipient, subject, text_body, html_body, body, metadata::text as metadata`
      if (rows.length === 1) await tx.sql`insert into message_events (message_id, status) values (${messageId}, 'sending')`
      return rows
    }, { tenant })
    if (claimed === undefined) return // canceled, or already sent by an earlier attempt
    const message: OutgoingMessage = {
      id: claimed.id, channel: claimed.channel, to: claimed.recipient, subject: claimed.subject, text: claimed.text_body, html: claimed.html_body, body: claimed.body, metadata: JSON.parse(claimed.metadata) as Record<string, unknown>
    }
    const provider = deps.provider(tenant, message.channel)
    const result = await provider.send(message, tenant)
    await deps.db.transaction(async (tx) => {
      await tx.sql`update messages set status = 'sent', provider = ${provider.name}, provider_message_id = ${result.providerMessageId}, last_error = null, updated_at = now() where id = ${messageId}`
      await tx.sql`insert into message_events (message_id, status, detail) values (${messageId}, 'sent', ${`${provider.name} ${result.providerMessageId}`})`
    }, { tenant })
    deps.log.debug({ tenant: tenant.id, messageId, provider: provider.name }, 'message sent')
  }
}
