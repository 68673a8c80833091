import type { FastifyInstance, FastifyReply } from 'fastify'
import { actorOf } from '@platform/multitenant'
import { errorResponse, withTenant } from '@platform/multitenant/fastify'
import type { CommMetrics } from '../metrics.ts'
import { decodeCursor, SendLimitError, type MessageStore, type RateState } from '../messages/store.ts'
import { checkMessage, messageBody, ValidationError, type MessageInput } from '../messages/validate.ts'
import { ACCESS } from '../roles.ts'
import type { StatsRecorder } from '../stats.ts'
import type { TemplateStore } from '../templates/store.ts'

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', format: 'uuid' } } } as const
const KEY = /^[\x21-\x7e]{1,255}$/

/** The list's filters and page (also the admin view's). */
export const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'string', pattern: '^(100|[1-9][0-9]?)$' },
    cursor: { type: 'string', maxLength: 200 },
    status: { type: 'string', enum: ['queued', 'sending', 'sent', 'delivered', 'failed', 'bounced', 'canceled'] },
    channel: { type: 'string', enum: ['email', 'sms', 'webhook'] },
    to: { type: 'string', maxLength: 2048 }
  }
} as const

const nullable = (type: string): { type: string[] } => ({ type: [type, 'null'] })

/** A message as GET /v1/messages/:id and the lists answer it (`Message` in the store). */
export const messageSchema = {
  type: 'object',
  required: ['id', 'channel', 'to', 'status', 'createdAt', 'sentBy'],
  properties: {
    id: { type: 'string', format: 'uuid' },
    channel: { type: 'string', enum: ['email', 'sms', 'webhook'] },
    to: { type: 'string' },
    subject: nullable('string'),
    status: { type: 'string', enum: ['queued', 'sending', 'sent', 'delivered', 'failed', 'bounced', 'canceled'] },
    metadata: { type: 'object', additionalProperties: true },
    scheduledAt: nullable('string'),
    attempts: { type: 'integer' },
    lastError: nullable('string'),
    providerMessageId: nullable('string'),
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
    template: {
      type: ['object', 'null'],
      properties: { name: { type: 'string' }, version: { type: 'integer' }, locale: { type: 'string' } }
    },
    sentBy: { ...nullable('string'), description: 'Who sent it: the user\'s sub, or svc:<name> for a service calling for the tenant' }
  }
} as const

/** GET /v1/messages/:id: the message with its history. */
export const messageDetailSchema = {
  ...messageSchema,
  properties: {
    ...messageSchema.properties,
    history: {
      type: 'array',
      items: { type: 'object', required: ['status', 'at'], properties: { status: { type: 'string' }, at: { type: 'string' }, detail: { type: 'string' } } }
    }
  }
} as const

/** The lists: a cursor page. */
export const messagePageSchema = {
  type: 'object',
  required: ['items', 'next'],
  properties: { items: { type: 'array', items: messageSchema }, next: { ...nullable('string'), description: 'The next page\'s cursor, or null on the last page' } }
} as const

export interface MessageRoutesOptions {
  store: MessageStore
  templates: TemplateStore
  metrics: CommMetrics
  stats: StatsRecorder
  /** Webhook hosts allowed despite being private (development). */
  allowHosts: readonly string[]
}

export async function messageRoutes (app: FastifyInstance, options: MessageRoutesOptions): Promise<void> {
  const { store } = options

  app.post<{ Body: MessageInput, Headers: { 'idempotency-key'?: string } }>('/v1/messages', {
    config: { auth: ACCESS.send },
    schema: {
      summary: 'Accept a message (queued for delivery)',
      body: messageBody,
      headers: { type: 'object', properties: { 'idempotency-key': { type: 'string', pattern: KEY.source, description: 'A repeat with the same body gets the first answer for 24 hours' } } },
      response: {
        202: {
          description: 'Accepted and queued',
          headers: {
            location: { type: 'string', description: '/v1/messages/{id}' },
            'x-ratelimit-limit': { type: 'integer', description: 'The tighter send limit, when the tenant has one' },
            'x-ratelimit-remaining': { type: 'integer' },
            'x-ratelimit-reset': { type: 'integer', description: 'Seconds until the window resets' },
            'idempotent-replayed': { type: 'string', description: 'true on a replayed answer' }
          },
          type: 'object',
          properties: { id: { type: 'string', format: 'uuid' }, status: { type: 'string', enum: ['queued'] } }
        },
        422: errorResponse(422),
        429: errorResponse(429)
      }
    }
  }, withTenant(async (request, reply) => {
    // The header's schema refuses a key that is not 1 to 255 printable ASCII characters.
    const key = request.headers['idempotency-key']
    // A template is rendered now, with exactly the function a preview uses: a missing variable
    // is this request's 400, and the message keeps the content, version and locale it was sent with.
    let from: Parameters<MessageStore['accept']>[3]
    let body = request.body
    if (body.template !== undefined) {
      const { template, ...rest } = body
      if (rest.subject !== undefined || rest.text !== undefined || rest.html !== undefined || rest.body !== undefined) throw new ValidationError('a message takes a template or inline content, not both')
      const rendered = await options.templates.render(template.name, { tenant: request.tenant.id, locale: template.locale, version: template.version, data: template.data ?? {} })
      if (rendered.channel !== body.channel) throw new ValidationError(`template ${template.name} is for ${rendered.channel}, not ${body.channel}`)
      from = { request: body, template: { name: rendered.name, version: rendered.version, locale: rendered.locale } }
      body = { ...rest, ...rendered.content }
    }
    const input = await checkMessage(body, { allowHosts: options.allowHosts })
    let accepted
    try {
      // Every route here requires a token: the sender is its actor (the service behind an exchanged token, else the user).
      accepted = await store.accept(request.tenant, input, key, from, actorOf(request.claims as NonNullable<typeof request.claims>))
    } catch (err) {
      if (err instanceof SendLimitError) {
        rateHeaders(reply, err.rate)
        reply.header('retry-after', String(err.rate.reset))
      }
      throw err
    }
    if (accepted.rate !== undefined) rateHeaders(reply, accepted.rate)
    if (accepted.replayed) reply.header('idempotent-replayed', 'true')
    else {
      options.metrics.accepted.inc({ channel: input.channel, tier: request.tenant.tier })
      options.stats.count(request.tenant.id, 'queued')
    }
    return await reply.code(accepted.statusCode).header('location', `/v1/messages/${accepted.body.id}`).send(accepted.body)
  }))

  app.get<{ Params: { id: string } }>('/v1/messages/:id', {
    config: { auth: ACCESS.read },
    schema: { summary: 'One message, with its history and last error', params: idParams, response: { 200: messageDetailSchema } }
  }, withTenant(async (request) => await store.get(request.params.id)))

  app.get<{ Querystring: { limit?: string, cursor?: string, status?: string, channel?: string, to?: string } }>('/v1/messages', {
    config: { auth: ACCESS.read },
    schema: { summary: 'The tenant\'s messages, newest first (cursor pages)', querystring: listQuery, response: { 200: messagePageSchema } }
  }, withTenant(async (request) => {
    const cursor = request.query.cursor === undefined ? undefined : decodeCursor(request.query.cursor)
    if (cursor === null) throw new ValidationError('cursor is not a cursor from this API')
    return await store.list({ limit: Number(request.query.limit ?? 20), cursor, status: request.query.status, channel: request.query.channel, to: request.query.to })
  }))

  app.post<{ Params: { id: string } }>('/v1/messages/:id/cancel', {
    config: { auth: ACCESS.send },
    schema: { summary: 'Cancel a message not yet sent', params: idParams, response: { 409: errorResponse(409) } }
  }, withTenant(async (request) => {
    const canceled = await store.cancel(request.params.id)
    options.stats.count(request.tenant.id, 'canceled')
    return canceled
  }))

  app.post<{ Params: { id: string } }>('/v1/messages/:id/retry', {
    config: { auth: ACCESS.redrive },
    schema: { summary: 'Redrive a dead-lettered (failed) message (admin, owner)', params: idParams, response: { 409: errorResponse(409) } }
  }, withTenant(async (request) => {
    const redriven = await store.retry(request.tenant, request.params.id)
    options.stats.count(request.tenant.id, 'queued')
    return redriven
  }))
}

/** The tightest send limit, as the usual rate-limit headers. */
function rateHeaders (reply: FastifyReply, rate: RateState): void {
  reply.header('x-ratelimit-limit', String(rate.limit))
  reply.header('x-ratelimit-remaining', String(rate.remaining))
  reply.header('x-ratelimit-reset', String(rate.reset))
}
