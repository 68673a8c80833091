// Provider callbacks applied to a tenant's message: `delivered` from sending or sent, `bounced`
// from sending, sent or delivered. Anything else is recorded and changes nothing, so an
// out-of-order receipt never moves a message backwards; a repeated callback id is a no-op.
import type { Tenant } from '@platform/multitenant'
import type { TenantDb } from '@platform/multitenant/pg'
import { NotFoundError } from './store.ts'

export type ReceiptEvent = 'delivered' | 'bounced'

export interface Receipt {
  /** The callback's own id (`webhook-id`): a repeat with the same id changes nothing. */
  id: string
  event: ReceiptEvent
  /** Our message id (the provider got it as its reference), or the provider's own id. */
  messageId?: string
  providerMessageId?: string
  /** The channel the provider serves: a receipt for another channel's message does not apply. */
  channel: 'email' | 'sms'
  /** What the history shows. */
  detail: string
}

export interface ReceiptOutcome {
  messageId: string
  status: string
  applied: boolean
  duplicate: boolean
}

const FROM: Record<ReceiptEvent, string[]> = { delivered: ['sending', 'sent'], bounced: ['sending', 'sent', 'delivered'] }

export async function applyReceipt (db: TenantDb<Record<string, unknown>>, tenant: Tenant, receipt: Receipt): Promise<ReceiptOutcome> {
  return await db.transaction(async (tx) => {
    const [message] = receipt.messageId !== undefined
      ? await tx.sql<Array<{ id: string, status: string, channel: string }>>`select id, status, channel from messages where id = ${receipt.messageId} for update`
      : await tx.sql<Array<{ id: string, status: string, channel: string }>>`select id, status, channel from messages where provider_message_id = ${receipt.providerMessageId as string} order by created_at desc limit 1 for update`
    if (message === undefined) throw new NotFoundError()
    const seen = await tx.sql`insert into receipts (id, message_id, event, applied) values (${receipt.id}, ${message.id}, ${receipt.event}, false) on conflict (id) do nothing returning id`
    if (seen.length === 0) return { messageId: message.id, status: message.status, applied: false, duplicate: true }
    const applies = message.channel === receipt.channel && FROM[receipt.event].includes(message.status)
    if (!applies) return { messageId: message.id, status: message.status, applied: false, duplicate: false }
    await tx.sql`update messages set status = ${receipt.event}, updated_at = now() where id = ${message.id}`
    await tx.sql`insert into message_events (message_id, status, detail) values (${message.id}, ${receipt.event}, ${receipt.detail})`
    await tx.sql`update receipts set applied = true where id = ${receipt.id}`
    return { messageId: message.id, status: receipt.event, applied: true, duplicate: false }
  }, { tenant })
}
