// SMS through a generic JSON HTTP API: POST { to, from, body, reference } with a bearer token; the
// answer's `id` is the provider's message id. 429 and 5xx (Retry-After honoured), timeouts and
// network failures are transient; any other 4xx is permanent. A tenant's own API is reached
// through a pinned connection (../address.ts): its host resolved once, checked, and connected to
// at the address checked, so the bearer token goes nowhere else.
import { Agent, request, type Dispatcher } from 'undici'
import { pinnedConnector, type HostPolicy } from '../address.ts'
import { PermanentError, retryAfterMs, TransientError, type OutgoingMessage, type Provider, type SendContext, type SendResult } from './types.ts'

export interface SmsHttpOptions {
  /** The API's URL (SMS_HTTP_URL). */
  url: string
  /** Its bearer token (SMS_HTTP_TOKEN). */
  token?: string
  /** Per-attempt timeout in ms (default 10 s). */
  timeout?: number
  /** A tenant's API: connect only to public addresses (or allowed hosts), pinned per connection. */
  pin?: HostPolicy
}

export class SmsHttpProvider implements Provider {
  readonly name = 'sms-http'
  readonly #options: SmsHttpOptions
  readonly #dispatcher: Agent

  constructor (options: SmsHttpOptions) {
    this.#options = options
    const timeout = options.timeout ?? 10_000
    this.#dispatcher = new Agent({ connections: 32, connect: options.pin === undefined ? { timeout } : pinnedConnector({ ...options.pin, timeout }) })
  }

  async send (message: OutgoingMessage, { settings }: SendContext): Promise<SendResult> {
    if (settings.smsSenderId === '') throw new PermanentError('sms-http: the tenant has no smsSenderId (config.comm.smsSenderId) and the platform no default')
    const timeout = this.#options.timeout ?? 10_000
    let res: Dispatcher.ResponseData
    try {
      res = await request(this.#options.url, {
        method: 'POST',
        dispatcher: this.#dispatcher,
        headers: {
          'content-type': 'application/json',
          'idempotency-key': message.id,
          ...(this.#options.token === undefined ? {} : { authorization: `Bearer ${this.#options.token}` })
        },
        body: JSON.stringify({ to: message.to, from: settings.smsSenderId, body: message.body, reference: message.id }),
        headersTimeout: timeout,
        bodyTimeout: timeout
      })
    } catch (err) {
      const code = (err as { code?: string }).code
      if (code === 'EBLOCKED') throw new PermanentError(`sms-http target refused: ${(err as Error).message}`)
      throw new TransientError(`sms-http unreachable: ${String(code)}`)
    }
    if (res.statusCode >= 200 && res.statusCode < 300) {
      const answer = await res.body.json().catch(() => ({})) as { id?: unknown }
      return { providerMessageId: typeof answer.id === 'string' || typeof answer.id === 'number' ? String(answer.id) : message.id }
    }
    await res.body.dump()
    if (res.statusCode === 429 || res.statusCode >= 500 || res.statusCode === 408) {
      throw new TransientError(`sms-http answered ${res.statusCode}`, retryAfterMs(res.headers['retry-after']))
    }
    throw new PermanentError(`sms-http answered ${res.statusCode}`)
  }

  async close (): Promise<void> {
    await this.#dispatcher.close()
  }
}
