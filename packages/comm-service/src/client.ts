// A typed client of the comm-service for the platform's other services (`@platform/comm-service/client`):
// inside a tenant scope (a request of the calling service, or runAsTenant), `await comm.send(…)`.
// Calls go through the library's outgoing-call support, which adds X-Tenant-ID and a token the
// registry exchanged for the tenant and the `comm` audience: the calling service writes no token
// code. The types mirror the OpenAPI document the service publishes (test/client.test.ts checks
// them against /docs/json). Nothing here loads Fastify or the service's own code.
import { randomUUID } from 'node:crypto'
import { Agent, request, type Dispatcher } from 'undici'
import { tenantPropagation, type TokenExchangeOptions } from '@platform/multitenant/http'

export type Channel = 'email' | 'sms' | 'webhook'
export type MessageStatus = 'queued' | 'sending' | 'sent' | 'delivered' | 'failed' | 'bounced' | 'canceled'

/** A stored template instead of inline content, rendered when the message is accepted. */
export interface TemplateRef {
  name: string
  locale?: string
  version?: number
  data?: Record<string, unknown>
}

/** The body of `POST /v1/messages`: a `template`, or inline `subject`/`text`/`html` (email) or `body` (SMS, webhook). */
export interface MessageRequest {
  channel: Channel
  to: string
  subject?: string
  text?: string
  html?: string
  body?: string
  metadata?: Record<string, unknown>
  /** ISO 8601; delivery waits until then (at most 30 days ahead). */
  scheduledAt?: string
  template?: TemplateRef
}

export interface SendInput extends MessageRequest {
  /** A repeat with the same key and body gets the first answer (24 hours). Default: a new UUID per call. */
  idempotencyKey?: string
}

export interface Accepted {
  id: string
  status: 'queued'
}

export interface Message {
  id: string
  channel: Channel
  to: string
  subject: string | null
  status: MessageStatus
  metadata: Record<string, unknown>
  scheduledAt: string | null
  attempts: number
  lastError: string | null
  providerMessageId: string | null
  createdAt: string
  updatedAt: string
  template: { name: string, version: number, locale: string } | null
  /** Who sent it: a user's `sub`, or `svc:<name>` for a service. */
  sentBy: string | null
}

export interface MessageDetail extends Message {
  history: Array<{ status: string, at: string, detail?: string }>
}

export interface MessagePage {
  items: Message[]
  /** The next page's cursor, or null on the last page. */
  next: string | null
}

export interface ListQuery {
  limit?: number
  cursor?: string
  status?: MessageStatus
  channel?: Channel
  to?: string
}

export interface CommClientOptions {
  /** The comm-service (e.g. `http://comm:4200`). */
  url: string | URL
  /**
   * The registry's token exchange for the calling service (`REGISTRY_URL`, its `SERVICE_TOKEN`):
   * the client composes its own agent with `tenantPropagation` (closed by `close()`).
   */
  exchange?: TokenExchangeOptions
  /**
   * Or a dispatcher you composed with `tenantPropagation` naming this origin (yours to close),
   * to share one agent and token cache between clients.
   */
  dispatcher?: Dispatcher
  /** The comm-service's audience in the exchange. Default: `'comm'`. */
  audience?: string
}

/** The comm-service's refusal: its `code` and `statusCode` (the platform's error shape). */
export class CommError extends Error {
  readonly code: string
  readonly statusCode: number
  constructor (statusCode: number, code: string, message: string) {
    super(message)
    this.name = 'CommError'
    this.code = code
    this.statusCode = statusCode
  }
}

export interface CommClient {
  /** Accepts a message for the current tenant: `{ id, status: 'queued' }`. */
  send: (input: SendInput) => Promise<Accepted>
  /** One of the current tenant's messages, with its history. */
  get: (id: string) => Promise<MessageDetail>
  /** The current tenant's messages, newest first. */
  list: (query?: ListQuery) => Promise<MessagePage>
  /** Cancels a message not yet sent. */
  cancel: (id: string) => Promise<Message>
  /** Closes the agent the client made (not a dispatcher it was given). */
  close: () => Promise<void>
}

export function createCommClient (options: CommClientOptions): CommClient {
  const base = new URL(options.url)
  const prefix = base.pathname.replace(/\/+$/, '')
  let dispatcher: Dispatcher
  let owned: Agent | undefined
  if (options.dispatcher !== undefined) {
    dispatcher = options.dispatcher
  } else if (options.exchange !== undefined) {
    owned = new Agent()
    dispatcher = owned.compose(tenantPropagation({ origins: [{ origin: base.origin, audience: options.audience ?? 'comm' }], exchange: options.exchange }))
  } else {
    throw new TypeError('createCommClient needs exchange ({ registry, credential }) or a dispatcher composed with tenantPropagation')
  }

  async function call<T> (method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const res = await request(`${base.origin}${prefix}${path}`, {
      method,
      dispatcher,
      headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await res.body.text()
    let parsed: unknown = null
    try {
      parsed = JSON.parse(text)
    } catch {}
    if (res.statusCode < 300) return parsed as T
    const error = (parsed ?? {}) as { code?: unknown, message?: unknown }
    throw new CommError(res.statusCode, typeof error.code === 'string' ? error.code : `HTTP_${res.statusCode}`,
      typeof error.message === 'string' ? error.message : `the comm-service answered HTTP ${res.statusCode}`)
  }

  return {
    async send (input) {
      const { idempotencyKey, ...message } = input
      return await call<Accepted>('POST', '/v1/messages', message, { 'idempotency-key': idempotencyKey ?? randomUUID() })
    },
    async get (id) {
      return await call<MessageDetail>('GET', `/v1/messages/${encodeURIComponent(id)}`)
    },
    async list (query = {}) {
      const search = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined).map(([k, v]): [string, string] => [k, String(v)]))
      const qs = search.toString()
      return await call<MessagePage>('GET', `/v1/messages${qs === '' ? '' : `?${qs}`}`)
    },
    async cancel (id) {
      return await call<Message>('POST', `/v1/messages/${encodeURIComponent(id)}/cancel`)
    },
    async close () {
      await owned?.close()
    }
  }
}
