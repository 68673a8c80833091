// Validation at the edge: the JSON schema catches shapes and sizes; these checks catch what a
// schema cannot say per channel. Every refusal is VALIDATION_FAILED with the field named.
import createError from '@fastify/error'
import { hostAllowed, hostProblem } from '../delivery/address.ts'

export { hostAllowed, hostProblem }

export const ValidationError = createError<'VALIDATION_FAILED', 400, [string]>('VALIDATION_FAILED', '%s', 400, undefined, false)

export const LIMITS = Object.freeze({ subject: 255, text: 100_000, html: 256_000, sms: 1600, webhookBody: 64_000, metadataBytes: 4096, scheduleDays: 30, skewMs: 5 * 60_000 })

export type Channel = 'email' | 'sms' | 'webhook'

export interface MessageInput {
  channel: Channel
  to: string
  subject?: string
  text?: string
  html?: string
  body?: string
  metadata?: Record<string, unknown>
  scheduledAt?: string
  /** A stored template instead of inline content (rendered at accept time). */
  template?: { name: string, locale?: string, version?: number, data?: Record<string, unknown> }
}

/** POST /v1/messages: shapes and sizes (the 413 for a whole body past the limit is Fastify's). */
export const messageBody = {
  type: 'object',
  required: ['channel', 'to'],
  additionalProperties: false,
  examples: [
    { channel: 'email', to: 'ann@example.com', subject: 'Welcome to Acme', text: 'Hi Ann, your account is ready.' },
    { channel: 'sms', to: '+15550100', body: 'Your Acme code is 1234' },
    { channel: 'email', to: 'ann@example.com', template: { name: 'welcome', locale: 'en-GB', data: { name: 'Ann' } } }
  ],
  properties: {
    channel: { type: 'string', enum: ['email', 'sms', 'webhook'] },
    to: { type: 'string', minLength: 1, maxLength: 2048 },
    subject: { type: 'string', minLength: 1, maxLength: LIMITS.subject },
    text: { type: 'string', maxLength: LIMITS.text },
    html: { type: 'string', maxLength: LIMITS.html },
    body: { type: 'string', maxLength: LIMITS.webhookBody },
    metadata: { type: 'object', maxProperties: 20 },
    scheduledAt: { type: 'string', format: 'date-time' },
    template: {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: {
        name: { type: 'string', pattern: '^[a-z0-9][a-z0-9_.-]{0,63}$' },
        locale: { type: 'string', pattern: '^[a-z]{2,3}(-[A-Z]{2})?$' },
        version: { type: 'integer', minimum: 1 },
        data: { type: 'object' }
      }
    }
  }
} as const

const EMAIL = /^[^\s@<>()",;:\\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/
const E164 = /^\+[1-9][0-9]{6,14}$/
// eslint-disable-next-line no-control-regex -- control characters are exactly what this refuses
const CONTROL = /[\u0000-\u001f\u007f]/

/**
 * A webhook target's addresses, refused when any is not public (checked again when the delivery
 * connects, and the connection goes to the address checked then: see delivery/address.ts).
 * `allowHosts` names hosts (or `host:port`s) a development setup may reach anyway.
 */
export async function checkWebhookTarget (target: string, allowHosts: readonly string[] = []): Promise<URL> {
  let url: URL
  try {
    url = new URL(target)
  } catch {
    throw new ValidationError('to must be an absolute http or https URL for a webhook')
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ValidationError('to must be an absolute http or https URL for a webhook')
  if (url.username !== '' || url.password !== '') throw new ValidationError('to must not carry credentials')
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
  const problem = await hostProblem(url.hostname, port, { allow: allowHosts })
  if (problem === 'unresolved') throw new ValidationError('to: the webhook host does not resolve')
  if (problem === 'private') throw new ValidationError('to: webhook targets must be public addresses (not loopback, private, link-local, metadata or another special-purpose range)')
  return url
}

/** The checks per channel; resolves to the normalised input. */
export async function checkMessage (input: MessageInput, options: { now?: number, allowHosts?: readonly string[] } = {}): Promise<MessageInput> {
  const now = options.now ?? Date.now()
  switch (input.channel) {
    case 'email':
      if (!EMAIL.test(input.to)) throw new ValidationError('to must be an email address')
      if (input.subject === undefined) throw new ValidationError('subject is required for email')
      if (CONTROL.test(input.subject)) throw new ValidationError('subject must not contain line breaks or control characters')
      if (input.text === undefined && input.html === undefined) throw new ValidationError('text or html is required for email')
      if (input.body !== undefined) throw new ValidationError('body is for sms and webhook; email takes text or html')
      break
    case 'sms':
      if (!E164.test(input.to)) throw new ValidationError('to must be an E.164 phone number such as +15550100')
      if (input.body === undefined || input.body === '') throw new ValidationError('body is required for sms')
      if (input.body.length > LIMITS.sms) throw new ValidationError(`body is at most ${LIMITS.sms} characters for sms`)
      if (input.subject !== undefined || input.text !== undefined || input.html !== undefined) throw new ValidationError('sms takes body only')
      break
    case 'webhook':
      await checkWebhookTarget(input.to, options.allowHosts)
      if (input.body === undefined) throw new ValidationError('body is required for webhook')
      if (input.subject !== undefined || input.text !== undefined || input.html !== undefined) throw new ValidationError('webhook takes body only')
      break
  }
  if (input.metadata !== undefined && Buffer.byteLength(JSON.stringify(input.metadata)) > LIMITS.metadataBytes) {
    throw new ValidationError(`metadata is at most ${LIMITS.metadataBytes} bytes of JSON`)
  }
  if (input.scheduledAt !== undefined) {
    const at = Date.parse(input.scheduledAt)
    // The schema's date-time admits a leap second (23:59:60Z), which no clock here can name.
    if (Number.isNaN(at)) throw new ValidationError('scheduledAt must be an instant such as 2030-01-01T09:00:00Z (leap seconds are not accepted)')
    if (at < now - LIMITS.skewMs) throw new ValidationError('scheduledAt is in the past')
    if (at > now + LIMITS.scheduleDays * 86_400_000) throw new ValidationError(`scheduledAt is at most ${LIMITS.scheduleDays} days ahead`)
  }
  return input
}
