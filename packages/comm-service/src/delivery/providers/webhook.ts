// Webhooks signed per the Standard Webhooks spec: `webhook-id`, `webhook-timestamp` (seconds) and
// `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed by the secret's
// bytes (`whsec_<base64>`). The target's addresses are checked again when the connection is made,
// so a name that resolved to a public address at accept time cannot be re-pointed at a private one.
import { createHmac } from 'node:crypto'
import { lookup } from 'node:dns'
import type { LookupFunction } from 'node:net'
import type { Tenant } from '@platform/multitenant'
import type { CommSettings } from '../../settings.ts'
import { Agent, request, type Dispatcher } from 'undici'
import { blockedAddress } from '../../messages/validate.ts'
import { PermanentError, retryAfterMs, TransientError, type OutgoingMessage, type Provider, type SendContext, type SendResult } from './types.ts'

export interface WebhookProviderOptions {
  /**
   * The tenant's signing secrets (`whsec_…`), newest first: each signs, so receivers verify with
   * either during a rotation's grace period (the Standard Webhooks multi-signature header).
   */
  secrets: (tenant: Tenant, settings: CommSettings) => string[]
  /** Per-attempt timeout in ms (default 10 s). */
  timeout?: number
  /** Hosts allowed to resolve to private addresses (development only). */
  allowHosts?: readonly string[]
}

/** The signature header value for one delivery. */
export function signWebhook (secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64')
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`
}

/** A DNS lookup that refuses non-public answers: the connect-time half of the SSRF check. */
export function publicLookup (allowHosts: readonly string[]): LookupFunction {
  return (hostname, options, callback) => {
    lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err !== null) return callback(err, '', 0)
      const list = addresses as Array<{ address: string, family: number }>
      const refused = !allowHosts.includes(hostname) && list.some((a) => blockedAddress(a.address))
      if (refused) return callback(Object.assign(new Error(`${hostname} resolves to a non-public address`), { code: 'EBLOCKED' }), '', 0)
      if (options.all === true) return (callback as unknown as (e: null, a: typeof list) => void)(null, list)
      const first = list[0] as { address: string, family: number }
      callback(null, first.address, first.family)
    })
  }
}

export class WebhookProvider implements Provider {
  readonly name = 'webhook'
  readonly #options: WebhookProviderOptions
  readonly #dispatcher: Dispatcher

  constructor (options: WebhookProviderOptions) {
    this.#options = options
    this.#dispatcher = new Agent({ connect: { lookup: publicLookup(options.allowHosts ?? []) } })
  }

  async send (message: OutgoingMessage, { tenant, settings }: SendContext): Promise<SendResult> {
    const body = message.body as string // a webhook message always has one (checked at accept)
    const timestamp = Math.floor(Date.now() / 1000)
    const id = `msg_${message.id}`
    const timeout = this.#options.timeout ?? 10_000
    let res: Dispatcher.ResponseData
    try {
      res = await request(message.to, {
        method: 'POST',
        dispatcher: this.#dispatcher,
        headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': this.#options.secrets(tenant, settings).map((secret) => signWebhook(secret, id, timestamp, body)).join(' ') },
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
