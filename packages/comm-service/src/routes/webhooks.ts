// POST /v1/webhooks/:provider: delivery receipts and bounces from a provider, signed the Standard
// Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<HMAC-SHA256>`) with the
// provider's callback secret (COMM_CALLBACK_SECRET_SMS_HTTP, COMM_CALLBACK_SECRET_SMTP). The
// signature is checked on the raw body before anything is read; a timestamp outside ±5 minutes is
// a replay. The signed body names the tenant, so a receipt cannot be moved to another tenant: the
// message is looked up in that tenant's schema only.
import { timingSafeEqual } from 'node:crypto'
import createError from '@fastify/error'
import type { FastifyInstance } from 'fastify'
import { errorResponse } from '@platform/multitenant/fastify'
import { isValidTenantId, TenantMismatchError, TenantNotFoundError } from '@platform/multitenant'
import type { TenantDb } from '@platform/multitenant/pg'
import { signWebhook } from '../delivery/providers/webhook.ts'
import { applyReceipt, type ReceiptEvent } from '../messages/receipts.ts'
import { ValidationError } from '../messages/validate.ts'
import type { StatsRecorder } from '../stats.ts'

export const CALLBACK_PROVIDERS = { 'sms-http': 'sms', smtp: 'email' } as const
export type CallbackProvider = keyof typeof CALLBACK_PROVIDERS

export const CallbackUnauthorizedError = createError<'UNAUTHORIZED', 401, [string]>('UNAUTHORIZED', 'The callback is not signed by this provider: %s', 401, undefined, false)
export const CallbackNotConfiguredError = createError<'NOT_FOUND', 404, [string]>('NOT_FOUND', 'No callback secret is configured for %s', 404, undefined, false)

/** How far a callback's timestamp may be from now, in seconds. */
export const REPLAY_WINDOW_SECONDS = 300
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const CALLBACK_ID = /^[\x21-\x7e]{1,255}$/

export interface WebhookRoutesOptions {
  db: TenantDb<Record<string, unknown>>
  stats: StatsRecorder
  /** Dedicated mode: callbacks for any other tenant are refused. */
  dedicated?: string | undefined
  /** Each provider's callback secret (`whsec_…` or raw text of at least 32 characters). */
  secrets: Partial<Record<CallbackProvider, string>>
}

/** Whether one of the `v1,` signatures in the header is this body's, in constant time. */
export function verifyCallback (secret: string, id: string, timestamp: string, body: string, header: string): boolean {
  const expected = Buffer.from(signWebhook(secret, id, Number(timestamp), body))
  return header.split(' ').some((candidate) => {
    const given = Buffer.from(candidate)
    return given.length === expected.length && timingSafeEqual(given, expected)
  })
}

export async function webhookRoutes (app: FastifyInstance, options: WebhookRoutesOptions): Promise<void> {
  // The signature covers the bytes as sent: keep them (this plugin's routes only).
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: 64 * 1024 }, (_request, body, done) => done(null, body))

  app.post<{ Params: { provider: CallbackProvider }, Body: string }>('/v1/webhooks/:provider', {
    config: { tenant: false, auth: false },
    schema: {
      summary: 'A provider\'s signed delivery receipt or bounce (Standard Webhooks signature; the body names the tenant)',
      tags: ['callbacks'],
      security: [],
      params: { type: 'object', required: ['provider'], properties: { provider: { type: 'string', enum: Object.keys(CALLBACK_PROVIDERS) } } },
      headers: { type: 'object', properties: { 'webhook-id': { type: 'string' }, 'webhook-timestamp': { type: 'string' }, 'webhook-signature': { type: 'string' } } },
      response: {
        200: { description: 'Recorded (applied, or a repeat, or not applicable to the message\'s state)', type: 'object', properties: { messageId: { type: 'string' }, status: { type: 'string' }, applied: { type: 'boolean' }, duplicate: { type: 'boolean' } } },
        401: errorResponse(401, 'Unsigned, forged, or outside the replay window (UNAUTHORIZED)'),
        403: errorResponse(403, 'The instance or X-Tenant-ID is another tenant\'s (TENANT_MISMATCH)')
      }
    }
  }, async (request, reply) => {
    const { provider } = request.params
    const secret = options.secrets[provider]
    if (secret === undefined) throw new CallbackNotConfiguredError(provider)
    const id = request.headers['webhook-id']
    const timestamp = request.headers['webhook-timestamp']
    const signature = request.headers['webhook-signature']
    if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signature !== 'string') throw new CallbackUnauthorizedError('send webhook-id, webhook-timestamp and webhook-signature')
    if (!CALLBACK_ID.test(id) || !/^\d{1,12}$/.test(timestamp)) throw new CallbackUnauthorizedError('malformed webhook-id or webhook-timestamp')
    if (typeof request.body !== 'string') throw new CallbackUnauthorizedError('the body must be JSON')
    if (!verifyCallback(secret, id, timestamp, request.body, signature)) throw new CallbackUnauthorizedError('the signature does not match')
    if (Math.abs(Date.now() / 1000 - Number(timestamp)) > REPLAY_WINDOW_SECONDS) throw new CallbackUnauthorizedError(`the timestamp is more than ${REPLAY_WINDOW_SECONDS} s away (a replay?)`)

    // Signed: now it may be read.
    const receipt = parseReceipt(request.body)
    const named = request.headers['x-tenant-id']
    if ((named !== undefined && named !== receipt.tenant) || (options.dedicated !== undefined && receipt.tenant !== options.dedicated)) throw new TenantMismatchError()
    const tenant = await app.tenantRegistry.getTenant(receipt.tenant)
    if (tenant === null) throw new TenantNotFoundError()
    const outcome = await applyReceipt(options.db, tenant, {
      id: `${provider}:${id}`,
      event: receipt.type,
      channel: CALLBACK_PROVIDERS[provider],
      ...(receipt.messageId === undefined ? { providerMessageId: receipt.providerMessageId as string } : { messageId: receipt.messageId }),
      detail: receipt.detail === undefined ? `${provider} ${receipt.type}` : `${provider} ${receipt.type}: ${receipt.detail}`
    })
    if (outcome.applied) options.stats.count(tenant.id, receipt.type)
    request.log.info({ tenant: tenant.id, messageId: outcome.messageId, event: receipt.type, applied: outcome.applied, duplicate: outcome.duplicate }, 'provider callback')
    return await reply.send(outcome)
  })
}

interface ReceiptBody { type: ReceiptEvent, tenant: string, messageId?: string, providerMessageId?: string, detail?: string }

/** `{ type: delivered | bounced, tenant, messageId | providerMessageId, detail? }`. */
export function parseReceipt (text: string): ReceiptBody {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new ValidationError('the body is not JSON')
  }
  const b = body as Record<string, unknown>
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ValidationError('the body must be an object')
  const extra = Object.keys(b).find((k) => !['type', 'tenant', 'messageId', 'providerMessageId', 'detail', 'at'].includes(k))
  if (extra !== undefined) throw new ValidationError(`unknown field ${extra}`)
  if (b.type !== 'delivered' && b.type !== 'bounced') throw new ValidationError('type must be delivered or bounced')
  if (typeof b.tenant !== 'string' || !isValidTenantId(b.tenant)) throw new ValidationError('tenant must be a tenant id')
  if (b.messageId !== undefined && (typeof b.messageId !== 'string' || !UUID.test(b.messageId))) throw new ValidationError('messageId must be a message id')
  if (b.providerMessageId !== undefined && (typeof b.providerMessageId !== 'string' || b.providerMessageId.length === 0 || b.providerMessageId.length > 512)) throw new ValidationError('providerMessageId must be 1 to 512 characters')
  if ((b.messageId === undefined) === (b.providerMessageId === undefined)) throw new ValidationError('send messageId or providerMessageId (one of them)')
  if (b.detail !== undefined && (typeof b.detail !== 'string' || b.detail.length > 500)) throw new ValidationError('detail must be at most 500 characters')
  return b as unknown as ReceiptBody
}
