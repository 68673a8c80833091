// Webhooks signed per the Standard Webhooks spec: `webhook-id`, `webhook-timestamp` (seconds) and
// `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed by the secret's
// bytes (`whsec_<base64>`). The target's addresses are checked again when the connection is made,
// and the connection goes to the addresses checked then (../address.ts), so a name that resolved
// to a public address at accept time cannot be re-pointed at a private one.
import { createHmac } from 'node:crypto'
import type { Tenant } from '@platform/multitenant'
import type { CommSettings } from '../../settings.ts'
import { Agent, request, type Dispatcher } from 'undici'
import { pinnedConnector, type Resolve } from '../address.ts'
import { PermanentError, retryAfterMs, TransientError, type OutgoingMessage, type Provider, type SendContext, type SendResult } from './types.ts'

export interface WebhookProviderOptions {
  /**
   * The tenant's signing secrets (`whsec_…`), newest first: each signs, so receivers verify with
   * either during a rotation's grace period (the Standard Webhooks multi-signature header).
   */
  secrets: (tenant: Tenant, settings: CommSettings) => string[]
  /** Per-attempt timeout in ms (default 10 s). */
  timeout?: number
  /** Hosts (or `host:port`s) allowed to resolve to private addresses (development only). */
  allowHosts?: readonly string[]
  /** How target names are resolved (default: the system's). */
  resolve?: Resolve
}

/** The signature header value for one delivery. */
export function signWebhook (secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64')
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`
}

export class WebhookProvider implements Provider {
  readonly name = 'webhook'
  readonly #options: WebhookProviderOptions
  readonly #dispatcher: Dispatcher

  constructor (options: WebhookProviderOptions) {
    this.#options = options
    this.#dispatcher = new Agent({ connect: pinnedConnector({ allow: options.allowHosts ?? [], timeout: options.timeout ?? 10_000, ...(options.resolve === undefined ? {} : { resolve: options.resolve }) }) })
  }

  async send (message: OutgoingMessage, { tenant, settings }: SendContext): Promise<SendResult> {
    const body = message.body as string // a webhook message always has one (checked at accept)
    const timestamp = Math.floor(Date.now() / 1000)
    const id = `msg_${message.id}`
    const timeout = this.#options.timeout ?? 10_000
    // Outside the request's try: a secret that cannot be opened fails the message (PermanentError).
    const signature = this.#options.secrets(tenant, settings).map((secret) => signWebhook(secret, id, timestamp, body)).join(' ')
    let res: Dispatcher.ResponseData
    try {
      res = await request(message.to, {
        method: 'POST',
        dispatcher: this.#dispatcher,
        headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature },
        body,
        headersTimeout: timeout,
        bodyTimeout: timeout
      })
    } catch (err) {
      const code = (err as { code?: string }).code
      // A blocked address is permanent; anything else on the way (refused, reset, timeout) is not.
      if (code === 'EBLOCKED') throw new PermanentError(`webhook target refused: ${(err as Error).message}`)
      throw new TransientError(`webhook unreachable: ${String(code)}`)
    }
    await res.body.dump()
    if (res.statusCode >= 200 && res.statusCode < 300) return { providerMessageId: id }
    if (res.statusCode === 429 || res.statusCode >= 500) {
      throw new TransientError(`webhook answered ${res.statusCode}`, retryAfterMs(res.headers['retry-after']))
    }
    throw new PermanentError(`webhook answered ${res.statusCode}`)
  }

  async close (): Promise<void> {
    await this.#dispatcher.close()
  }
}

/**
 * A tenant's signing secret, derived from the platform's: HMAC-SHA256(platform secret, tenant id).
 * Each tenant's receivers verify with their own secret, and knowing one tenant's secret tells
 * nothing about another's. It signs until the tenant rotates to a generated secret of its own
 * (PATCH /v1/config, `webhook.rotateSecret`).
 */
export function tenantWebhookSecret (platformSecret: string, tenantId: string): string {
  return `whsec_${createHmac('sha256', platformSecret).update(`webhook:${tenantId}`).digest('base64')}`
}
