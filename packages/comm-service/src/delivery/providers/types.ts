import type { Tenant } from '@platform/multitenant'
import type { CommSettings } from '../../settings.ts'

/** What a provider gets: the message as stored. */
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

/** Whose message it is: the tenant and its settings (the sender identity comes from here only). */
export interface SendContext {
  tenant: Tenant
  settings: CommSettings
}

export interface SendResult {
  /** The provider's own id for the message (recorded: it identifies a duplicate). */
  providerMessageId: string
}

/** A failure that another attempt may fix (network, timeout, 5xx, 429). */
export class TransientError extends Error {
  readonly code = 'PROVIDER_TRANSIENT'
  readonly retryAfterMs: number | undefined
  constructor (message: string, retryAfterMs?: number) {
    super(message)
    this.retryAfterMs = retryAfterMs
  }
}

/** A failure that another attempt will not fix (rejected address, auth failure, 4xx, bad settings). */
export class PermanentError extends Error {
  readonly code = 'PROVIDER_REJECTED'
}

export interface Provider {
  readonly name: string
  send: (message: OutgoingMessage, context: SendContext) => Promise<SendResult>
  close?: () => Promise<void>
}

// `Retry-After` as ms (seconds or an HTTP date): the library's reading, shared with its registry client.
export { retryAfterMs } from '@platform/multitenant'
