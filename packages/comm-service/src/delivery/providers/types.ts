import type { Tenant } from '@platform/multitenant'

/** What a provider gets: the message as stored, and whose it is (for the sender identity). */
export interface OutgoingMessage {
  id: string
  channel: 'email' | 'sms' | 'webhook'
  to: string
  subject: string | null
  text: string | null
  html: string | null
  body: string | null
  metadata: Record<string, unknown>
}

export interface SendResult {
  /** The provider's own id for the message (recorded: it identifies a duplicate). */
  providerMessageId: string
}

/** A failure that another attempt may fix (network, timeout, 5xx, 429). Anything else is permanent. */
export class TransientError extends Error {
  readonly code = 'PROVIDER_TRANSIENT'
  readonly retryAfterMs: number | undefined
  constructor (message: string, retryAfterMs?: number) {
    super(message)
    this.retryAfterMs = retryAfterMs
  }
}

export interface Provider {
  readonly name: string
  send: (message: OutgoingMessage, tenant: Tenant) => Promise<SendResult>
}
